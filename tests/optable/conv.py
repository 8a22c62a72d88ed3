"""Op table entries: conv2d and conv2d_backward.

x is ("...", "c", "ih", "iw") (batched or not), w ("k", "cg", "r", "s"): the rules
tying them (c = cg * groups, k divisible by groups, a kernel that fits the padded
input, dy of the output's shape) are not equalities of symbols, so _check
applies them to whatever shapes a mutation left.
"""
import math

import reference as ref
from harness import OpSpec, random

from .common import entry

# (ih, iw: the input's height and width; "w" names the weight)
_CONV_DIMS = {"n": (0, 3), "cg": (1, 4), "kg": (1, 3), "ih": (1, 11), "iw": (1, 11), "r": (1, 4), "s": (1, 4)}
_CONV_OPTIONS = {"batched": [True, False], "stride": [1, 2, (1, 3)], "padding": [0, 1, (2, 0), "same", "valid"],
                 "dilation": [1, 2, (2, 1)], "groups": [1, 2, 3], "depthwise": [False, True], "bias": [True, False]}
_WINDOW = ("x", "w", "padding", "dilation", "stride")


def _conv_fix(o):
    return dict(o, stride=1) if o["padding"] == "same" else o


def _window(c):
    o = c.opt
    return {"stride": o["stride"], "padding": o["padding"], "dilation": o["dilation"], "groups": o["groups"]}


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _out_shape(c, x_shape, w_shape):
    """The output's shape for these shapes, or None when no valid conv2d has them (then
    _check says why)."""
    groups = c.opt["groups"]
    if len(x_shape) not in (3, 4) or len(w_shape) != 4 or min(x_shape[-3:]) < 1 or min(w_shape) < 1:
        return None
    if x_shape[-3] % groups or w_shape[0] % groups or w_shape[1] * groups != x_shape[-3]:
        return None
    _, _, pads, out = ref._conv_geometry((1,) + tuple(x_shape[-3:]), w_shape, c.opt["stride"], c.opt["padding"],
                                         c.opt["dilation"])
    if min(out) < 1:
        return None
    return tuple(x_shape[:-3]) + (w_shape[0],) + out


def _check(c):
    x, w = c.arrays["x"], c.arrays["w"]
    if x.ndim not in (3, 4) or min(x.shape[-3:]) < 1:
        return ValueError, ("x",)
    if w.ndim != 4 or min(w.shape) < 1:
        return ValueError, ("w",)
    if x.shape[-3] % c.opt["groups"] or w.shape[0] % c.opt["groups"] or w.shape[1] * c.opt["groups"] != x.shape[-3]:
        return ValueError, ("x", "w", "groups")
    out = _out_shape(c, x.shape, w.shape)
    if out is None:
        return ValueError, _WINDOW
    if "dy" in c.arrays and c.arrays["dy"].shape != out:
        return ValueError, ("dy",)
    return None


def _make(c, gen, backward):
    d, o = c.dims, c.opt
    if o["depthwise"]:  # one input channel per group: groups = C = cg + 1
        c.opt["groups"] = groups = d["cg"] + 1
        cg = 1
    else:
        groups, cg = o["groups"], d["cg"]
    x_shape = ((d["n"],) if o["batched"] else ()) + (cg * groups, d["ih"], d["iw"])
    w_shape = (d["kg"] * groups, cg, d["r"], d["s"])
    c.add("x", random(gen, x_shape, c.dtype), ("...", "c", "ih", "iw"))
    c.add("w", random(gen, w_shape, c.dtype), ("k", "cg", "r", "s"))
    if backward:
        out = _out_shape(c, x_shape, w_shape) or x_shape[:-3] + (w_shape[0], 1, 1)
        c.add("dy", random(gen, out, c.dtype), ("...", "k", "oh", "ow"))
    else:
        c.add("b", random(gen, (w_shape[0],), c.dtype) if o["bias"] else None, ("k",))


def _scale(c, backward):
    x, w = c.arrays["x"], c.arrays["w"]
    per_output = w.shape[1] * w.shape[2] * w.shape[3] if w.ndim == 4 else 1
    if not backward:
        return 1 + math.sqrt(per_output)
    dy = c.arrays["dy"]
    return 1 + math.sqrt(max(per_output * (w.shape[0] if w.ndim == 4 else 1), dy.size // max(1, dy.shape[-3])))


_BAD = [("stride", 0, ValueError, ("stride",)), ("padding", -1, ValueError, ("padding",)),
        ("dilation", 0, ValueError, ("dilation",)), ("groups", 0, ValueError, ("groups",)),
        ("padding", "full", ValueError, ("padding",)), ("stride", 1.5, TypeError, ("stride",)),
        ("groups", 2.0, TypeError, ("groups",))]
_BIG = ({"n": 8, "cg": 16, "kg": 16, "ih": 24, "iw": 24, "r": 3, "s": 3},
        {"batched": True, "stride": 1, "padding": 1, "dilation": 1, "groups": 1, "depthwise": False})

entry(OpSpec(
    name="conv2d", dims=dict(_CONV_DIMS), options=dict(_CONV_OPTIONS), fix=_conv_fix,
    make=lambda c, gen: _make(c, gen, False), check=_check,
    call=lambda ops, c: (ops.conv2d(c.arrays["x"], c.arrays["w"], c.arrays["b"], **_window(c)),),
    ref=lambda c: (ref.conv2d(c.arrays["x"], c.arrays["w"], c.arrays["b"], **_window(c)),),
    scale=lambda c: _scale(c, False), bad_options=_BAD, big=_BIG,
))


def _backward_call(ops, c):
    dx, dw, db = ops.conv2d_backward(c.arrays["dy"], c.arrays["x"], c.arrays["w"], **_window(c), bias=c.opt["bias"])
    if not c.opt["bias"]:
        assert db is None, "[conv2d_backward] db must be None with bias=False"
        return dx, dw
    return dx, dw, db


def _backward_ref(c):
    dx, dw, db = ref.conv2d_backward(c.arrays["dy"], c.arrays["x"], c.arrays["w"], **_window(c))
    return (dx, dw, db) if c.opt["bias"] else (dx, dw)


entry(OpSpec(
    name="conv2d_backward", dims=dict(_CONV_DIMS), options=dict(_CONV_OPTIONS), fix=_conv_fix,
    make=lambda c, gen: _make(c, gen, True), check=_check, call=_backward_call, ref=_backward_ref,
    scale=lambda c: _scale(c, True), bad_options=_BAD, big=_BIG,
))
