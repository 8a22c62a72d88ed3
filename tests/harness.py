"""The reliability harness's machinery: op entries (OpSpec), cases, validity and checks.

An entry says how to draw valid arguments, how to call the op and what the
float64 reference (tests/reference.py) says the result is. Array shapes are
symbolic (gemm's a is ("m", "k"), or ("k", "m") when trans_a), so whether a
changed dimension leaves the call valid (then the reference applies) or makes it
invalid (then the op must raise ValueError naming the argument) follows from the
symbols alone: the shapes are valid when every symbol gets one size, at least its
minimum. Entries whose op deepkern.ops does not have yet are skipped with that
reason, so a new family is one more module of the table, tests/optable/.

Users: test_fuzz (hypothesis draws dims, options, dtype and a seed), test_crash,
test_threads, test_determinism and test_memory (each entry's fixed `big` case).
"""
import copy
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import numpy as np

import deepkern
from helpers import assert_close

# Padding around every array an op writes in place, filled with a canary value
# that must survive the call: an out-of-bounds write shows even without ASan.
GUARD = 16
CANARY = -1234.5


@dataclass
class OpSpec:
    name: str                      # the deepkern.ops function (the entry is skipped without it)
    dims: Dict[str, Tuple[int, int]]   # symbol -> (least valid size, largest size fuzzed)
    make: Callable                 # make(case, gen): fills case.arrays / shapes / written
    call: Callable                 # call(ops, case) -> tuple of result arrays
    ref: Callable                  # ref(case) -> tuple of float64 expected arrays
    options: Dict[str, list] = field(default_factory=dict)   # option -> values the fuzzer draws
    big: Tuple[dict, dict] = ({}, {})   # (dims, options) of the thread/determinism/memory case
    scale: Callable = lambda case: 1.0  # widens the absolute tolerance (e.g. sqrt(k) for sums)
    check: Callable = lambda case: None  # value-dependent validity: None or (exc, arg names)
    fix: Callable = lambda opt: opt  # makes drawn options consistent (nesterov needs momentum)
    bad_options: list = field(default_factory=list)  # (option, value, exc, names) that must fail
    # (label, fn(ops, case), exc, names[, when(case)]): op-specific mistakes fn makes
    extra_hostile: list = field(default_factory=list)
    hostile_when: Callable = lambda case: True  # whether extra_hostile applies to a case at all
    mixed_dtypes: bool = False     # arguments may mix float32 and float64 (gradient utilities)
    thread_invariant: bool = True  # bit-identical results for any thread count
    why: str = ""                  # the reason when not thread_invariant
    needs: Tuple[str, ...] = ()    # further ops.* the entry calls

    def __repr__(self):
        return f"OpSpec({self.name})"

    def _repr_pretty_(self, p, cycle):  # hypothesis prints falsifying examples with this
        p.text(repr(self))

    def missing(self):
        """Why this entry cannot run now, or None."""
        for n in (self.name,) + self.needs:
            if not hasattr(deepkern.ops, n):
                return f"deepkern.ops.{n} does not exist yet"
        return None

    def case(self, dims, options, dtype, seed):
        c = Case(self, np.dtype(dtype), dict(dims), self.fix(dict(options)))
        self.make(c, np.random.default_rng(seed))
        for name in c.written:
            if c.arrays.get(name) is not None:
                c.arrays[name] = guarded(c.arrays[name])
        return c

    def big_case(self, dtype=np.float32, seed=0):
        dims, options = self.big
        base = {s: lo for s, (lo, hi) in self.dims.items()}
        opts = {k: v[0] for k, v in self.options.items()}
        return self.case({**base, **dims}, {**opts, **options}, dtype, seed)


@dataclass
class Case:
    spec: OpSpec
    dtype: np.dtype
    dims: dict
    opt: dict
    arrays: dict = field(default_factory=dict)   # argument name -> array (None: absent optional)
    shapes: dict = field(default_factory=dict)   # argument name -> symbols, None: any shape
    written: tuple = ()                          # arguments written in place

    def add(self, name, array, shape, written=False):
        self.arrays[name] = array
        self.shapes[name] = shape
        if written:
            self.written += (name,)

    def call(self):
        return tuple(self.spec.call(deepkern.ops, self))

    def expected(self):
        """The reference's results: floats as float64, integer results (indices) as they are."""
        return tuple(np.asarray(e) if np.asarray(e).dtype.kind in "iu" else np.asarray(e, dtype=np.float64)
                     for e in self.spec.ref(self))

    def clone(self):
        c = copy.copy(self)
        c.opt, c.shapes = dict(self.opt), dict(self.shapes)
        c.arrays = {k: (guarded(v) if k in self.written else v.copy()) if isinstance(v, np.ndarray) else v
                    for k, v in self.arrays.items()}
        return c

    def with_array(self, name, value):
        c = self.clone()
        c.arrays[name] = value
        return c

    def guards_intact(self):
        return all(guards_intact(self.arrays[n]) for n in self.written if isinstance(self.arrays[n], np.ndarray))

    def float_names(self):
        return [n for n, a in self.arrays.items() if isinstance(a, np.ndarray) and a.dtype.kind == "f"]

    def snapshot(self):
        return {n: (a.tobytes(), a.shape) for n, a in self.arrays.items() if isinstance(a, np.ndarray)}

    def __repr__(self):
        shapes = {n: (a.shape, str(a.dtype)) if isinstance(a, np.ndarray) else a for n, a in self.arrays.items()}
        return f"Case({self.spec.name}, {self.dtype}, opt={self.opt}, arrays={shapes})"

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self))


