"""Op table entries: the optimizer steps (SGD and the adaptive ones) and the
gradient utilities (clip_grad_norm_, clip_grad_value_, grad_norm, all_finite)."""
import math

import numpy as np

import reference as ref
from harness import OpSpec, random

from .common import entry


# Tensor i of an optimizer case has the symbolic shape _TENSOR_SHAPES[i].
_TENSOR_SHAPES = [("a0",), ("a1", "b1"), ("a2", "b2", "c2")]
_TENSOR_DIMS = {"a0": (0, 70), "a1": (0, 9), "b1": (0, 13), "a2": (0, 4), "b2": (0, 5), "c2": (0, 6)}


def _tensors(c, gen, states):
    """params[i], grads[i] and one state list per name in `states`, for count tensors."""
    for i in range(c.opt["count"]):
        sym = _TENSOR_SHAPES[i]
        shape = tuple(c.dims[s] for s in sym)
        c.add(f"params[{i}]", random(gen, shape, c.dtype), sym, written=True)
        c.add(f"grads[{i}]", random(gen, shape, c.dtype), sym)
        for s in states:
            c.add(f"{s}[{i}]", random(gen, shape, c.dtype), sym, written=True)


def _list(c, name):
    """The arrays name[0], name[1], ... (None where a bad option asks for a list the case lacks)."""
    return [c.arrays.get(f"{name}[{i}]") for i in range(c.opt["count"])]


def _sgd_kwargs(c):
    return {k: c.opt[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
                                  "first_step")}


def _sgd_make(c, gen):
    _tensors(c, gen, ["momentum_buffers"] if c.opt["momentum"] else [])


def _sgd_call(ops, c):
    bufs = _list(c, "momentum_buffers") if c.opt["momentum"] else None
    ops.sgd_step(_list(c, "params"), _list(c, "grads"), bufs, **_sgd_kwargs(c))
    return tuple(_list(c, "params")) + tuple(bufs or ())


def _sgd_ref(c):
    o = c.opt
    new_p, new_b = [], []
    for i in range(o["count"]):
        buf = None if o["first_step"] or not o["momentum"] else c.arrays[f"momentum_buffers[{i}]"]
        p, b = ref.sgd_step(c.arrays[f"params[{i}]"], c.arrays[f"grads[{i}]"], buf, o["lr"], o["momentum"],
                            o["dampening"], o["weight_decay"], o["nesterov"], o["maximize"])
        new_p.append(p)
        if o["momentum"]:
            new_b.append(b)
    return tuple(new_p) + tuple(new_b)


def _drop_last(c, name):
    return _list(c, name)[:-1]


entry(OpSpec(
    name="sgd_step",
    dims=dict(_TENSOR_DIMS),
    options={"count": [1, 2, 3, 0], "lr": [0.1, 0.0, 1.5], "momentum": [0.0, 0.9], "dampening": [0.0, 0.25],
             "weight_decay": [0.0, 0.01], "nesterov": [False, True], "maximize": [False, True],
             "first_step": [False, True]},
    fix=lambda o: dict(o, nesterov=o["nesterov"] and o["momentum"] > 0 and o["dampening"] == 0),
    make=_sgd_make, call=_sgd_call, ref=_sgd_ref,
    bad_options=[("lr", -0.1, ValueError, ("lr",)), ("momentum", -0.5, ValueError, ("momentum",)),
                 ("weight_decay", -1.0, ValueError, ("weight_decay",))],
    extra_hostile=[  # each needs at least one tensor
        ("one grad fewer than params",
         lambda ops, c: ops.sgd_step(_list(c, "params"), _drop_last(c, "grads"),
                                     _list(c, "momentum_buffers") if c.opt["momentum"] else None, **_sgd_kwargs(c)),
         ValueError, ("grads", "params")),
        ("one momentum buffer fewer than params",
         lambda ops, c: ops.sgd_step(_list(c, "params"), _list(c, "grads"), _drop_last(c, "params"),
                                     **dict(_sgd_kwargs(c), momentum=0.9, nesterov=False)),
         ValueError, ("momentum_buffers",)),
        ("momentum without buffers",
         lambda ops, c: ops.sgd_step(_list(c, "params"), _list(c, "grads"), None,
                                     **dict(_sgd_kwargs(c), momentum=0.9, nesterov=False)),
         ValueError, ("momentum_buffers",)),
        ("nesterov with dampening",
         lambda ops, c: ops.sgd_step(_list(c, "params"), _list(c, "grads"), _list(c, "params"),
                                     **dict(_sgd_kwargs(c), momentum=0.9, dampening=0.5, nesterov=True)),
         ValueError, ("nesterov",)),
    ],
    hostile_when=lambda c: c.opt["count"] > 0,
    big=({"a0": 70001, "a1": 300, "b1": 257, "a2": 3, "b2": 5, "c2": 7}, {"count": 3, "momentum": 0.9}),
))



