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
