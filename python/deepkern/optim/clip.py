"""Gradient clipping and weight penalties over a model's Parameters.

clip_grad_norm_ and clip_grad_value_ are torch.nn.utils' functions: one native call
per dtype over every gradient (the norm is one fused reduction, float64 accumulation,
then the scaling pass only when the norm exceeds max_norm). They take Parameters
(whose .grad is used, None skipped, as torch) or plain gradient arrays. Gradients are
changed in place; a Parameter's .grad that is a strided or read-only view is first
replaced by a contiguous copy, since the kernels write one contiguous block.

l1_penalty / l2_penalty return a penalty's value and add its gradient into each
Parameter's .grad (creating it where it is None), to be added to a loss:
    l1_penalty(params, w) = w * sum |p|          grad  w * sign(p)
    l2_penalty(params, w) = w / 2 * sum p^2      grad  w * p   (SGD's weight_decay=w)
GPU (CuPy) gradients and parameters work alike, each computed on its device.
"""
import numpy as np

from .. import ops
from .._array import array_module, writeable
from ..nn.module import Parameter


def _is_array(p):
    return isinstance(p, np.ndarray) or hasattr(p, "__cuda_array_interface__")


def _as_list(parameters):
    return [parameters] if isinstance(parameters, Parameter) or _is_array(parameters) else list(parameters)


def _grads(op, parameters):
    """The gradient arrays of `parameters` (Parameters' .grad, or arrays), writable in place."""
    out = []
    for i, p in enumerate(_as_list(parameters)):
        if _is_array(p):
            out.append(p)
        elif isinstance(p, Parameter):
            if p.grad is None:
                continue
            g = p.grad
            if not (_is_array(g) and g.flags.c_contiguous and writeable(g)):
                p.grad = array_module(g).array(g, order="C", copy=True)
            out.append(p.grad)
        else:
            raise TypeError(f"[{op}] parameters[{i}] must be a Parameter or a numpy array, got {type(p).__name__}")
    return out


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all the gradients together so that their joint norm_type-norm is at most
    max_norm: every grad *= min(1, max_norm / (total + 1e-6)). norm_type: any p != 0,
    inf or -inf (as torch.linalg.vector_norm; 0 is refused, see ops.clip_grad_norm_).
    Returns the total norm before clipping (a float; 0.0 when there is no gradient).
    A NaN/Inf total raises RuntimeError, scaling nothing, when error_if_nonfinite;
    otherwise grads are scaled as torch does (to NaN, or to 0 where the total is Inf)."""
    return ops.clip_grad_norm_(_grads("clip_grad_norm_", parameters), max_norm, norm_type, error_if_nonfinite)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element to [-clip_value, clip_value] in place (NaN stays NaN)."""
    ops.clip_grad_value_(_grads("clip_grad_value_", parameters), clip_value)


def _penalty_params(op, parameters, weight):
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)) \
            or not (0 <= weight < np.inf):
        raise ValueError(f"[{op}] weight must be a finite number >= 0, got {weight!r}")
    params = _as_list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"[{op}] parameters[{i}] must be a Parameter, got {type(p).__name__}")
    return params


def l1_penalty(parameters, weight):
    """weight * sum |p| over all parameters; adds weight * sign(p) into each .grad."""
    total = 0.0
    for p in _penalty_params("l1_penalty", parameters, weight):
        xp = array_module(p.data)
        total += float(xp.abs(p.data).sum(dtype=np.float64))
        p.accumulate_grad(xp.sign(p.data) * p.dtype.type(weight))
    return weight * total


def l2_penalty(parameters, weight):
    """weight / 2 * sum p^2 over all parameters; adds weight * p into each .grad."""
    total = 0.0
    for p in _penalty_params("l2_penalty", parameters, weight):
        total += float(array_module(p.data).square(p.data, dtype=np.float64).sum())
        p.accumulate_grad(p.data * p.dtype.type(weight))
    return 0.5 * weight * total