# The adaptive optimizers: (state list, the reference's state key, needed(options), initial values).
def _positive(gen, shape, dtype):
    return np.asarray(np.abs(gen.standard_normal(shape)) + 0.1, dtype)


_OPTIMIZERS = {
    "adagrad_step": dict(
        states=[("sums", "G", None, _positive)], ref=ref.adagrad_step, step=True,
        options={"lr_decay": [0.0, 0.1], "eps": [1e-10, 0.1]}),
    "adadelta_step": dict(
        states=[("square_avgs", "eg", None, _positive), ("acc_deltas", "edx", None, _positive)],
        ref=ref.adadelta_step, step=False, options={"rho": [0.9, 0.0, 1.0], "eps": [1e-6, 0.1]},
        bad=[("rho", 1.5, ValueError, ("rho",))]),
    "rmsprop_step": dict(
        states=[("square_avgs", "v", None, _positive), ("grad_avgs", "mean", "centered", random),
                ("momentum_buffers", "buf", "momentum", random)],
        ref=ref.rmsprop_step, step=False,
        options={"alpha": [0.99, 0.5], "eps": [1e-8, 0.1], "momentum": [0.0, 0.9], "centered": [False, True]}),
    "adam_step": dict(
        states=[("exp_avgs", "m", None, random), ("exp_avg_sqs", "v", None, _positive),
                ("max_exp_avg_sqs", "vmax", "amsgrad", _positive)],
        ref=ref.adam_step, step=True,
        options={"beta1": [0.9, 0.0], "beta2": [0.999, 0.5], "eps": [1e-8, 0.1], "amsgrad": [False, True],
                 "decoupled_weight_decay": [False, True]},
        bad=[("beta1", 1.0, ValueError, ("betas[0]", "beta1")), ("beta2", -0.1, ValueError, ("betas[1]", "beta2"))]),
    "adamax_step": dict(
        states=[("exp_avgs", "m", None, random), ("exp_infs", "u", None, _positive)],
        ref=ref.adamax_step, step=True, options={"beta1": [0.9, 0.0], "beta2": [0.999, 0.5], "eps": [1e-8, 0.1]},
        bad=[("beta1", 1.0, ValueError, ("betas[0]", "beta1"))]),
    "nadam_step": dict(
        states=[("exp_avgs", "m", None, random), ("exp_avg_sqs", "v", None, _positive)],
        ref=ref.nadam_step, step=True,
        options={"beta1": [0.9, 0.0], "beta2": [0.999, 0.5], "eps": [1e-8, 0.1], "momentum_decay": [4e-3, 0.5],
                 "decoupled_weight_decay": [False, True]}),
}
_COMMON = {"count": [1, 2, 3, 0], "lr": [0.01, 0.0, 0.5], "weight_decay": [0.0, 0.01], "maximize": [False, True],
           "check_finite": [False, True]}


def _nadam_mu(o, s):
    return o["beta1"] * (1 - 0.5 * 0.96 ** (s * o["momentum_decay"]))