def guarded(a):
    """A C-contiguous copy of `a` inside a larger buffer whose padding holds CANARY."""
    buf = np.full(a.size + 2 * GUARD, CANARY, dtype=a.dtype)
    view = buf[GUARD:GUARD + a.size].reshape(a.shape)
    view[...] = a
    return view


def guards_intact(a):
    """False when `a` was made by guarded() and its padding no longer holds CANARY."""
    buf = a.base
    if not (isinstance(buf, np.ndarray) and buf.ndim == 1 and buf.size == a.size + 2 * GUARD
            and a.flags.c_contiguous and a.ctypes.data == buf.ctypes.data + GUARD * buf.itemsize):
        return True  # not a guarded array (a mutation replaced it)
    canary = np.array(CANARY).astype(buf.dtype)
    return bool((buf[:GUARD] == canary).all() and (buf[-GUARD:] == canary).all())


def shapes_agree(case):
    """(True, None) when every symbol is bound to one size, at least its minimum, else
    (False, the symbol or argument at fault). One "..." in a shape stands for any number
    of dimensions there (leading, as linear's x, or trailing, as batch_norm's), the same
    for every argument that has one."""
    sizes = {}
    for name, sym in case.shapes.items():
        a = case.arrays.get(name)
        if sym is None or not isinstance(a, np.ndarray):
            continue
        if "..." in sym:
            i = sym.index("...")
            pre, post = sym[:i], sym[i + 1:]
            if a.ndim < len(pre) + len(post):
                return False, name
            middle = a.shape[len(pre):a.ndim - len(post)]
            if sizes.setdefault("...", middle) != middle:
                return False, "..."
            sym, shape = pre + post, a.shape[:len(pre)] + a.shape[a.ndim - len(post):]
        elif a.ndim != len(sym):
            return False, name
        else:
            shape = a.shape
        for s, n in zip(sym, shape):
            if isinstance(s, int):
                if n != s:
                    return False, name
            elif sizes.setdefault(s, n) != n:
                return False, s
    for s, n in sizes.items():
        if s != "..." and n < case.spec.dims.get(s, (0, 0))[0]:
            return False, s
    return True, None


def sharing(case, symbol):
    """The arguments whose symbolic shape contains `symbol`."""
    return tuple(n for n, sym in case.shapes.items() if sym is not None and symbol in sym)


def expectation(case):
    """None when the call is valid, else (exception type, argument names one of which the
    message must contain)."""
    ok, culprit = shapes_agree(case)
    if not ok:
        if culprit in case.arrays:  # a wrong number of dimensions: it, or any argument it must agree with
            syms = set(case.shapes[culprit] or ()) - {"..."}
            return ValueError, (culprit,) + tuple(n for s in syms for n in sharing(case, s))
        return ValueError, sharing(case, culprit) or (culprit,)
    return case.spec.check(case)


def check_result(case, expected, got):
    """Results match the reference in shape, dtype and value."""
    assert len(got) == len(expected), f"{case}: {len(got)} results, expected {len(expected)}"
    scale = case.spec.scale(case)
    for i, (g, e) in enumerate(zip(got, expected)):
        g = np.asarray(g)
        if e.dtype.kind in "iu":  # indices: int64 and exact
            assert g.dtype == np.int64 and g.shape == e.shape and (g == e).all(), f"{case}: result {i} differs"
            continue
        assert case.spec.mixed_dtypes or g.dtype == case.dtype, f"{case}: result {i} has dtype {g.dtype}"
        assert g.shape == e.shape, f"{case}: result {i} has shape {g.shape}, expected {e.shape}"
        # Where the reference is NaN (a mean over nothing) or infinite (a max over padding), the
        # result must be the same; elsewhere within the tolerance.
        odd = ~np.isfinite(e)
        assert np.array_equal(g[odd], e[odd], equal_nan=True), f"{case}: result {i} differs at NaN/Inf"
        assert_close(np.where(odd, 0, g), np.where(odd, 0, e), case.dtype, scale=scale,
                     name=f"{case.spec.name} result {i}")


def random(gen, shape, dtype, scale=1.0):
    return np.asarray(scale * gen.standard_normal(shape), dtype=dtype)  # 0-D: an array, not a numpy scalar


# -- whole training steps (test_threads, test_determinism, test_memory) -----------

TRAINING_NEEDS = ("linear", "linear_backward", "relu", "relu_backward", "cross_entropy",
                  "cross_entropy_backward", "sgd_step")


def training_missing():
    """Why mlp_training cannot run yet, or None."""
    for n in TRAINING_NEEDS:
        if not hasattr(deepkern.ops, n):
            return f"deepkern.ops.{n} does not exist yet"
    for mod, attrs in (("nn", ("Sequential", "Linear", "ReLU", "CrossEntropyLoss")), ("optim", ("SGD",))):
        for a in attrs:
            if not hasattr(getattr(deepkern, mod, None), a):
                return f"deepkern.{mod}.{a} does not exist yet"
    return None


def mlp_training(seed, steps=4, dtype=np.float32, batch=256, sizes=(64, 128, 10)):
    """The parameters (copies) after `steps` SGD-with-momentum steps of an MLP built and
    fed from `seed` alone (no global generator, so independent runs may share a process)."""
    from deepkern import nn, optim
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(sizes[0], sizes[1], dtype=dtype, rng=rng), nn.ReLU(),
                          nn.Linear(sizes[1], sizes[2], dtype=dtype, rng=rng))
    loss = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    x = rng.standard_normal((steps, batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[2], (steps, batch))
    for i in range(steps):
        opt.zero_grad()
        loss(model(x[i]), y[i])
        model.backward(loss.backward())
        opt.step()
    return [p.data.copy() for p in model.parameters()]
