"""The op table: one entry per public op of deepkern.ops that the reliability
harness (test_fuzz, test_crash, test_threads, test_determinism, test_memory)
checks. An entry draws valid arguments with symbolic shapes, calls the op and
gives its float64 reference from tests/reference.py (see tests/harness.py).
Entries whose op does not exist yet are skipped with that reason; a new family
is one more section here.
"""
import math

import numpy as np

import reference as ref
from harness import OpSpec, random

SPECS = []


def entry(spec):
    SPECS.append(spec)
    return spec


def spec_named(name):
    return next(s for s in SPECS if s.name == name)


# -- gemm and linear -----------------------------------------------------------

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


# -- optimizer steps ------------------------------------------------------------

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
    return [c.arrays[f"{name}[{i}]"] for i in range(c.opt["count"])]


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
             ValueError, (f"{first}[0]", "params[0]")),
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
    total = ref.grad_norm(grads, c.opt["norm_type"]) if grads else 0.0
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


# -- activations ----------------------------------------------------------------

# name -> (parameter names, option values per parameter, whether backward takes y)
_ACTIVATIONS = {
    "relu": ((), (), False),
    "leaky_relu": (("negative_slope",), ([0.01, 0.2, -1.5],), False),
    "elu": (("alpha",), ([1.0, 0.5, 2.0],), False),
    "sigmoid": ((), (), True),
    "tanh": ((), (), True),
    "softplus": (("beta", "threshold"), ([1.0, 2.0, 0.5], [20.0, 1.0]), False),
    "silu": ((), (), False),
}
_ANY_SHAPE = {"d0": (0, 9), "d1": (0, 7), "d2": (0, 40)}


def _any_shape(c):
    return tuple(c.dims[s] for s in ("d0", "d1", "d2")[3 - c.opt["ndim"]:])


def _activation_entries(name, params, values, saves_y):
    fwd, bwd = getattr(ref, name), None
    options = dict(zip(params, values), ndim=[2, 1, 3, 0])
    kw = lambda c: {p: c.opt[p] for p in params}  # noqa: E731
    saved = "y" if saves_y else "x"

    def make_fwd(c, gen):
        c.add("x", random(gen, _any_shape(c), c.dtype, 3), ("...",))

    def make_bwd(c, gen):
        c.add("dy", random(gen, _any_shape(c), c.dtype), ("...",))
        s = random(gen, _any_shape(c), c.dtype, 3)
        c.add(saved, np.asarray(fwd(s, **kw(c)), c.dtype) if saves_y else s, ("...",))

    def ref_bwd(c):
        alpha = c.opt[params[0]] if params else None
        extra = {"threshold": c.opt["threshold"]} if "threshold" in params else {}
        return (ref.activation_backward(name, c.arrays["dy"], c.arrays[saved], alpha, **extra),)

    big = ({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3})
    entry(OpSpec(name=name, dims=dict(_ANY_SHAPE), options=options, make=make_fwd,
                 call=lambda ops, c: (getattr(ops, name)(c.arrays["x"], **kw(c)),),
                 ref=lambda c: (fwd(c.arrays["x"], **kw(c)),), big=big))
    entry(OpSpec(name=name + "_backward", dims=dict(_ANY_SHAPE), options=options, make=make_bwd,
                 call=lambda ops, c: (getattr(ops, name + "_backward")(c.arrays["dy"], c.arrays[saved], **kw(c)),),
                 ref=ref_bwd, big=big))


for _name, (_params, _values, _saves_y) in _ACTIVATIONS.items():
    _activation_entries(_name, _params, _values, _saves_y)


def _dim_check(c, names):
    """softmax's dim must index an axis of its arrays."""
    ndim = c.arrays[names[0]].ndim
    if not -max(ndim, 1) <= c.opt["dim"] < max(ndim, 1):
        return ValueError, ("dim",)
    return None


def _softmax_entries(name, log):
    def fwd(x, dim):  # numpy's max has no identity: an empty x gives an empty result, as torch
        return np.zeros(np.shape(x)) if np.size(x) == 0 else getattr(ref, name)(x, dim)
    options = {"ndim": [2, 1, 3], "dim": [-1, 0, 1, 2, -2, -3]}
    fix = lambda o: dict(o, dim=o["dim"] if -o["ndim"] <= o["dim"] < o["ndim"] else -1)  # noqa: E731

    def make_fwd(c, gen):
        c.add("x", random(gen, _any_shape(c), c.dtype, 3), ("...",))

    def make_bwd(c, gen):
        c.add("dy", random(gen, _any_shape(c), c.dtype), ("...",))
        c.add("y", np.asarray(fwd(random(gen, _any_shape(c), c.dtype, 3), c.opt["dim"]), c.dtype), ("...",))

    big = ({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3, "dim": -1})
    entry(OpSpec(name=name, dims=dict(_ANY_SHAPE), options=options, fix=fix, make=make_fwd,
                 call=lambda ops, c: (getattr(ops, name)(c.arrays["x"], dim=c.opt["dim"]),),
                 ref=lambda c: (fwd(c.arrays["x"], c.opt["dim"]),),
                 check=lambda c: _dim_check(c, ("x",)),
                 bad_options=[("dim", 3, ValueError, ("dim",)), ("dim", -4, ValueError, ("dim",)),
                              ("dim", 1.0, TypeError, ("dim",))], big=big))
    entry(OpSpec(name=name + "_backward", dims=dict(_ANY_SHAPE), options=options, fix=fix, make=make_bwd,
                 call=lambda ops, c: (getattr(ops, name + "_backward")(c.arrays["dy"], c.arrays["y"],
                                                                      dim=c.opt["dim"]),),
                 ref=lambda c: (ref.softmax_backward(c.arrays["dy"], c.arrays["y"], c.opt["dim"], log),),
                 check=lambda c: _dim_check(c, ("dy",)),
                 bad_options=[("dim", 3, ValueError, ("dim",))], big=big))


