"""Functional API: normalises arguments, allocates outputs, calls the native kernels.

Validation of dtypes, shapes, contiguity and writeability happens in the bindings
(csrc/bindings/), which raise TypeError / ValueError naming the op and argument;
this layer turns PyTorch-style arguments into the kernels' explicit ones.
"""
import numpy as np

from . import _C


def _float_array(op, name, x):
    """x as an ndarray (lists and scalars are converted; read-only, so no aliasing)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, int, float, np.generic)):
        return np.asarray(x, dtype=np.float32)
    raise TypeError(f"[{op}] {name} must be a numpy array, got {type(x).__name__}")


# -- gemm and linear -----------------------------------------------------------


# -- activations ----------------------------------------------------------------


# -- losses -------------------------------------------------------------------


# -- optimizer steps ------------------------------------------------------------

def sgd_step(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False, maximize=False, first_step=False):
    """torch.optim.SGD's update of every array in `params`, in place, in one native call.

    momentum_buffers: one array per param, updated in place (needed when momentum != 0);
    first_step: the buffers do not hold history yet and start as the first gradient.
    """
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("[sgd_step] nesterov needs momentum > 0 and dampening == 0")
    if lr < 0 or momentum < 0 or weight_decay < 0:
        raise ValueError(f"[sgd_step] lr, momentum and weight_decay must be >= 0, "
                         f"got {lr}, {momentum}, {weight_decay}")
    if momentum != 0 and momentum_buffers is None:
        raise ValueError("[sgd_step] momentum != 0 needs momentum_buffers")
    _C.sgd_step(list(params), list(grads), list(momentum_buffers or []), float(lr), float(momentum),
                float(dampening), float(weight_decay), bool(nesterov), bool(maximize), bool(first_step))
