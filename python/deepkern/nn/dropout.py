"""Dropout: torch.nn.Dropout. In training mode each element is zeroed with
probability p and the rest scaled by 1 / (1 - p), by the native counter-based
kernel (ops.dropout); in eval mode it is the identity. The mask of the last
forward is kept for backward.

The seed of each call comes from `rng` (a numpy Generator given to the
constructor) or from deepkern's global generator (deepkern.manual_seed), so a
seeded run drops the same elements every time, whatever the thread count.
"""
import numpy as np

from .. import ops
from .module import Module


class Dropout(Module):
    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"[Dropout] p must be a probability in [0, 1], got {p!r}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"[Dropout] rng must be a numpy Generator or None, got {type(rng).__name__}")
        self.p, self.rng = float(p), rng
        self._cache = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._cache = False  # identity: backward passes dy through
            return x
        y, mask = ops.dropout(x, self.p, self.rng)
        self._cache = mask
        return y

    def backward(self, dy):
        mask = self._saved()
        if mask is False:
            return dy
        return ops.dropout_backward(dy, mask, self.p)

    def extra_repr(self):
        return f"p={self.p}"
