"""Test-suite settings: the hypothesis profiles, and hiding PyTorch on request.

Hypothesis profiles: "ci" (the default) is derandomized, so every run of the
suite draws the same examples and a failure reproduces; DEEPKERN_FUZZ=long
selects "long", randomized and about fifty times as many examples, for local
bug hunting (failures print the @reproduce_failure blob).

DEEPKERN_NO_TORCH=1 hides PyTorch (tests that need it skip): the sanitizer run
(.ci/sanitize.sh) sets it, because torch under the preloaded ASan runtime
reports its own allocations, which are not deepkern's to fix.
"""
import os
import sys

from hypothesis import HealthCheck, settings


class _NoTorch:
    """A meta-path finder that makes `import torch` raise ModuleNotFoundError (so importorskip
    skips) while leaving sys.modules alone (scipy probes sys.modules["torch"])."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            # ModuleNotFoundError, as for a package not installed: importorskip skips on
            # that alone (any other ImportError is a broken install, an error).
            raise ModuleNotFoundError("PyTorch is hidden (DEEPKERN_NO_TORCH=1)", name=name)
        return None


if os.environ.get("DEEPKERN_NO_TORCH"):
    sys.meta_path.insert(0, _NoTorch())


_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=40, **_common)
settings.register_profile("long", derandomize=False, max_examples=2000, **_common)
settings.load_profile("long" if os.environ.get("DEEPKERN_FUZZ") == "long" else "ci")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: large shapes or long loops; the sanitizer run (.ci/sanitize.sh) "
                                       "skips these with -m 'not slow'")
