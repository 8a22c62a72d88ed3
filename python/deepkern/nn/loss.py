"""Loss modules: `loss(pred, target)` returns the loss (a float for reduction "mean"
or "sum", an (N,) array for "none"); `loss.backward(grad=1.0)` returns
d(loss)/d(pred) scaled by grad (a scalar, or an (N,) array for "none"), which is
what the model's backward starts from.

CrossEntropyLoss: pred (N, C) logits, target (N,) integer class indices, fused
log-softmax + NLL in one native call (stable, and the gradient softmax - onehot
needs no second pass over a log-softmax array). MSELoss: pred and target of one
shape, mean of (pred - target)^2. BCEWithLogitsLoss: pred logits and target
probabilities of one shape, sigmoid and binary cross-entropy in one stable formula.
MultiMarginLoss: the multi-class hinge loss over integer class targets.
Weights (pos_weight, weight) are buffers: Module.to moves them with the loss, and
fit / evaluate move them to the model's device.
"""
from .. import ops
from .._array import as_array
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


class BCEWithLogitsLoss(_Loss):
    """torch.nn.BCEWithLogitsLoss (reduction, pos_weight: (C,) weights of the positive
    term over the last axis)."""

    def __init__(self, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("pos_weight", None if pos_weight is None else as_array(pos_weight))

    def forward(self, pred, target):
        out = ops.binary_cross_entropy_with_logits(pred, target, self.reduction, self.pos_weight)
        self._cache = (pred, target)
        return out

    def backward(self, grad=1.0):
        pred, target = self._saved()
        return ops.binary_cross_entropy_with_logits_backward(pred, target, self.reduction, self.pos_weight, grad)


class MultiMarginLoss(_Loss):
    """torch.nn.MultiMarginLoss (p 1 or 2, margin, weight (C,) per class)."""

    def __init__(self, p=1, margin=1.0, weight=None, reduction="mean"):
        super().__init__(reduction)
        if p not in (1, 2):
            raise ValueError(f"[MultiMarginLoss] p must be 1 or 2, got {p!r}")
        self.p, self.margin = p, margin
        self.register_buffer("weight", None if weight is None else as_array(weight))

    def forward(self, pred, target):
        out = ops.multi_margin(pred, target, self.reduction, self.p, self.margin, self.weight)
        self._cache = (pred, target)
        return out

    def backward(self, grad=1.0):
        pred, target = self._saved()
        return ops.multi_margin_backward(pred, target, self.reduction, self.p, self.margin, self.weight, grad)

    def extra_repr(self):
        return f"p={self.p}, margin={self.margin}" + (f", {super().extra_repr()}" if self.reduction != "mean" else "")
