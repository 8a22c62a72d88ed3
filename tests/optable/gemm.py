"""Op table entries: gemm, linear and linear_backward."""
import math

import reference as ref
from harness import OpSpec, random

from .common import entry


def _gemm_make(c, gen):
    d, o = c.dims, c.opt
    c.add("a", random(gen, (d["k"], d["m"]) if o["trans_a"] else (d["m"], d["k"]), c.dtype),
          ("k", "m") if o["trans_a"] else ("m", "k"))
    c.add("b", random(gen, (d["n"], d["k"]) if o["trans_b"] else (d["k"], d["n"]), c.dtype),
          ("n", "k") if o["trans_b"] else ("k", "n"))
    c.add("out", random(gen, (d["m"], d["n"]), c.dtype) if o["use_out"] else None, ("m", "n"), written=True)


def _gemm_call(ops, c):
    a = c.arrays
    y = ops.gemm(a["a"], a["b"], trans_a=c.opt["trans_a"], trans_b=c.opt["trans_b"],
                 alpha=c.opt["alpha"], beta=c.opt["beta"], out=a["out"])
    assert a["out"] is None or y is a["out"], "[gemm] must return out itself"
    return (y,)


def _inner(c):
    """The summed dimension of a gemm-like case (from the arrays: mutations change it)."""
    a = c.arrays["a"]
    return a.shape[0] if c.opt["trans_a"] else a.shape[-1]


entry(OpSpec(
    name="gemm",
    dims={"m": (0, 37), "n": (0, 37), "k": (0, 37)},
    options={"trans_a": [False, True], "trans_b": [False, True], "alpha": [1.0, -0.5, 2.0],
             "beta": [0.0, 1.0, -0.25], "use_out": [False, True]},
    fix=lambda o: dict(o, use_out=o["use_out"] or o["beta"] != 0.0),
    make=_gemm_make, call=_gemm_call,
    ref=lambda c: (ref.gemm(c.arrays["a"], c.arrays["b"], c.arrays["out"], c.opt["trans_a"], c.opt["trans_b"],
                            c.opt["alpha"], c.opt["beta"]),),
    scale=lambda c: abs(c.opt["alpha"]) * (math.sqrt(_inner(c)) + 1) + abs(c.opt["beta"]),
    extra_hostile=[("beta without out",
                    lambda ops, c: ops.gemm(c.arrays["a"], c.arrays["b"], trans_a=c.opt["trans_a"],
                                            trans_b=c.opt["trans_b"], beta=0.5),
                    ValueError, ("beta", "out"))],
    big=({"m": 160, "n": 144, "k": 200}, {"use_out": True, "beta": 1.0}),
))


def _linear_make(c, gen):
    d, o = c.dims, c.opt
    lead = (d["n"], d["l"])[:o["lead"]]
    c.add("x", random(gen, lead + (d["i"],), c.dtype), ("...", "i"))
    c.add("w", random(gen, (d["o"], d["i"]), c.dtype), ("o", "i"))
    c.add("b", random(gen, (d["o"],), c.dtype) if o["bias"] else None, ("o",))


entry(OpSpec(
    name="linear",
    dims={"n": (0, 29), "l": (0, 4), "i": (0, 37), "o": (0, 37)},
    options={"lead": [1, 0, 2], "bias": [True, False]},
    make=_linear_make,
    call=lambda ops, c: (ops.linear(c.arrays["x"], c.arrays["w"], c.arrays["b"]),),
    ref=lambda c: (ref.linear(c.arrays["x"], c.arrays["w"], c.arrays["b"]),),
    scale=lambda c: math.sqrt(c.arrays["w"].shape[-1]) + 1,
    big=({"n": 256, "i": 160, "o": 144}, {}),
))


def _linear_backward_make(c, gen):
    d, o = c.dims, c.opt
    lead = (d["n"], d["l"])[:o["lead"]]
    c.add("dy", random(gen, lead + (d["o"],), c.dtype), ("...", "o"))
    c.add("x", random(gen, lead + (d["i"],), c.dtype), ("...", "i"))
    c.add("w", random(gen, (d["o"], d["i"]), c.dtype), ("o", "i"))


def _linear_backward_call(ops, c):
    dx, dw, db = ops.linear_backward(c.arrays["dy"], c.arrays["x"], c.arrays["w"], bias=c.opt["bias"])
    if not c.opt["bias"]:
        assert db is None, "[linear_backward] db must be None when bias=False"
        return dx, dw
    return dx, dw, db


def _linear_backward_ref(c):
    dy, x, w = (c.arrays[n] for n in ("dy", "x", "w"))
    rows = math.prod(x.shape[:-1])
    dx, dw, db = ref.linear_backward(dy.reshape(rows, dy.shape[-1]), x.reshape(rows, x.shape[-1]), w)
    return (dx.reshape(x.shape), dw, db) if c.opt["bias"] else (dx.reshape(x.shape), dw)


entry(OpSpec(
    name="linear_backward",
    dims={"n": (0, 29), "l": (0, 4), "i": (0, 37), "o": (0, 37)},
    options={"lead": [1, 0, 2], "bias": [True, False]},
    make=_linear_backward_make, call=_linear_backward_call, ref=_linear_backward_ref,
    scale=lambda c: math.sqrt(max(c.arrays["dy"].size // max(c.arrays["dy"].shape[-1], 1),
                                  c.arrays["w"].shape[0])) + 1,
    big=({"n": 1024, "i": 160, "o": 144}, {}),
    thread_invariant=False,
    why="db = dy.sum(0) of a tall, narrow dy gives each thread a range of rows and adds the per-thread "
        "partial sums in thread order (csrc/cpu/gemm_sum.h): the ranges, so the rounding, follow the thread count",
))
