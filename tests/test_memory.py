"""Memory: long loops of op calls and of forward/backward/step keep the process's
resident memory flat after warm-up (RSS from /proc/self/statm), and no call
keeps a reference to an argument (reference counts unchanged after many calls).

The loops use each op's `big` case (hundreds of KB per array), so leaking one
output or one scratch buffer per call grows RSS by tens of MB, far above the
allowance for allocator noise. Small native leaks are the sanitizer run's job
(LeakSanitizer, .ci/sanitize.sh), which skips this file: ASan's quarantine
holds freed memory, so RSS there is not the library's.
"""
import os
import sys

import numpy as np
import pytest

from harness import mlp_training, training_missing
from optable import SPECS

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)"),
    pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                       reason="under ASan freed memory sits in the quarantine, so RSS grows"),
]

ALLOWED_GROWTH = 4 << 20  # bytes: allocator and arena noise


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available():
    return [s for s in SPECS if not s.missing()]


def test_rss_is_flat_over_many_op_calls():
    specs = available()
    if not specs:
        pytest.skip("no op of the table exists yet")
    cases = [s.big_case(np.float32, seed=2) for s in specs]

    def rounds(n):
        for _ in range(n):
            for c in cases:
                c.clone().call()

    rounds(2)
    before = rss()
    rounds(12)  # one leaked output per call of any one op: >= 12 * 600 KB
    grown = rss() - before
    assert grown < ALLOWED_GROWTH, f"RSS grew by {grown / 2**20:.1f} MiB over {12 * len(cases)} calls"


@pytest.mark.skipif(training_missing() is not None, reason=str(training_missing()))
def test_rss_is_flat_over_many_training_steps():
    mlp_training(0, steps=10)
    before = rss()
    for seed in range(3):
        mlp_training(seed, steps=40)
    grown = rss() - before
    assert grown < ALLOWED_GROWTH, f"RSS grew by {grown / 2**20:.1f} MiB over 120 training steps"


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name, marks=[pytest.mark.skip(reason=s.missing())]
                                               if s.missing() else []) for s in SPECS])
def test_calls_keep_no_reference_to_their_arguments(spec):
    case = spec.case({s: min(max(lo, 3), hi) for s, (lo, hi) in spec.dims.items()},
                     {k: v[0] for k, v in spec.options.items()}, np.float32, seed=3)
    arrays = {n: a for n, a in case.arrays.items() if isinstance(a, np.ndarray)}
    before = {n: sys.getrefcount(a) for n, a in arrays.items()}
    for _ in range(50):
        case.call()
    after = {n: sys.getrefcount(a) for n, a in arrays.items()}
    assert after == before, f"{spec.name}: reference counts changed: {before} -> {after}"


# -- the host cache: large outputs reuse blocks freed by earlier outputs ----------

def _address(a):
    return a.__array_interface__["data"][0]


def test_large_output_reuses_a_freed_block_and_never_a_live_one():
    import deepkern as dk
    from deepkern import ops
    dk.release_host_cache()
    x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)  # 2 MiB
    y = ops.relu(x)
    first = _address(y)
    assert np.array_equal(y, np.maximum(x, 0))
    del y
    assert dk._C.host_cache_bytes() >= x.nbytes
    z = ops.relu(x)  # the same size: the freed block
    assert _address(z) == first and np.array_equal(z, np.maximum(x, 0))
    view = z[1:]  # keeps the block: the next output must not get it
    del z
    w = ops.relu(-x)
    assert _address(w) != first
    assert np.array_equal(view, np.maximum(x, 0)[1:]) and np.array_equal(w, np.maximum(-x, 0))
    del view, w
    assert dk.release_host_cache() >= x.nbytes and dk._C.host_cache_bytes() == 0


def test_host_cache_keeps_at_most_a_gibibyte():
    import deepkern as dk
    from deepkern import ops
    dk.release_host_cache()
    blocks = [ops._host_empty((400 << 20,), np.uint8) for _ in range(3)]  # untouched: no pages
    assert len({_address(b) for b in blocks}) == 3
    del blocks
    assert 0 < dk._C.host_cache_bytes() <= 1 << 30
    dk.release_host_cache()


def test_small_and_malformed_shapes_go_to_numpy():
    from deepkern import ops
    small = ops._host_empty((100, 100), np.float32)
    assert small.flags.owndata and small.shape == (100, 100)
    assert ops._host_empty((0, 10**9), np.float32).shape == (0, 10**9)
    with pytest.raises(ValueError):
        ops._host_empty((-1, 4), np.float32)
    with pytest.raises(ValueError):
        ops._host_empty((1 << 40, 1 << 40), np.float32)
