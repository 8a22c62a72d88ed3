"""Op table entries: max_pool2d, avg_pool2d and global_avg_pool2d, forward and
backward."""
import numpy as np

import reference as ref
from harness import OpSpec, random

from .common import entry


_POOL_DIMS = {"n": (0, 3), "c": (1, 4), "h": (1, 11), "w": (1, 11)}
_POOL_OPTIONS = {"batched": [True, False], "kernel_size": [2, 3, (2, 3), 1], "stride": [None, 1, 2, (1, 2)],
                 "padding": [0, 1, (1, 0)], "dilation": [1, 2], "ceil_mode": [False, True],
                 "count_include_pad": [True, False]}
_WINDOW_NAMES = ("kernel_size", "stride", "padding", "dilation", "x", "input_shape")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pool_fix(o):
    k, p = _pair(o["kernel_size"]), _pair(o["padding"])
    return dict(o, padding=o["padding"] if all(pi <= ki // 2 for pi, ki in zip(p, k)) else 0)


def _pool_sym(c, last=("h", "w")):
    return ("...", "c") + last  # (N, C, H, W) or (C, H, W); _pool_x_check rejects other ranks


def _pool_out_shape(c, shape, max_pool):
    """The output's (oh, ow) for an input of `shape`, or None when it would be empty."""
    o = c.opt
    d = _pair(o["dilation"]) if max_pool else (1, 1)
    s = _pair(o["stride"] if o["stride"] is not None else o["kernel_size"])
    out = tuple(ref._pool_out(n, k, si, p, di, o["ceil_mode"])
                for n, k, si, p, di in zip(shape[-2:], _pair(o["kernel_size"]), s, _pair(o["padding"]), d))
    return out if min(out) > 0 else None


def _window(c, max_pool):
    o = c.opt
    kw = {"kernel_size": o["kernel_size"], "stride": o["stride"], "padding": o["padding"], "ceil_mode": o["ceil_mode"]}
    if max_pool:
        kw["dilation"] = o["dilation"]
    else:
        kw["count_include_pad"] = o["count_include_pad"]
    return kw


def _pool_x_check(c, name="x"):
    x = c.arrays[name]
    if x.ndim not in (3, 4):
        return ValueError, (name,)
    if name == "x" and "global" not in c.spec.name and _pool_out_shape(c, x.shape, c.spec.name[:3] == "max") is None:
        return ValueError, _WINDOW_NAMES
    return None


def _pool_entries(max_pool):
    name = "max_pool2d" if max_pool else "avg_pool2d"
    fwd, bwd = getattr(ref, name), getattr(ref, name + "_backward")
    options = {k: v for k, v in _POOL_OPTIONS.items() if k != ("count_include_pad" if max_pool else "dilation")}

    def shape(c):
        return ((c.dims["n"],) if c.opt["batched"] else ()) + (c.dims["c"], c.dims["h"], c.dims["w"])

    def make_fwd(c, gen):
        c.add("x", random(gen, shape(c), c.dtype), _pool_sym(c))

    def make_bwd(c, gen):
        c.opt["input_shape"] = shape(c)
        out = _pool_out_shape(c, shape(c), max_pool) or (1, 1)
        c.add("dy", random(gen, shape(c)[:-2] + out, c.dtype), _pool_sym(c, ("oh", "ow")))
        if max_pool:  # indices from a forward pass (any in-range indices would do)
            idx = fwd(random(gen, shape(c), c.dtype), **_window(c, True))[1] if _pool_out_shape(c, shape(c), True) \
                else np.zeros(c.arrays["dy"].shape, np.int64)
            c.add("indices", idx, _pool_sym(c, ("oh", "ow")))

    def bwd_check(c):
        dy, want = c.arrays["dy"], c.opt["input_shape"]
        if _pool_x_check(c, "dy"):
            return _pool_x_check(c, "dy")
        if dy.ndim != len(want) or dy.shape[:-2] != want[:-2]:
            return ValueError, ("dy", "input_shape")
        if max_pool:
            idx = c.arrays["indices"]
            if idx.dtype.kind in "iu" and idx.size and (idx.min() < -1 or idx.max() >= want[-1] * want[-2]):
                return ValueError, ("indices",)
            return None
        out = _pool_out_shape(c, want, False)
        return (ValueError, _WINDOW_NAMES + ("dy",)) if out is None or dy.shape[-2:] != out else None

    def ref_fwd(c):
        r = fwd(c.arrays["x"], **_window(c, max_pool))
        return r if max_pool else (r,)

    def call_fwd(ops, c):
        r = getattr(ops, name)(c.arrays["x"], **_window(c, max_pool))
        return r if max_pool else (r,)

    def call_bwd(ops, c):
        if max_pool:
            return (ops.max_pool2d_backward(c.arrays["dy"], c.arrays["indices"], c.opt["input_shape"]),)
        return (ops.avg_pool2d_backward(c.arrays["dy"], c.opt["input_shape"], **_window(c, False)),)

    def ref_bwd(c):
        if max_pool:
            return (bwd(c.arrays["dy"], c.arrays["indices"], c.opt["input_shape"]),)
        return (bwd(c.arrays["dy"], c.opt["input_shape"], **_window(c, False)),)

    bad = [("kernel_size", 0, ValueError, ("kernel_size",)), ("stride", -1, ValueError, ("stride",)),
           ("padding", -1, ValueError, ("padding",)), ("kernel_size", 2.5, TypeError, ("kernel_size",))]
    big = ({"n": 8, "c": 32, "h": 24, "w": 24}, {"kernel_size": 3, "stride": 1, "padding": 1})
    entry(OpSpec(name=name, dims=dict(_POOL_DIMS), options=options, fix=_pool_fix, make=make_fwd,
                 call=call_fwd, ref=ref_fwd, check=_pool_x_check, bad_options=bad, big=big))
    entry(OpSpec(name=name + "_backward", dims=dict(_POOL_DIMS), options=options, fix=_pool_fix, make=make_bwd,
                 call=call_bwd, ref=ref_bwd, check=bwd_check,
                 bad_options=[("input_shape", (2, -1, 3, 3), ValueError, ("input_shape",))], big=big))


_pool_entries(True)
_pool_entries(False)


def _global_pool_make(c, gen, backward):
    shape = ((c.dims["n"],) if c.opt["batched"] else ()) + (c.dims["c"], c.dims["h"], c.dims["w"])
    if backward:
        c.opt["input_shape"] = shape
        c.add("dy", random(gen, shape[:-2] + (1, 1), c.dtype), _pool_sym(c, (1, 1)))
    else:
        c.add("x", random(gen, shape, c.dtype), _pool_sym(c))


def _global_pool_check(c):
    dy, want = c.arrays["dy"], c.opt["input_shape"]
    if _pool_x_check(c, "dy"):
        return _pool_x_check(c, "dy")
    return None if dy.shape[:-2] == want[:-2] else (ValueError, ("dy", "input_shape"))


entry(OpSpec(
    name="global_avg_pool2d", dims=dict(_POOL_DIMS), options={"batched": [True, False]},
    make=lambda c, gen: _global_pool_make(c, gen, False), check=_pool_x_check,
    call=lambda ops, c: (ops.global_avg_pool2d(c.arrays["x"]),),
    ref=lambda c: (ref.global_avg_pool2d(c.arrays["x"]),),
    big=({"n": 8, "c": 64, "h": 14, "w": 14}, {}),
))
entry(OpSpec(
    name="global_avg_pool2d_backward", dims=dict(_POOL_DIMS), options={"batched": [True, False]},
    make=lambda c, gen: _global_pool_make(c, gen, True), check=_global_pool_check,
    call=lambda ops, c: (ops.global_avg_pool2d_backward(c.arrays["dy"], c.opt["input_shape"]),),
    ref=lambda c: (np.broadcast_to(c.arrays["dy"] / np.prod(c.opt["input_shape"][-2:]), c.opt["input_shape"]),),
    big=({"n": 8, "c": 64, "h": 14, "w": 14}, {}),
))
