"""The op table: one entry per public op of deepkern.ops that the reliability
harness (test_fuzz, test_crash, test_threads, test_determinism, test_memory)
checks. An entry draws valid arguments with symbolic shapes, calls the op and
gives its float64 reference from tests/reference.py (see tests/harness.py).
Entries whose op does not exist yet are skipped with that reason. One module
per family; a new family is one more module, imported here.
"""
from . import activation, batchnorm, conv, dropout, gemm, loss, optim, pool, rnn  # noqa: F401  (they fill SPECS)
from .common import SPECS


def spec_named(name):
    return next(s for s in SPECS if s.name == name)
