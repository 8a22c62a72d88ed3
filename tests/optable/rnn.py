"""Op table entries: lstm_cell, gru_cell, lstm, gru and their backwards.

Shapes: x (b, i) for a cell or (t, b, i) for a sequence, states (b, h), w_ih
(gh, i), w_hh (gh, h), biases (gh,), with gh = 4 h (LSTM) or 3 h (GRU): a case
is drawn consistent and one mutation breaks the agreement of a symbol. The
backward entries run the forward first (its cache is what the backward takes),
so they return the backward's results only.
"""
import math

import numpy as np

import reference as ref
from harness import OpSpec, random

from .common import entry

_BIAS = {"both": ("b_ih", "b_hh"), "none": (), "hh": ("b_hh",)}


def _lstm(name):
    return name.startswith("lstm")


def _cell(name):
    return "_cell" in name


def _make(c, gen):
    """x, the states (or None), the weights and biases (scaled so gates do not saturate)."""
    d, o, name = c.dims, c.opt, c.spec.name
    gates = 4 if _lstm(name) else 3
    cell = _cell(name)
    lead, lead_sym = ((d["b"],), ("b",)) if cell else ((d["t"], d["b"]), ("t", "b"))
    c.add("x", random(gen, lead + (d["i"],), c.dtype), lead_sym + ("i",))
    states = ("h", "c") if _lstm(name) else ("h",)
    for s in states:
        c.add(s if cell else s + "0", random(gen, (d["b"], d["h"]), c.dtype) if o["state"] else None, ("b", "h"))
    scale = 1 / math.sqrt(1 + d["i"] + d["h"])
    c.add("w_ih", random(gen, (gates * d["h"], d["i"]), c.dtype, scale), ("gh", "i"))
    c.add("w_hh", random(gen, (gates * d["h"], d["h"]), c.dtype, scale), ("gh", "h"))
    for b in ("b_ih", "b_hh"):
        c.add(b, random(gen, (gates * d["h"],), c.dtype) if b in _BIAS[o["bias"]] else None, ("gh",))
    if name.endswith("_backward"):
        grads = (("dh_new", "dc_new") if _lstm(name) else ("dh_new",)) if cell else \
            (("dy", "dh_n", "dc_n") if _lstm(name) else ("dy", "dh_n"))
        for g in grads:
            present = o["grads"] == "all" or (g in ("dy", "dh_new")) == (o["grads"] == "first")
            shape, sym = ((lead + (d["h"],), lead_sym + ("h",)) if g == "dy" else ((d["b"], d["h"]), ("b", "h")))
            c.add(g, random(gen, shape, c.dtype) if present else None, sym)


def _forward_args(c):
    a, name = c.arrays, c.spec.name
    s = ("h", "c") if _cell(name) else ("h0", "c0")
    states = (a[s[0]], a[s[1]]) if _lstm(name) else (a[s[0]],)
    return (a["x"],) + states + (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])


def _forward(ops, c):
    fwd = getattr(ops, c.spec.name.removesuffix("_backward"))
    out = fwd(*_forward_args(c))
    return out[:-1], out[-1]  # results, cache


def _call(ops, c):
    return _forward(ops, c)[0]


def _backward_call(ops, c):
    a, name = c.arrays, c.spec.name
    _, cache = _forward(ops, c)
    if _cell(name):
        grads = (a["dh_new"], a["dc_new"]) if _lstm(name) else (a["dh_new"],)
    else:
        grads = (a["dy"], a["dh_n"], a["dc_n"]) if _lstm(name) else (a["dy"], a["dh_n"])
    got = getattr(ops, name)(*grads, cache)
    return tuple(g for g, b in zip(got, _present(c, len(got))) if b)


def _present(c, n):
    """Which backward results exist: all, except the gradients of absent biases."""
    return (True,) * (n - 2) + (c.arrays["b_ih"] is not None, c.arrays["b_hh"] is not None)


def _states0(c):
    """The initial states the reference starts from (zeros for None)."""
    a, name, b, h = c.arrays, c.spec.name, c.arrays["x"].shape[-2], c.arrays["w_hh"].shape[1]
    names = ("h", "c") if _cell(name) else ("h0", "c0")
    return [np.zeros((b, h)) if a.get(n) is None else a[n] for n in names[:2 if _lstm(name) else 1]]