def _optim_entry(name, states, ref, step, options, bad=()):
    used = lambda c: [(n, k, init) for n, k, need, init in states if need is None or c.opt[need]]  # noqa: E731
    opts = dict(_COMMON, **options, **({"step": [1, 7]} if step else {}))
    hyper = [k for k in opts if k != "count"]

    def make(c, gen):
        _tensors(c, gen, [n for n, _, _ in used(c)])
        for n, _, init in used(c):
            for i in range(c.opt["count"]):
                a = c.arrays[f"{n}[{i}]"]
                a[...] = init(gen, a.shape, c.dtype)
        if "grad_avgs" in [n for n, _, _ in used(c)]:  # centered RMSprop: v - avg^2 >= 0.1, well conditioned
            for i in range(c.opt["count"]):
                a = c.arrays[f"grad_avgs[{i}]"]
                c.arrays[f"square_avgs[{i}]"][...] += a * a
        if "max_exp_avg_sqs" in [n for n, _, _ in used(c)]:  # AMSGrad's max is at least the average
            for i in range(c.opt["count"]):
                np.maximum(c.arrays[f"max_exp_avg_sqs[{i}]"], c.arrays[f"exp_avg_sqs[{i}]"],
                           out=c.arrays[f"max_exp_avg_sqs[{i}]"])

    def kwargs(c):
        kw = {k: c.opt[k] for k in hyper}
        if name == "nadam_step":
            kw["mu_product"] = math.prod(_nadam_mu(c.opt, s) for s in range(1, c.opt["step"] + 1))
        return kw

    def call(ops, c):
        lists = {n: _list(c, n) for n, _, need, _ in states if need is None or c.opt[need]}
        getattr(ops, name)(_list(c, "params"), _list(c, "grads"), **lists, **kwargs(c))
        return tuple(_list(c, "params")) + tuple(a for n in lists for a in lists[n])

    def reference(c):
        o = c.opt
        kw = {k: o[k] for k in hyper if k not in ("step", "check_finite", "count")}
        new_p, new_s = [], {n: [] for n, _, _ in used(c)}
        for i in range(o["count"]):
            st = {key: c.arrays[f"{n}[{i}]"].astype(np.float64) for n, key, _ in used(c)}
            if step:
                st["t"] = o["step"] - 1
            if name == "nadam_step":
                st["prod"] = math.prod(_nadam_mu(o, s) for s in range(1, o["step"]))
            p, out = ref(c.arrays[f"params[{i}]"], c.arrays[f"grads[{i}]"], st, **kw)
            new_p.append(p)
            for n, key, _ in used(c):
                new_s[n].append(out[key])
        return tuple(new_p) + tuple(a for n in new_s for a in new_s[n])

    first = [n for n, _, need, _ in states if need is None][0]
    entry(OpSpec(
        name=name, dims=dict(_TENSOR_DIMS), options=opts, make=make, call=call, ref=reference,
        scale=lambda c: 10.0,  # the textbook formulas round differently from torch's order of operations
        bad_options=[("lr", -0.1, ValueError, ("lr",)), ("eps", -1.0, ValueError, ("eps",))]
        + ([("step", 0, ValueError, ("step",))] if step else []) + list(bad),
        extra_hostile=[
            (f"one of {first} fewer than params",
             lambda ops, c: getattr(ops, name)(_list(c, "params"), _list(c, "grads"),
                                               **{n: (_drop_last(c, n) if n == first else _list(c, n))
                                                  for n, _, _ in used(c)}, **kwargs(c)),
             ValueError, (first, "params")),
            (f"{first}[0] is params[0]",
             lambda ops, c: getattr(ops, name)(_list(c, "params"), _list(c, "grads"),
                                               **{n: ([c.arrays["params[0]"]] + _list(c, n)[1:] if n == first
                                                      else _list(c, n)) for n, _, _ in used(c)}, **kwargs(c)),
             ValueError, (f"{first}[0]", "params[0]"), lambda c: c.arrays["params[0]"].size > 0),
        ],
        hostile_when=lambda c: c.opt["count"] > 0,
        big=({"a0": 70001, "a1": 300, "b1": 257, "a2": 3, "b2": 5, "c2": 7},
             {"count": 3, **{k: v[-1] for k, v in options.items() if isinstance(v[0], bool)}}),
    ))


for _name, _o in _OPTIMIZERS.items():
    _optim_entry(_name, _o["states"], _o["ref"], _o["step"], _o["options"], _o.get("bad", ()))



# Gradient utilities: lists that may mix float32 and float64 (one native call per dtype).
def _grads_make(c, gen):
    for i in range(c.opt["count"]):
        sym = _TENSOR_SHAPES[i]
        c.add(f"grads[{i}]", random(gen, tuple(c.dims[s] for s in sym), c.dtype), None, written=True)


def _clip_norm_ref(c):
    grads = _list(c, "grads")
    total = ref.grad_norm(grads, c.opt["norm_type"]) if sum(g.size for g in grads) else 0.0
    coef = min(1.0, c.opt["max_norm"] / (total + 1e-6))
    return (total,) + tuple(np.asarray(g, np.float64) * coef for g in grads)


