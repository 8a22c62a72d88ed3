"""Adamax (torch.optim.Adamax), one native ops.adamax_step per group.

    g = grad + weight_decay * param
    m = beta1 m + (1 - beta1) g;     u = max(beta2 u, |g| + eps)
    param -= lr / (1 - beta1^t) * m / u
"""
from .. import ops
from ._fused import FusedOptimizer, check_betas, check_range, pair as _pair


class Adamax(FusedOptimizer):
    """torch.optim.Adamax: same arguments, defaults, checks, state names ("step",
    "exp_avg", "exp_inf") and update rule.

    nonfinite: "skip" (default): a step meeting a NaN/Inf grad updates nothing, adds
    one to `skipped_steps` and returns False; "raise": FloatingPointError instead;
    "ignore": no check (torch's behaviour). step() returns True when it updated.
    """

    arrays = ("exp_avg", "exp_inf")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, maximize=False,
                 nonfinite="skip"):
        defaults = dict(lr=lr, betas=_pair(betas), eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, nonfinite)

    def _check_hyperparameters(self, group):
        for name in ("lr", "eps", "weight_decay"):
            check_range(self._name, group, name)
        check_betas(self._name, group)

    def _update(self, group, params, grads, arrays, scalars, check_finite):
        beta1, beta2 = group["betas"]
        return ops.adamax_step(
            params, grads, arrays["exp_avg"], arrays["exp_inf"], lr=group["lr"], beta1=beta1, beta2=beta2,
            eps=group["eps"], weight_decay=group["weight_decay"], step=scalars["step"], maximize=group["maximize"],
            check_finite=check_finite)
