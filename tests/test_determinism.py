"""Determinism: with a fixed seed and a fixed thread count, training runs and op
calls are bit-identical, run after run. Across thread counts, the ops marked
thread_invariant in tests/optable/ are bit-identical too (each output element
is computed by one thread in a fixed order, whatever the count); the others
split a reduction across threads, so their last bits depend on the count and
they are only checked against each other within the tolerance.
RELIABILITY.md lists which ops are which, and why.
"""
import numpy as np
import pytest

import deepkern
from harness import TRAINING_NEEDS, check_result, mlp_training, training_missing
from optable import SPECS

THREAD_COUNTS = [1, 2, 3, 4]


def spec_params():
    return [pytest.param(s, id=s.name, marks=[pytest.mark.skip(reason=s.missing())] if s.missing() else [])
            for s in SPECS]


@pytest.fixture
def restore_threads():
    old = deepkern.get_num_threads()
    yield
    deepkern.set_num_threads(old)


def run_with(threads, fn):
    deepkern.set_num_threads(threads)
    return fn()


def as_bytes(arrays):
    return [np.asarray(a).tobytes() for a in arrays]


@pytest.mark.skipif(training_missing() is not None, reason=str(training_missing()))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_twice_with_one_seed_is_bit_identical(threads, dtype, restore_threads):
    first = run_with(threads, lambda: as_bytes(mlp_training(7, dtype=dtype)))
    second = run_with(threads, lambda: as_bytes(mlp_training(7, dtype=dtype)))
    assert first == second


@pytest.mark.skipif(training_missing() is not None, reason=str(training_missing()))
def test_training_across_thread_counts(restore_threads):
    """Bit-identical when every op the MLP uses is thread-invariant, else within tolerance."""
    runs = {t: run_with(t, lambda: mlp_training(3, dtype=np.float64)) for t in THREAD_COUNTS}
    invariant = all(s.thread_invariant for s in SPECS if s.name in TRAINING_NEEDS)
    for t in THREAD_COUNTS[1:]:
        if invariant:
            assert as_bytes(runs[t]) == as_bytes(runs[1]), f"{t} threads differ from 1"
        else:
            for a, b in zip(runs[t], runs[1]):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("spec", spec_params())
def test_op_across_thread_counts(spec, restore_threads):
    for dtype in (np.float32, np.float64):
        case = spec.big_case(dtype, seed=1)
        runs = {t: run_with(t, lambda: case.clone().call()) for t in THREAD_COUNTS}
        again = run_with(THREAD_COUNTS[-1], lambda: case.clone().call())
        assert as_bytes(again) == as_bytes(runs[THREAD_COUNTS[-1]]), f"{spec.name}: two calls differ"
        for t in THREAD_COUNTS[1:]:
            if spec.thread_invariant:
                assert as_bytes(runs[t]) == as_bytes(runs[1]), \
                    f"{spec.name} ({np.dtype(dtype)}): {t} threads differ from 1, but the table says thread_invariant"
            else:
                check_result(case, [np.asarray(r, np.float64) if np.asarray(r).dtype.kind == "f" else r
                                    for r in runs[1]], runs[t])