_softmax_entries("softmax", False)
_softmax_entries("log_softmax", True)


# -- losses -------------------------------------------------------------------

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
    c.add("labels", gen.integers(0, k, n), ("n",))
    if backward:
        _grad(c, gen, ("n",), (n,))


_LOSS_OPTIONS = {"reduction": ["mean", "sum", "none"], "grad": [1.0, "array", -0.5]}
_BAD_REDUCTION = [("reduction", "avg", ValueError, ("reduction",))]

entry(OpSpec(
    name="cross_entropy", dims={"n": (0, 33), "c": (1, 40)}, options={"reduction": _LOSS_OPTIONS["reduction"]},
    make=_ce_make, check=_labels_check, bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (_reduced(c, ops.cross_entropy(c.arrays["logits"], c.arrays["labels"], c.opt["reduction"])),),
    ref=lambda c: (ref.cross_entropy(c.arrays["logits"], c.arrays["labels"], c.opt["reduction"]),),
    scale=lambda c: 1 + math.log(max(c.arrays["logits"].shape[-1], 1)),
    big=({"n": 2048, "c": 100}, {}),
))
entry(OpSpec(
    name="cross_entropy_backward", dims={"n": (0, 33), "c": (1, 40)}, options=_LOSS_OPTIONS,
    make=lambda c, gen: _ce_make(c, gen, backward=True), check=lambda c: _grad_check(c, _labels_check),
    bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (ops.cross_entropy_backward(c.arrays["logits"], c.arrays["labels"], c.opt["reduction"],
                                                    c.arrays.get("grad", c.opt["grad"])),),
    ref=lambda c: (ref.cross_entropy_backward(c.arrays["logits"], c.arrays["labels"], c.opt["reduction"],
                                              _grad_value(c)),),
    big=({"n": 2048, "c": 100}, {}),
))


def _mse_make(c, gen, backward=False):
    shape = _any_shape(c)
    c.add("pred", random(gen, shape, c.dtype), ("...",))
    c.add("target", random(gen, shape, c.dtype), ("...",))
    if backward:
        _grad(c, gen, ("...",), shape)


_MSE_OPTIONS = {"ndim": [2, 1, 3, 0], "reduction": _LOSS_OPTIONS["reduction"]}
entry(OpSpec(
    name="mse", dims=dict(_ANY_SHAPE), options=_MSE_OPTIONS, make=_mse_make, bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (_reduced(c, ops.mse(c.arrays["pred"], c.arrays["target"], c.opt["reduction"])),),
    ref=lambda c: (ref.mse(c.arrays["pred"], c.arrays["target"], c.opt["reduction"]),),
    scale=lambda c: 4.0,
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))
entry(OpSpec(
    name="mse_backward", dims=dict(_ANY_SHAPE), options=dict(_MSE_OPTIONS, grad=_LOSS_OPTIONS["grad"]),
    make=lambda c, gen: _mse_make(c, gen, backward=True), check=_grad_check, bad_options=_BAD_REDUCTION,
    call=lambda ops, c: (ops.mse_backward(c.arrays["pred"], c.arrays["target"], c.opt["reduction"],
                                          c.arrays.get("grad", c.opt["grad"])),),
    ref=lambda c: (ref.mse_backward(c.arrays["pred"], c.arrays["target"], c.opt["reduction"], _grad_value(c)),),
    scale=lambda c: 4.0,
    big=({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3}),
))


# -- pooling --------------------------------------------------------------------

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


# -- batch norm -----------------------------------------------------------------

_BN_DIMS = {"n": (0, 9), "c": (1, 6), "h": (1, 5), "w": (1, 4)}
_BN_OPTIONS = {"ndim": [2, 4, 3], "training": [True, False], "affine": [True, False], "track": [True, False],
               "momentum": [0.1, 0.0, 1.0], "eps": [1e-5, 0.5]}


def _bn_x(c, gen):
    d = c.dims
    shape = (d["n"], d["c"], d["h"], d["w"])[:c.opt["ndim"]]
    c.add("x", random(gen, shape, c.dtype, 2) + 0.5, ("n", "c", "h", "w")[:c.opt["ndim"]])


def _bn_values_per_channel(c):
    x = c.arrays["x"]
    return x.size // x.shape[1] if x.ndim >= 2 and x.shape[1] else 0


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


def _bn_ref(c):
    a = c.arrays
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
    dx, dw, db = ref.batch_norm_backward(a["dy"], a["x"], a["weight"], a["save_mean"], a["save_invstd"],
                                         c.opt["training"])
    return (dx,) if a["weight"] is None else (dx, dw, db)


entry(OpSpec(
    name="batch_norm_backward", dims=dict(_BN_DIMS), options={k: _BN_OPTIONS[k] for k in ("ndim", "training", "affine")},
    make=_bn_backward_make, call=_bn_backward_call, ref=_bn_backward_ref,
    scale=lambda c: 1 + math.sqrt(_bn_values_per_channel(c)),
    big=({"n": 32, "c": 32, "h": 12, "w": 12}, {"ndim": 4, "training": True}),
))
