"""Property-based fuzzing of every op in the op table (tests/optable/).

The property: a call either returns results that match the float64 reference
(shape, dtype and value, within the dtype's tolerance) or raises TypeError /
ValueError whose message starts with "[op]" and names the argument at fault; a
rejected call leaves every array it was given unchanged (no half-updated
optimizer state), an accepted one leaves its read-only inputs unchanged, and no
call writes outside the arrays it was given (canaries around every array written
in place). Hypothesis draws the sizes (0, 1, primes, non-multiples of the vector
width), the options, the dtype and a seed for the values; hostile draws change
one thing of a valid call: a dtype, a number of dimensions, one dimension, the
layout (strided, Fortran-order, negative strides, broadcast, unaligned),
writeability, NaN/Inf values, an option, or an op-specific mistake.

Derandomized by default (the "ci" profile, tests/conftest.py);
DEEPKERN_FUZZ=long runs the long randomized profile.
"""
import re

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import deepkern
from harness import check_result, expectation, guarded
from helpers import DTYPES
from optable import SPECS

OTHER_FLOAT = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.float32}
NOT_FLOAT = [np.int32, np.int64, np.float16, np.complex64, np.bool_]


def spec_params():
    return [pytest.param(s, id=s.name, marks=[pytest.mark.skip(reason=s.missing())] if s.missing() else [])
            for s in SPECS]


@st.composite
def cases(draw, spec):
    dims = {s: draw(st.integers(lo, hi), label=s) for s, (lo, hi) in spec.dims.items()}
    options = {k: draw(st.sampled_from(v), label=k) for k, v in spec.options.items()}
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    return spec.case(dims, options, dtype, seed)


def names_argument(message, names):
    return any(re.search(r"(?<![\w.])" + re.escape(n) + r"(?![\w])", message) for n in names)


def verify(case, expect, call=None, values=True):
    """Check one call against its expectation: None (valid) or (exception type, names)."""
    call = call or case.call
    before = case.snapshot()
    if expect is None:
        want = case.expected()
        got = call()
        if values:
            check_result(case, want, got)
        else:  # NaN/Inf inputs: the shapes and dtypes are the contract, the values are IEEE's business
            assert [np.shape(g) for g in got] == [w.shape for w in want], f"{case}: result shapes"
            assert case.spec.mixed_dtypes or all(
                np.asarray(g).dtype == (w.dtype if w.dtype.kind in "iu" else case.dtype)
                for g, w in zip(got, want)), f"{case}: result dtypes"
        for name, (data, shape) in before.items():
            if name not in case.written:
                assert case.arrays[name].tobytes() == data, f"{case}: read-only input {name} was written"
    else:
        exc, names = expect
        try:
            call()
        except (TypeError, ValueError) as e:
            msg = str(e)
            assert isinstance(e, exc), f"{case}: expected {exc.__name__}, got {type(e).__name__}: {msg}"
            # "[relu]" from relu_backward and "[clip_grad_norm]" from clip_grad_norm_ are accepted too
            ops = {case.spec.name, case.spec.name.removesuffix("_backward"), case.spec.name.rstrip("_")}
            assert any(msg.startswith(f"[{op}]") for op in ops), f"{case}: message does not start with the op: {msg}"
            assert names_argument(msg, names), f"{case}: message names none of {names}: {msg}"
        else:
            raise AssertionError(f"{case}: expected {exc.__name__} naming one of {names}, the call succeeded")
        for name, (data, shape) in before.items():
            assert case.arrays[name].tobytes() == data, f"{case}: {name} changed although the call was rejected"
    assert case.guards_intact(), f"{case}: a write landed outside an array written in place"


@pytest.mark.parametrize("spec", spec_params())
@given(data=st.data())
def test_valid_calls_match_the_reference(spec, data):
    case = data.draw(cases(spec), label="case")
    verify(case, expectation(case))


# -- hostile draws: each returns (new case, expectation, verify's keywords) ---------

def _replace(case, name, value):
    if name in case.written and isinstance(value, np.ndarray) and value.flags.c_contiguous \
            and value.flags.writeable and value.flags.aligned:
        value = guarded(value)
    return case.with_array(name, value)


def _fresh(gen, a, shape):
    """A new array like `a` (values in its range for integer arrays) of another shape."""
    if a.dtype.kind in "iu":
        hi = max(int(a.max()) + 1, 1) if a.size else 1
        return np.asarray(gen.integers(0, hi, size=shape), dtype=a.dtype)
    return np.asarray(gen.standard_normal(shape), dtype=a.dtype)


def mut_dtype(draw, case, gen, name):
    a = case.arrays[name]
    if a.dtype.kind == "f":
        new = a.astype(draw(st.sampled_from(NOT_FLOAT)))
        return _replace(case, name, new), (TypeError, (name,)), {}
    if draw(st.booleans()):
        return _replace(case, name, a.astype(draw(st.sampled_from(DTYPES)))), (TypeError, (name,)), {}
    c = _replace(case, name, a.astype(draw(st.sampled_from([np.int32, np.uint8, np.int16]))))
    return c, expectation(c), {}


