"""Op table entries: dropout (with an int seed, so the reference recomputes the mask
from core/random.h's stream) and dropout_backward."""
import numpy as np

import reference as ref
from harness import OpSpec, random

from .common import ANY_SHAPE, any_shape, entry

_SEED = 2024


def _make(c, gen, backward=False):
    shape = any_shape(c)
    c.add("dy" if backward else "x", random(gen, shape, c.dtype), ("...",))
    if backward:
        c.add("mask", np.asarray(gen.random(shape) < 0.6), ("...",))


def _p_check(c):
    return None if 0.0 <= c.opt["p"] <= 1.0 else (ValueError, ("p",))


_OPTIONS = {"ndim": [2, 1, 3, 0], "p": [0.5, 0.0, 0.2, 1.0]}
_BAD_P = [("p", 1.5, ValueError, ("p",)), ("p", -0.1, ValueError, ("p",))]

entry(OpSpec(
    name="dropout", dims=dict(ANY_SHAPE), options=_OPTIONS, make=_make, check=_p_check, bad_options=_BAD_P,
    call=lambda ops, c: tuple(np.asarray(a, dtype=c.dtype) for a in ops.dropout(c.arrays["x"], c.opt["p"], _SEED)),
    ref=lambda c: (ref.dropout(c.arrays["x"], ref.dropout_mask(_SEED, c.arrays["x"].shape, c.opt["p"]), c.opt["p"]),
                   ref.dropout_mask(_SEED, c.arrays["x"].shape, c.opt["p"]).astype(np.float64)),
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))
entry(OpSpec(
    name="dropout_backward", dims=dict(ANY_SHAPE), options=_OPTIONS, make=lambda c, gen: _make(c, gen, True),
    check=_p_check, bad_options=_BAD_P,
    call=lambda ops, c: (ops.dropout_backward(c.arrays["dy"], c.arrays["mask"], c.opt["p"]),),
    ref=lambda c: (ref.dropout(c.arrays["dy"], c.arrays["mask"], c.opt["p"]),),
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))
