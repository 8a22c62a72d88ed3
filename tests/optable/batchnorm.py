"""Op table entries: batch_norm and batch_norm_backward."""
import math

import numpy as np

import reference as ref
from harness import OpSpec, random

from .common import entry


_BN_DIMS = {"n": (0, 9), "c": (0, 6), "h": (1, 5), "w": (1, 4)}
_BN_OPTIONS = {"ndim": [2, 4, 3], "training": [True, False], "affine": [True, False], "track": [True, False],
               "momentum": [0.1, 0.0, 1.0], "eps": [1e-5, 0.5]}


def _bn_x(c, gen):
    d = c.dims
    shape = (d["n"], d["c"], d["h"], d["w"])[:c.opt["ndim"]]
    c.add("x", random(gen, shape, c.dtype, 2) + 0.5, ("n", "c", "..."))  # (N, C, *)


def _bn_values_per_channel(c):
    """N times the product of the trailing dimensions (torch's rule, also for C = 0)."""
    x = c.arrays["x"]
    return math.prod(x.shape[:1] + x.shape[2:]) if x.ndim >= 2 else 0


def _bn_make(c, gen):
    o, k = c.opt, c.dims["c"]
    _bn_x(c, gen)
    c.add("weight", random(gen, (k,), c.dtype) if o["affine"] else None, ("c",))
    c.add("bias", random(gen, (k,), c.dtype) if o["affine"] else None, ("c",))
    c.add("running_mean", random(gen, (k,), c.dtype) if o["track"] else None, ("c",), written=True)
    c.add("running_var", np.abs(random(gen, (k,), c.dtype)) + 0.1 if o["track"] else None, ("c",), written=True)


def _bn_call(ops, c):
    a = c.arrays
    y = ops.batch_norm(a["x"], a["weight"], a["bias"], a["running_mean"], a["running_var"], c.opt["training"],
                       c.opt["momentum"], c.opt["eps"])
    y = y[:1] if _bn_values_per_channel(c) == 0 else tuple(y)  # an empty batch's saved statistics are unused
    return y + ((a["running_mean"], a["running_var"]) if c.opt["track"] else ())


def _no_channels(c, *shapes):
    """The results for C = 0 (reference.py divides by C): empty arrays of these shapes."""
    return tuple(np.zeros(s) for s in shapes)


def _bn_ref(c):
    a = c.arrays
    if a["x"].shape[1] == 0:
        stats = () if _bn_values_per_channel(c) == 0 else ((0,), (0,))
        return _no_channels(c, a["x"].shape, *stats, *([(0,), (0,)] if c.opt["track"] else []))
    y, mean, invstd, rm, rv = ref.batch_norm(a["x"], a["weight"], a["bias"], a["running_mean"], a["running_var"],
                                             c.opt["training"], c.opt["momentum"], c.opt["eps"])
    if not c.opt["training"]:
        mean, invstd = np.asarray(a["running_mean"]), 1 / np.sqrt(np.asarray(a["running_var"], np.float64) + c.opt["eps"])
    if c.opt["training"] and _bn_values_per_channel(c) == 0:  # an empty batch leaves the statistics alone
        rm, rv = a["running_mean"], a["running_var"]
    stats = () if _bn_values_per_channel(c) == 0 else (mean, invstd)
    return (y,) + stats + ((rm, rv) if c.opt["track"] else ())


def _bn_check(c):
    if c.opt["training"] and _bn_values_per_channel(c) == 1:
        return ValueError, ("x", "input")
    return None


entry(OpSpec(
    name="batch_norm", dims=dict(_BN_DIMS), options=_BN_OPTIONS,
    fix=lambda o: dict(o, track=o["track"] or not o["training"]),
    make=_bn_make, call=_bn_call, ref=_bn_ref, check=_bn_check,
    scale=lambda c: 1 + math.sqrt(_bn_values_per_channel(c)),
    big=({"n": 32, "c": 32, "h": 12, "w": 12}, {"ndim": 4, "training": True}),
))


def _bn_backward_make(c, gen):
    _bn_x(c, gen)
    k = c.dims["c"]
    c.add("dy", random(gen, c.arrays["x"].shape, c.dtype), c.shapes["x"])
    c.add("weight", random(gen, (k,), c.dtype) if c.opt["affine"] else None, ("c",))
    c.add("save_mean", random(gen, (k,), c.dtype), ("c",))
    c.add("save_invstd", np.abs(random(gen, (k,), c.dtype)) + 0.5, ("c",))


def _bn_backward_call(ops, c):
    a = c.arrays
    dx, dw, db = ops.batch_norm_backward(a["dy"], a["x"], a["weight"], a["save_mean"], a["save_invstd"],
                                         c.opt["training"])
    if a["weight"] is None:
        assert dw is None and db is None, "[batch_norm_backward] dweight and dbias must be None without weight"
        return (dx,)
    return dx, dw, db


def _bn_backward_ref(c):
    a = c.arrays
    if a["x"].shape[1] == 0:
        return _no_channels(c, a["x"].shape, *([] if a["weight"] is None else [(0,), (0,)]))
    dx, dw, db = ref.batch_norm_backward(a["dy"], a["x"], a["weight"], a["save_mean"], a["save_invstd"],
                                         c.opt["training"])
    return (dx,) if a["weight"] is None else (dx, dw, db)


entry(OpSpec(
    name="batch_norm_backward", dims=dict(_BN_DIMS), options={k: _BN_OPTIONS[k] for k in ("ndim", "training", "affine")},
    make=_bn_backward_make, call=_bn_backward_call, ref=_bn_backward_ref,
    scale=lambda c: 1 + math.sqrt(_bn_values_per_channel(c)),
    big=({"n": 32, "c": 32, "h": 12, "w": 12}, {"ndim": 4, "training": True}),
))
