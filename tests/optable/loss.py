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


def _bce_make(c, gen, backward=False):
    shape = any_shape(c)
    c.add("logits", random(gen, shape, c.dtype, 3), ("...",))
    c.add("target", np.asarray(gen.uniform(0, 1, shape), dtype=c.dtype), ("...",))
    if c.opt["pos_weight"]:
        k = shape[-1] if shape else 1
        c.add("pos_weight", np.asarray(gen.uniform(0.5, 2, k), dtype=c.dtype), None)
    if backward:
        _grad(c, gen, ("...",), shape)


def _bce_check(c, more=lambda c: None):
    w, x = c.arrays.get("pos_weight"), c.arrays["logits"]
    if isinstance(w, np.ndarray) and isinstance(x, np.ndarray) and w.shape not in ((), (1,), x.shape[-1:]):
        return ValueError, ("pos_weight",)
    return more(c)


_BCE_OPTIONS = dict(_MSE_OPTIONS, pos_weight=[False, True])
entry(OpSpec(
    name="binary_cross_entropy_with_logits", dims=dict(ANY_SHAPE), options=_BCE_OPTIONS, make=_bce_make,
    check=_bce_check, bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (_reduced(c, ops.binary_cross_entropy_with_logits(
        c.arrays["logits"], c.arrays["target"], c.opt["reduction"], c.arrays.get("pos_weight"))),),
    ref=lambda c: (ref.binary_cross_entropy_with_logits(c.arrays["logits"], c.arrays["target"], c.opt["reduction"],
                                                        c.arrays.get("pos_weight")),),
    scale=lambda c: 8.0,
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))
entry(OpSpec(
    name="binary_cross_entropy_with_logits_backward", dims=dict(ANY_SHAPE),
    options=dict(_BCE_OPTIONS, grad=_LOSS_OPTIONS["grad"]), make=lambda c, gen: _bce_make(c, gen, True),
    check=lambda c: _bce_check(c, _grad_check), bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (ops.binary_cross_entropy_with_logits_backward(
        c.arrays["logits"], c.arrays["target"], c.opt["reduction"], c.arrays.get("pos_weight"),
        c.arrays.get("grad", c.opt["grad"])),),
    ref=lambda c: (ref.binary_cross_entropy_with_logits_backward(
        c.arrays["logits"], c.arrays["target"], c.opt["reduction"], c.arrays.get("pos_weight"), _grad_value(c)),),
    scale=lambda c: 4.0,
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))


def _margin_make(c, gen, backward=False):
    _ce_make(c, gen, backward)
    c.arrays["x"] = c.arrays.pop("logits")
    c.shapes["x"] = c.shapes.pop("logits")
    if c.opt["weighted"]:
        c.add("weight", np.asarray(gen.uniform(0.1, 2, c.dims["c"]), dtype=c.dtype), ("c",))


def _margin_labels_check(c):
    labels, x = c.arrays["labels"], c.arrays["x"]
    if labels.dtype.kind in "iu" and labels.size and (labels.min() < 0 or labels.max() >= x.shape[-1]):
        return ValueError, ("labels",)
    return None


def _margin_ref(c, backward):
    x, labels, r, o = c.arrays["x"], c.arrays["labels"], c.opt["reduction"], c.opt
    if x.shape[-1] == 0:
        return np.zeros(x.shape) if backward else {"mean": np.nan, "sum": 0.0, "none": np.zeros(0)}[r]
    if backward:
        return ref.multi_margin_backward(x, labels, r, o["p"], 1.0, c.arrays.get("weight"), _grad_value(c))
    return ref.multi_margin(x, labels, r, o["p"], 1.0, c.arrays.get("weight"))


_MARGIN_OPTIONS = {"reduction": _LOSS_OPTIONS["reduction"], "p": [1, 2], "weighted": [False, True]}
_BAD_P = [("p", 3, ValueError, ("p",))]
entry(OpSpec(
    name="multi_margin", dims={"n": (0, 33), "c": (0, 40)}, options=_MARGIN_OPTIONS,
    make=_margin_make, check=_margin_labels_check, bad_options=_BAD_REDUCTION + _BAD_P,
    call=lambda ops, c: (_reduced(c, ops.multi_margin(c.arrays["x"], c.arrays["labels"], c.opt["reduction"],
                                                      c.opt["p"], 1.0, c.arrays.get("weight"))),),
    ref=lambda c: (_margin_ref(c, False),),
    scale=lambda c: 16.0,
    big=({"n": 2048, "c": 100}, {}),
))
entry(OpSpec(
    name="multi_margin_backward", dims={"n": (0, 33), "c": (0, 40)},
    options=dict(_MARGIN_OPTIONS, grad=_LOSS_OPTIONS["grad"]), make=lambda c, gen: _margin_make(c, gen, True),
    check=lambda c: _grad_check(c, _margin_labels_check), bad_options=_BAD_REDUCTION + _BAD_P,
    call=lambda ops, c: (ops.multi_margin_backward(c.arrays["x"], c.arrays["labels"], c.opt["reduction"], c.opt["p"],
                                                   1.0, c.arrays.get("weight"), c.arrays.get("grad", c.opt["grad"])),),
    ref=lambda c: (_margin_ref(c, True),),
    scale=lambda c: 4.0,
    big=({"n": 2048, "c": 100}, {}),
))
