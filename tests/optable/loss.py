"""Op table entries: cross_entropy and mse, forward and backward."""
import math

import numpy as np

import reference as ref
from harness import OpSpec, random

from .common import ANY_SHAPE, any_shape, entry


def _reduced(c, out):
    """The loss as an array: "mean" and "sum" return a Python float."""
    if c.opt["reduction"] != "none":
        assert isinstance(out, float), f"[{c.spec.name}] reduction {c.opt['reduction']} must return a float"
        return np.asarray(out, dtype=c.dtype)
    return out


def _labels_check(c):
    labels, logits = c.arrays["labels"], c.arrays["logits"]
    if labels.dtype.kind in "iu" and labels.size and (labels.min() < 0 or labels.max() >= logits.shape[-1]):
        return ValueError, ("labels",)
    return None


def _grad(c, gen, per_item_sym, per_item_shape):
    """The backward's upstream gradient: a float, or an array (per item for "none", else 0-D;
    a reduced loss also takes shape (1,), see _grad_check)."""
    if c.opt["grad"] == "array":
        none = c.opt["reduction"] == "none"
        c.add("grad", random(gen, per_item_shape if none else (), c.dtype), per_item_sym if none else None)


def _grad_value(c):
    """grad as the reference takes it (a reduced loss's (1,) gradient is its one value)."""
    g = c.arrays.get("grad", c.opt["grad"])
    return g.reshape(()) if c.opt["reduction"] != "none" and isinstance(g, np.ndarray) and g.size == 1 else g


def _grad_check(c, more=lambda c: None):
    g = c.arrays.get("grad")
    if isinstance(g, np.ndarray) and c.opt["reduction"] != "none" and g.shape not in ((), (1,)):
        return ValueError, ("grad",)
    return more(c)


def _ce_make(c, gen, backward=False):
    n, k = c.dims["n"], c.dims["c"]
    c.add("logits", random(gen, (n, k), c.dtype, 3), ("n", "c"))
    c.add("labels", gen.integers(0, max(k, 1), n), ("n",))  # no class (k = 0): every label is out of range
    if backward:
        _grad(c, gen, ("n",), (n,))


def _ce_ref(c, backward):
    """reference.py's, except without classes (C = 0, so N = 0 when valid), where its max
    has no identity: a mean over nothing is NaN, a sum 0, the gradient empty."""
    logits, labels, r = c.arrays["logits"], c.arrays["labels"], c.opt["reduction"]
    if logits.shape[-1] == 0:
        return np.zeros(logits.shape) if backward else {"mean": np.nan, "sum": 0.0, "none": np.zeros(0)}[r]
    if backward:
        return ref.cross_entropy_backward(logits, labels, r, _grad_value(c))
    return ref.cross_entropy(logits, labels, r)


_LOSS_OPTIONS = {"reduction": ["mean", "sum", "none"], "grad": [1.0, "array", -0.5]}
_BAD_REDUCTION = [("reduction", "avg", ValueError, ("reduction",))]

entry(OpSpec(
    name="cross_entropy", dims={"n": (0, 33), "c": (0, 40)}, options={"reduction": _LOSS_OPTIONS["reduction"]},
    make=_ce_make, check=_labels_check, bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (_reduced(c, ops.cross_entropy(c.arrays["logits"], c.arrays["labels"], c.opt["reduction"])),),
    ref=lambda c: (_ce_ref(c, False),),
    scale=lambda c: 1 + math.log(max(c.arrays["logits"].shape[-1], 1)),
    big=({"n": 2048, "c": 100}, {}),
))
entry(OpSpec(
    name="cross_entropy_backward", dims={"n": (0, 33), "c": (0, 40)}, options=_LOSS_OPTIONS,
    make=lambda c, gen: _ce_make(c, gen, backward=True), check=lambda c: _grad_check(c, _labels_check),
    bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (ops.cross_entropy_backward(c.arrays["logits"], c.arrays["labels"], c.opt["reduction"],
                                                    c.arrays.get("grad", c.opt["grad"])),),
    ref=lambda c: (_ce_ref(c, True),),
    big=({"n": 2048, "c": 100}, {}),
))


def _mse_make(c, gen, backward=False):
    shape = any_shape(c)
    c.add("pred", random(gen, shape, c.dtype), ("...",))
    c.add("target", random(gen, shape, c.dtype), ("...",))
    if backward:
        _grad(c, gen, ("...",), shape)


_MSE_OPTIONS = {"ndim": [2, 1, 3, 0], "reduction": _LOSS_OPTIONS["reduction"]}
entry(OpSpec(
    name="mse", dims=dict(ANY_SHAPE), options=_MSE_OPTIONS, make=_mse_make, bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (_reduced(c, ops.mse(c.arrays["pred"], c.arrays["target"], c.opt["reduction"])),),
    ref=lambda c: (ref.mse(c.arrays["pred"], c.arrays["target"], c.opt["reduction"]),),
    scale=lambda c: 4.0,
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))
entry(OpSpec(
    name="mse_backward", dims=dict(ANY_SHAPE), options=dict(_MSE_OPTIONS, grad=_LOSS_OPTIONS["grad"]),
    make=lambda c, gen: _mse_make(c, gen, backward=True), check=_grad_check, bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (ops.mse_backward(c.arrays["pred"], c.arrays["target"], c.opt["reduction"],
                                          c.arrays.get("grad", c.opt["grad"])),),
    ref=lambda c: (ref.mse_backward(c.arrays["pred"], c.arrays["target"], c.opt["reduction"], _grad_value(c)),),
    scale=lambda c: 4.0,
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))
