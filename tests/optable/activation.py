"""Op table entries: the elementwise activations, softmax and log_softmax,
forward and backward."""
import numpy as np

import reference as ref
from harness import OpSpec, random

from .common import ANY_SHAPE, any_shape, entry


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


def _activation_entries(name, params, values, saves_y):
    fwd = getattr(ref, name)
    options = dict(zip(params, values), ndim=[2, 1, 3, 0])
    kw = lambda c: {p: c.opt[p] for p in params}  # noqa: E731
    saved = "y" if saves_y else "x"

    def make_fwd(c, gen):
        c.add("x", random(gen, any_shape(c), c.dtype, 3), ("...",))

    def make_bwd(c, gen):
        c.add("dy", random(gen, any_shape(c), c.dtype), ("...",))
        s = random(gen, any_shape(c), c.dtype, 3)
        c.add(saved, np.asarray(fwd(s, **kw(c)), c.dtype) if saves_y else s, ("...",))

    def ref_bwd(c):
        alpha = c.opt[params[0]] if params else None
        extra = {"threshold": c.opt["threshold"]} if "threshold" in params else {}
        return (ref.activation_backward(name, c.arrays["dy"], c.arrays[saved], alpha, **extra),)

    big = ({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3})
    entry(OpSpec(name=name, dims=dict(ANY_SHAPE), options=options, make=make_fwd,
                 call=lambda ops, c: (getattr(ops, name)(c.arrays["x"], **kw(c)),),
                 ref=lambda c: (fwd(c.arrays["x"], **kw(c)),), big=big))
    entry(OpSpec(name=name + "_backward", dims=dict(ANY_SHAPE), options=options, make=make_bwd,
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
        c.add("x", random(gen, any_shape(c), c.dtype, 3), ("...",))

    def make_bwd(c, gen):
        c.add("dy", random(gen, any_shape(c), c.dtype), ("...",))
        c.add("y", np.asarray(fwd(random(gen, any_shape(c), c.dtype, 3), c.opt["dim"]), c.dtype), ("...",))

    big = ({"d0": 32, "d1": 40, "d2": 150}, {"ndim": 3, "dim": -1})
    entry(OpSpec(name=name, dims=dict(ANY_SHAPE), options=options, fix=fix, make=make_fwd,
                 call=lambda ops, c: (getattr(ops, name)(c.arrays["x"], dim=c.opt["dim"]),),
                 ref=lambda c: (fwd(c.arrays["x"], c.opt["dim"]),),
                 check=lambda c: _dim_check(c, ("x",)),
                 bad_options=[("dim", 3, ValueError, ("dim",)), ("dim", -4, ValueError, ("dim",)),
                              ("dim", 1.0, TypeError, ("dim",))], big=big))
    entry(OpSpec(name=name + "_backward", dims=dict(ANY_SHAPE), options=options, fix=fix, make=make_bwd,
                 call=lambda ops, c: (getattr(ops, name + "_backward")(c.arrays["dy"], c.arrays["y"],
                                                                      dim=c.opt["dim"]),),
                 ref=lambda c: (ref.softmax_backward(c.arrays["dy"], c.arrays["y"], c.opt["dim"], log),),
                 check=lambda c: _dim_check(c, ("dy",)),
                 bad_options=[("dim", 3, ValueError, ("dim",))], big=big))


_softmax_entries("softmax", False)
_softmax_entries("log_softmax", True)
