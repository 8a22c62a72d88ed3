"""Adagrad (torch.optim.Adagrad), one native ops.adagrad_step per group.

    g = grad + weight_decay * param;    sum += g^2
    param -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)
"""
from .. import ops
from ._fused import FusedOptimizer, check_range


class Adagrad(FusedOptimizer):
    """torch.optim.Adagrad: same arguments, defaults, checks, state names ("step",
    "sum", starting at initial_accumulator_value) and update rule (dense grads).

    nonfinite: "skip" (default): a step meeting a NaN/Inf grad updates nothing, adds
    one to `skipped_steps` and returns False; "raise": FloatingPointError instead;
    "ignore": no check (torch's behaviour). step() returns True when it updated.
    """

    arrays = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False, nonfinite="skip"):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)
        super().__init__(params, defaults, nonfinite)

    def _check_hyperparameters(self, group):
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            check_range(self._name, group, name)

    def _initial(self, name, group):
        return group["initial_accumulator_value"]

    def _update(self, group, params, grads, arrays, scalars, check_finite):
        return ops.adagrad_step(
            params, grads, arrays["sum"], lr=group["lr"], lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"], eps=group["eps"], step=scalars["step"], maximize=group["maximize"],
            check_finite=check_finite)
