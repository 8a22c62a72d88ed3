"""Thread safety: every op of the op table (tests/optable/) and whole training
steps of independent models, called from 4 Python threads at once, give exactly
the results of serial calls; changing set_num_threads while other threads run
kernels is safe and leaves every result correct.

Native calls release the GIL, so the threads really overlap, each with its own
OpenMP team inside the kernels. A barrier starts them together. Results are
compared bit for bit: with the thread count fixed, every kernel is
deterministic, so any difference is a race (shared scratch buffers, static
state, a non-reentrant cache).
"""
import threading

import numpy as np
import pytest

import deepkern
from harness import check_result, mlp_training, training_missing
from optable import SPECS

PY_THREADS = 4
ROUNDS = 2


def spec_params():
    return [pytest.param(s, id=s.name, marks=[pytest.mark.skip(reason=s.missing())] if s.missing() else [])
            for s in SPECS]


def run_in_threads(fn, n=PY_THREADS):
    """fn(i) in n threads started together; returns [fn(0), ..., fn(n-1)], re-raising errors."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def body(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as e:  # noqa: B902 - re-raised in the caller
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def as_bytes(results):
    return [np.asarray(r).tobytes() for r in results]


@pytest.mark.parametrize("spec", spec_params())
def test_op_from_four_threads_matches_serial_calls(spec):
    cases = [spec.big_case(dtype, seed) for seed, dtype in enumerate([np.float32, np.float64] * 2)]
    serial = [as_bytes(c.clone().call()) for c in cases]

    def worker(i):
        out = []
        for r in range(ROUNDS):
            for j in range(len(cases)):
                c = cases[(i + j) % len(cases)]  # threads start on different cases
                out.append(((i + j) % len(cases), as_bytes(c.clone().call())))
        return out

    for per_thread in run_in_threads(worker):
        for j, got in per_thread:
            assert got == serial[j], f"{spec.name} case {j}: a concurrent call differs from the serial one"


@pytest.mark.skipif(training_missing() is not None, reason=str(training_missing()))
def test_training_independent_models_from_four_threads_matches_serial():
    serial = [as_bytes(mlp_training(seed)) for seed in range(PY_THREADS)]
    concurrent = run_in_threads(lambda i: as_bytes(mlp_training(i)))
    for i in range(PY_THREADS):
        assert concurrent[i] == serial[i], f"model {i} trained in a thread differs from the serial run"


def test_set_num_threads_changed_while_kernels_run():
    """Results stay those of a serial call: bit for bit for thread-invariant ops, within
    the tolerance for the others (whose rounding follows the thread count)."""
    cases = [s.big_case(np.float64, seed=5) for s in SPECS if not s.missing()]
    if not cases:
        pytest.skip("no op of the table exists yet")
    serial = [c.clone().call() for c in cases]
    old = deepkern.get_num_threads()
    stop = threading.Event()

    def churn():
        k = 0
        while not stop.is_set():
            deepkern.set_num_threads(1 + k % 4)
            k += 1

    changer = threading.Thread(target=churn)
    changer.start()
    try:
        def worker(i):
            for r in range(ROUNDS):
                for c, want in zip(cases, serial):
                    got = c.clone().call()
                    if c.spec.thread_invariant:
                        assert as_bytes(got) == as_bytes(want), f"{c.spec.name}: differs from the serial call"
                    else:
                        check_result(c, [np.asarray(w, np.float64) for w in want], got)
        run_in_threads(worker, n=3)
    finally:
        stop.set()
        changer.join()
        deepkern.set_num_threads(old)
