"""Adadelta (torch.optim.Adadelta), one native ops.adadelta_step per group.

    g = grad + weight_decay * param;    v = rho v + (1 - rho) g^2
    delta = sqrt(u + eps) / sqrt(v + eps) * g;    u = rho u + (1 - rho) delta^2
    param -= lr * delta
"""
from .. import ops
from ._fused import FusedOptimizer, check_range


class Adadelta(FusedOptimizer):
    """torch.optim.Adadelta: same arguments, defaults, checks, state names ("step",
    "square_avg", "acc_delta") and update rule.

    nonfinite: "skip" (default): a step meeting a NaN/Inf grad updates nothing, adds
    one to `skipped_steps` and returns False; "raise": FloatingPointError instead;
    "ignore": no check (torch's behaviour). step() returns True when it updated.
    """

    arrays = ("square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False,
                 nonfinite="skip"):
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, nonfinite)

    def _check_hyperparameters(self, group):
        for name in ("lr", "eps", "weight_decay"):
            check_range(self._name, group, name)
        check_range(self._name, group, "rho", 0.0, 1.0)

    def _update(self, group, params, grads, arrays, scalars, check_finite):
        return ops.adadelta_step(
            params, grads, arrays["square_avg"], arrays["acc_delta"], lr=group["lr"], rho=group["rho"],
            eps=group["eps"], weight_decay=group["weight_decay"], maximize=group["maximize"],
            check_finite=check_finite)