def mut_mix(draw, case, gen, name):
    floats = case.float_names()
    c = _replace(case, name, case.arrays[name].astype(OTHER_FLOAT[case.dtype]))
    if case.spec.mixed_dtypes:  # each array keeps its own dtype: compare at the lower precision
        c.dtype = np.dtype(np.float32)
        return c, expectation(c), {}
    if len(floats) > 1:
        return c, (TypeError, tuple(floats)), {}
    c.dtype = np.dtype(OTHER_FLOAT[case.dtype])  # the only float argument: the call's dtype changes
    return c, expectation(c), {}


def mut_not_array(draw, case, gen, name):
    return _replace(case, name, "not an array"), (TypeError, (name,)), {}


def mut_ndim(draw, case, gen, name):
    a = case.arrays[name]
    shape = list(a.shape)
    if shape and draw(st.booleans()):
        del shape[draw(st.integers(0, len(shape) - 1))]
    else:
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 3)))
    c = _replace(case, name, _fresh(gen, a, tuple(shape)))
    return c, expectation(c), {}


def mut_size(draw, case, gen, name):
    a = case.arrays[name]
    if a.ndim == 0:
        return mut_ndim(draw, case, gen, name)
    axis = draw(st.integers(0, a.ndim - 1))
    n = a.shape[axis]
    size = draw(st.sampled_from(sorted({0, 1, n + 1, max(n - 1, 0), 2 * n + 3} - {n})))
    c = _replace(case, name, _fresh(gen, a, a.shape[:axis] + (size,) + a.shape[axis + 1:]))
    return c, expectation(c), {}


def _layout(kind, a):
    if kind == "step" and a.ndim:
        b = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        b[..., ::2] = a
        return b[..., ::2]
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "reversed" and a.ndim:
        return a[::-1].copy()[::-1]
    if kind == "broadcast" and a.ndim and a.shape[-1]:
        return np.broadcast_to(a[..., :1], a.shape)
    if kind == "unaligned":
        raw = np.empty(a.nbytes + 1, np.uint8)[1:]
        b = raw.view(a.dtype).reshape(a.shape) if a.size else np.empty(a.shape, a.dtype)
        b[...] = a
        return b
    return a.copy()


def mut_layout(draw, case, gen, name):
    kind = draw(st.sampled_from(["step", "fortran", "reversed", "broadcast", "unaligned"]))
    note(f"layout {kind}")
    new = _layout(kind, case.arrays[name])
    c = _replace(case, name, new)
    # A written array is never copied, so any layout the kernels cannot write in place
    # (strided, misaligned for its dtype: "unaligned" of a bool mask is still aligned) is rejected.
    if name in case.written and not (new.flags.c_contiguous and new.flags.writeable and new.flags.aligned):
        return c, (ValueError, (name,)), {}
    return c, expectation(c), {}


def mut_readonly(draw, case, gen, name):
    new = case.arrays[name].copy()
    new.setflags(write=False)
    c = _replace(case, name, new)
    return c, ((ValueError, (name,)) if name in case.written else expectation(c)), {}


def mut_nonfinite(draw, case, gen, name):
    new = case.arrays[name].copy()
    if new.size:
        idx = gen.integers(0, new.size, size=draw(st.integers(1, 3)))
        new.reshape(-1)[idx] = gen.choice([np.nan, np.inf, -np.inf], size=idx.size)
    c = _replace(case, name, new)
    return c, expectation(c), {"values": False}


ARRAY_MUTATIONS = {"dtype": mut_dtype, "mix": mut_mix, "not_array": mut_not_array, "ndim": mut_ndim,
                   "size": mut_size, "layout": mut_layout, "readonly": mut_readonly, "nonfinite": mut_nonfinite}


@pytest.mark.parametrize("spec", spec_params())
@given(data=st.data())
def test_hostile_calls_are_rejected_cleanly_or_computed_correctly(spec, data):
    case = data.draw(cases(spec), label="case")
    if expectation(case) is not None:  # change only valid calls, so the change is the only fault
        return verify(case, expectation(case))
    arrays = [n for n, a in case.arrays.items() if isinstance(a, np.ndarray)]
    kinds = [k for k in ARRAY_MUTATIONS if arrays and (k != "nonfinite" or case.float_names())]
    kinds += ["option"] * bool(spec.bad_options)
    extras = [e for e in spec.extra_hostile if spec.hostile_when(case) and (len(e) < 5 or e[4](case))]
    kinds += ["extra"] * bool(extras)
    if not kinds:
        return
    kind = data.draw(st.sampled_from(kinds), label="mutation")
    gen = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="mutation seed"))
    if kind == "option":
        opt, value, exc, names = data.draw(st.sampled_from(spec.bad_options), label="bad option")
        c = case.clone()
        c.opt[opt] = value
        verify(c, (exc, names))
    elif kind == "extra":
        label, fn, exc, names = data.draw(st.sampled_from(extras), label="op-specific")[:4]
        verify(case, (exc, names), call=lambda: fn(deepkern.ops, case))
    else:
        pool = case.float_names() if kind in ("mix", "nonfinite") else arrays
        name = data.draw(st.sampled_from(pool), label="argument")
        new_case, expect, how = ARRAY_MUTATIONS[kind](data.draw, case, gen, name)
        note(f"{kind} of {name}: {new_case}, expecting {expect} {how}")
        verify(new_case, expect, **how)
