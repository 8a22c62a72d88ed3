"""Adam and AdamW (torch.optim.Adam / AdamW), one native ops.adam_step per group.

    AdamW: param *= 1 - lr * weight_decay;     Adam: g = grad + weight_decay * param
    m = beta1 m + (1 - beta1) g;                v = beta2 v + (1 - beta2) g^2
    amsgrad: v_max = max(v_max, v), used for v below
    param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""
from .. import ops
from ._fused import FusedOptimizer, check_betas, check_range, pair as _pair


class Adam(FusedOptimizer):
    """torch.optim.Adam: same arguments, defaults, checks, state names ("step",
    "exp_avg", "exp_avg_sq", "max_exp_avg_sq" with amsgrad) and update rule.

    nonfinite: "skip" (default): a step meeting a NaN/Inf grad updates nothing, adds
    one to `skipped_steps` and returns False; "raise": FloatingPointError instead;
    "ignore": no check (torch's behaviour, one pass over memory). step() returns True
    when it updated.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, nonfinite="skip"):
        defaults = dict(lr=lr, betas=_pair(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults, nonfinite)

    def _check_hyperparameters(self, group):
        for name in ("lr", "eps", "weight_decay"):
            check_range(self._name, group, name)
        check_betas(self._name, group)

    def _arrays(self, group):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _update(self, group, params, grads, arrays, scalars, check_finite):
        beta1, beta2 = group["betas"]
        return ops.adam_step(
            params, grads, arrays["exp_avg"], arrays["exp_avg_sq"], arrays.get("max_exp_avg_sq"), lr=group["lr"],
            beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"], step=scalars["step"],
            amsgrad=group["amsgrad"], decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"], check_finite=check_finite)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (param *= 1 - lr * weight_decay
    before the Adam step), weight_decay 1e-2 by default. nonfinite: as Adam."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, nonfinite="skip"):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, nonfinite=nonfinite)