def _ref(c):
    a, name = c.arrays, c.spec.name
    w = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    s = _states0(c)
    if name == "lstm_cell":
        return ref.lstm_cell(a["x"], *s, *w)
    if name == "gru_cell":
        return (ref.gru_cell(a["x"], *s, *w),)
    return getattr(ref, name)(a["x"], *s, *w)


def _backward_ref(c):
    a, name = c.arrays, c.spec.name
    w = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    s, x = _states0(c), a["x"]
    if name == "lstm_cell_backward":
        dx, dh, dc, dw_ih, dw_hh, db = ref.lstm_cell_backward(a["dh_new"], a["dc_new"], x, *s, *w)
        out = (dx, dh, dc, dw_ih, dw_hh, db, db)
    elif name == "gru_cell_backward":
        dh_new = np.zeros(s[0].shape) if a["dh_new"] is None else a["dh_new"]
        out = ref.gru_cell_backward(dh_new, x, *s, *w)
    elif name == "lstm_backward":
        dx, dh, dc, dw_ih, dw_hh, db = ref.lstm_backward(a["dy"], a["dh_n"], a["dc_n"], x, *s, *w)
        out = (dx, dh, dc, dw_ih, dw_hh, db, db)
    else:
        out = ref.gru_backward(a["dy"], a["dh_n"], x, *s, *w)
    return tuple(r for r, b in zip(out, _present(c, len(out))) if b)


def _scale(c):
    """Sums of i + h products per gate, over t steps; weight gradients sum over t * b rows."""
    x, h = c.arrays["x"], c.arrays["w_hh"].shape[1]
    t = 1 if _cell(c.spec.name) else x.shape[0]
    rows = t * x.shape[-2]
    return (1 + math.sqrt(x.shape[-1] + h)) * (1 + t) * (1 + math.sqrt(rows))


def _check(c):
    """gh = G h, which the symbols cannot say: with no state given, w_hh's columns alone
    carry h, so a changed column count agrees with every symbol but not with w_ih's rows."""
    w_ih, w_hh = c.arrays["w_ih"], c.arrays["w_hh"]
    if w_ih.shape[0] != (4 if _lstm(c.spec.name) else 3) * w_hh.shape[1]:
        return ValueError, ("w_hh", "w_ih")
    return None


def _wrong_cache(ops, c):
    """The backward given the cache of the other family's cell: gru_cell's for the LSTM
    ops, lstm_cell's for the GRU ops (all incoming gradients None)."""
    name, x = c.spec.name, np.zeros((2, 3), c.dtype)
    if _lstm(name):
        cache = ops.gru_cell(x, None, np.zeros((6, 3), c.dtype), np.zeros((6, 2), c.dtype))[-1]
    else:
        cache = ops.lstm_cell(x, None, None, np.zeros((8, 3), c.dtype), np.zeros((8, 2), c.dtype))[-1]
    grads = (2 if _lstm(name) else 1) + (0 if _cell(name) else 1)  # (dy,) dh (, dc)
    return getattr(ops, name)(*((None,) * grads), cache)


_CELL_DIMS = {"b": (0, 7), "i": (0, 11), "h": (0, 19)}
_SEQ_DIMS = {"t": (0, 5), "b": (0, 5), "i": (0, 9), "h": (0, 17)}
_FWD_OPTIONS = {"state": [True, False], "bias": ["both", "none", "hh"]}
_BWD_OPTIONS = dict(_FWD_OPTIONS, grads=["all", "first", "final"])

for _name in ("lstm_cell", "gru_cell", "lstm", "gru"):
    _cell_op = _cell(_name)
    _dims = _CELL_DIMS if _cell_op else _SEQ_DIMS
    _big = ({"b": 64, "i": 40, "h": 48}, {}) if _cell_op else ({"t": 6, "b": 16, "i": 24, "h": 40}, {})
    entry(OpSpec(name=_name, dims=dict(_dims), options=_FWD_OPTIONS, make=_make, call=_call, ref=_ref,
                 scale=_scale, check=_check, big=_big))
    entry(OpSpec(
        name=_name + "_backward", dims=dict(_dims), options=_BWD_OPTIONS, make=_make, call=_backward_call,
        ref=_backward_ref, scale=_scale, check=_check, big=_big, needs=(_name,),
        extra_hostile=[("the cache of another op", _wrong_cache, TypeError, ("cache",))],
        thread_invariant=False,
        why="the bias gradients are column sums of the gate gradients over t * b rows (csrc/cpu/gemm_sum.h): "
            "a tall, narrow sum gives each thread a range of rows, so the rounding follows the thread count"))
