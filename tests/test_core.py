"""Build facts, run-time ISA dispatch, threads, and the CUDA query on any machine."""
import os
import subprocess
import sys

import pytest

import deepkern
from deepkern import _C

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
