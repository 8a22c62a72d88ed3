"""Loss modules: `loss(pred, target)` returns the loss (a float for reduction "mean"
or "sum", an (N,) array for "none"); `loss.backward(grad=1.0)` returns
d(loss)/d(pred) scaled by grad (a scalar, or an (N,) array for "none"), which is
what the model's backward starts from.

CrossEntropyLoss: pred (N, C) logits, target (N,) integer class indices, fused
log-softmax + NLL in one native call (stable, and the gradient softmax - onehot
needs no second pass over a log-softmax array). MSELoss: pred and target of one
shape, mean of (pred - target)^2.
"""
from .. import ops
from .module import Module

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"[{type(self).__name__}] reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss over integer class targets."""

    def forward(self, pred, target):
        out = ops.cross_entropy(pred, target, reduction=self.reduction)
        self._cache = (pred, target)
        return out

    def backward(self, grad=1.0):
        pred, target = self._saved()
        return ops.cross_entropy_backward(pred, target, reduction=self.reduction, grad=grad)


class MSELoss(_Loss):
    """torch.nn.MSELoss."""

    def forward(self, pred, target):
        out = ops.mse(pred, target, reduction=self.reduction)
        self._cache = (pred, target)
        return out

    def backward(self, grad=1.0):
        pred, target = self._saved()
        return ops.mse_backward(pred, target, reduction=self.reduction, grad=grad)
