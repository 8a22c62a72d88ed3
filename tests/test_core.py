"""Build facts, run-time ISA dispatch, threads, the CUDA query on any machine, and the
array policy every binding shares (csrc/bindings/common.h)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import deepkern
from deepkern import _C
from helpers import assert_close, randn, rng

ISAS = ["generic", "avx2", "avx512"]


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)


def test_active_isa_is_at_most_the_best():
    assert _C.best_isa() in ISAS
    assert ISAS.index(_C.isa()) <= ISAS.index(_C.best_isa())
    assert {_C.isa(), _C.best_isa(), "generic"} <= set(_C.compiled_isas())


@pytest.mark.parametrize("isa", ISAS)
def test_deepkern_isa_forces_a_lower_path_and_never_a_higher_one(isa):
    r = run_python("import deepkern._C as c; print(c.isa(), c.best_isa())", DEEPKERN_ISA=isa)
    assert r.returncode == 0, r.stderr
    active, best = r.stdout.split()
    expected = isa if ISAS.index(isa) <= ISAS.index(best) else best
    # a variant the build left out (CMake DEEPKERN_ISAS) runs as the next lower one it has
    expected = [i for i in ISAS[:ISAS.index(expected) + 1] if i in _C.compiled_isas()][-1]
    assert active == expected


def test_unknown_deepkern_isa_fails_the_import_clearly():
    r = run_python("import deepkern", DEEPKERN_ISA="sse9")
    assert r.returncode != 0
    assert "DEEPKERN_ISA must be avx512, avx2 or generic" in r.stderr


def test_threads_round_trip_and_reject_nonpositive():
    old = deepkern.get_num_threads()
    try:
        deepkern.set_num_threads(1)
        assert deepkern.get_num_threads() == 1
        deepkern.set_num_threads(3)
        assert deepkern.get_num_threads() == 3
    finally:
        deepkern.set_num_threads(old)
    with pytest.raises(ValueError, match="set_num_threads"):
        deepkern.set_num_threads(0)


def test_cuda_query_never_raises_without_a_gpu():
    n = _C.cuda_device_count()
    assert n >= 0
    if n == 0:
        with pytest.raises((RuntimeError, ValueError), match=r"\[cuda\]"):
            _C.cuda_device_name(0)
    else:
        assert isinstance(_C.cuda_device_name(0), str)


# -- misaligned arrays: a view at an odd byte offset is C-contiguous but not aligned
# for its dtype; kernels read and write elements as T, so a read-only one is copied and
# a written one is rejected. (Regression: batch_norm read such an x as float in place.)

def misaligned(a):
    raw = np.empty(a.nbytes + 1, np.uint8)[1:]
    b = raw.view(a.dtype).reshape(a.shape)
    b[...] = a
    assert b.flags.c_contiguous and not b.flags.aligned
    return b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_inputs_are_read_from_an_aligned_copy(dtype):
    gen = rng(7)
    x, w, b = randn(gen, (3, 5, 4, 6), dtype), randn(gen, (5,), dtype), randn(gen, (5,), dtype)
    want = deepkern.batch_norm(x, w, b, None, None, True)
    got = deepkern.batch_norm(misaligned(x), misaligned(w), misaligned(b), None, None, True)
    for g, e in zip(got, want):
        assert_close(g, e)
    a, m = randn(gen, (7, 9), dtype), randn(gen, (9, 5), dtype)
    assert_close(deepkern.gemm(misaligned(a), misaligned(m)), deepkern.gemm(a, m))
    logits, labels = randn(gen, (6, 4), dtype), gen.integers(0, 4, size=6)
    assert_close(deepkern.cross_entropy(logits, misaligned(labels)), deepkern.cross_entropy(logits, labels))
    p, g = randn(gen, (11,), dtype), randn(gen, (11,), dtype)
    q = p.copy()
    deepkern.sgd_step([p], [g], lr=0.1)
    deepkern.sgd_step([q], [misaligned(g)], lr=0.1)
    assert_close(q, p)


def test_misaligned_arrays_written_in_place_are_rejected():
    gen = rng(8)
    x = randn(gen, (4, 3, 5), np.float32)
    rm, rv = misaligned(np.zeros(3, np.float32)), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^\[batch_norm\] running_mean is written in place and must be aligned"):
        deepkern.batch_norm(x, None, None, rm, rv, True)
    assert (rm == 0).all()
    a = randn(gen, (4, 4), np.float64)
    with pytest.raises(ValueError, match=r"^\[gemm\] out .*aligned"):
        deepkern.gemm(a, a, out=misaligned(np.zeros((4, 4))))
    p = misaligned(randn(gen, (9,), np.float32))
    before = p.copy()
    with pytest.raises(ValueError, match=r"^\[sgd_step\] params\[0\] .*aligned"):
        deepkern.sgd_step([p], [np.ones(9, np.float32)], lr=0.1)
    assert (p == before).all()
    y, idx = np.empty((1, 2, 2), np.float32), misaligned(np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError, match=r"^\[max_pool2d\] indices .*aligned"):
        _C.max_pool2d(randn(gen, (1, 4, 4), np.float32), y, idx, (2, 2), (2, 2), (0, 0), (1, 1), False)
    grads = [misaligned(np.ones(3, np.float32)), np.ones(3)]  # two dtypes: the Python layer scales
    with pytest.raises(ValueError, match=r"^\[clip_grad_norm_\] grads .*aligned"):
        deepkern.clip_grad_norm_(grads, 0.1)
    assert (grads[0] == 1).all()