entry(OpSpec(
    name="clip_grad_norm_", dims=dict(_TENSOR_DIMS),
    options={"count": [1, 2, 3, 0], "max_norm": [1.0, 0.0, 100.0], "norm_type": [2.0, 1.0, np.inf, 3.0]},
    make=_grads_make,
    call=lambda ops, c: (np.asarray(ops.clip_grad_norm_(_list(c, "grads"), c.opt["max_norm"], c.opt["norm_type"]),
                                    c.dtype),) + tuple(_list(c, "grads")),
    ref=_clip_norm_ref, mixed_dtypes=True, scale=lambda c: 10.0,
    bad_options=[("max_norm", -1.0, ValueError, ("max_norm",)), ("norm_type", 0.0, ValueError, ("norm_type",))],
    big=({"a0": 70001, "a1": 300, "b1": 257, "a2": 3, "b2": 5, "c2": 7}, {"count": 3}),
    thread_invariant=False,
    why="the norm adds one float64 partial sum per thread, in thread order (csrc/cpu/optim.cpp): the grouping, "
        "so the last bits of the norm and of the scale applied to the grads, follow the thread count",
))
entry(OpSpec(
    name="clip_grad_value_", dims=dict(_TENSOR_DIMS),
    options={"count": [1, 2, 3, 0], "clip_value": [0.5, 0.0, 10.0]},
    make=_grads_make,
    call=lambda ops, c: (ops.clip_grad_value_(_list(c, "grads"), c.opt["clip_value"]),
                         _list(c, "grads"))[1],
    ref=lambda c: tuple(np.clip(np.asarray(g, np.float64), -c.opt["clip_value"], c.opt["clip_value"])
                        for g in _list(c, "grads")),
    mixed_dtypes=True,
    big=({"a0": 70001, "a1": 300, "b1": 257, "a2": 3, "b2": 5, "c2": 7}, {"count": 3}),
))


# The read-only utilities: lists named as the ops name them in their messages.
def _read_make(name):
    def make(c, gen):
        for i in range(c.opt["count"]):
            c.add(f"{name}[{i}]", random(gen, tuple(c.dims[s] for s in _TENSOR_SHAPES[i]), c.dtype), None)
    return make


def _norm_ref(c):
    arrays = _list(c, "grads")
    if not arrays:  # documented (ops.grad_norm): 0.0 for no arrays, whatever the order
        return (0.0,)
    if not sum(a.size for a in arrays):
        # arrays without elements: 0 for the sums and for max |x|; min |x| of nothing is +inf
        return (np.inf if c.opt["norm_type"] == -np.inf else 0.0,)
    return (ref.grad_norm(arrays, c.opt["norm_type"]),)


entry(OpSpec(
    name="grad_norm", dims=dict(_TENSOR_DIMS),
    options={"count": [1, 2, 3, 0], "norm_type": [2.0, 1.0, np.inf, -np.inf, 0.0, 3.0]},
    make=_read_make("grads"),
    call=lambda ops, c: (np.asarray(ops.grad_norm(_list(c, "grads"), c.opt["norm_type"]), c.dtype),),
    ref=_norm_ref, mixed_dtypes=True, scale=lambda c: 10.0,
    bad_options=[("norm_type", float("nan"), ValueError, ("norm_type",))],
    big=({"a0": 70001, "a1": 300, "b1": 257, "a2": 3, "b2": 5, "c2": 7}, {"count": 3}),
    thread_invariant=False,
    why="one float64 partial sum per thread, added in thread order (csrc/cpu/optim.cpp), as clip_grad_norm_",
))
entry(OpSpec(
    name="all_finite", dims=dict(_TENSOR_DIMS), options={"count": [1, 2, 3, 0]},
    make=_read_make("arrays"),
    # True / False as 1.0 / 0.0 of the case's dtype, so check_result compares it as a value
    call=lambda ops, c: (np.asarray(float(ops.all_finite(_list(c, "arrays"))), c.dtype),),
    ref=lambda c: (float(all(np.isfinite(a).all() for a in _list(c, "arrays"))),),
    mixed_dtypes=True,
    big=({"a0": 70001, "a1": 300, "b1": 257, "a2": 3, "b2": 5, "c2": 7}, {"count": 3}),
))
