"""NAdam (torch.optim.NAdam), one native ops.nadam_step per group.

    mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay));  mu_product = mu_1 ... mu_t
    NAdamW (decoupled_weight_decay): param *= 1 - lr * weight_decay; else g += weight_decay * param
    m = beta1 m + (1 - beta1) g;    v = beta2 v + (1 - beta2) g^2
    denom = sqrt(v / (1 - beta2^t)) + eps
    param -= lr (1 - mu_t) / (1 - mu_product) * g / denom
    param -= lr mu_{t+1} / (1 - mu_product mu_{t+1}) * m / denom
"""
from .. import ops
from ._fused import FusedOptimizer, check_betas, check_range, pair as _pair


class NAdam(FusedOptimizer):
    """torch.optim.NAdam: same arguments, defaults, checks, state names ("step",
    "mu_product", "exp_avg", "exp_avg_sq") and update rule. mu_product is kept in
    float64 (torch keeps it in the default dtype, float32 unless changed).

    nonfinite: "skip" (default): a step meeting a NaN/Inf grad updates nothing, adds
    one to `skipped_steps` and returns False; "raise": FloatingPointError instead;
    "ignore": no check (torch's behaviour). step() returns True when it updated.
    """

    arrays = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, maximize=False, nonfinite="skip"):
        defaults = dict(lr=lr, betas=_pair(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults, nonfinite)

    def _check_hyperparameters(self, group):
        for name in ("lr", "eps", "weight_decay", "momentum_decay"):
            check_range(self._name, group, name)
        check_betas(self._name, group)

    def _new_scalars(self, group):
        return {"step": 0, "mu_product": 1.0}

    def _bucket_key(self, state):
        return state["step"], state["mu_product"]

    def _next_scalars(self, scalars, group):
        step = scalars["step"] + 1
        mu = ops.nadam_mu(group["betas"][0], group["momentum_decay"], step)
        return {"step": step, "mu_product": scalars["mu_product"] * mu}

    def _update(self, group, params, grads, arrays, scalars, check_finite):
        beta1, beta2 = group["betas"]
        return ops.nadam_step(
            params, grads, arrays["exp_avg"], arrays["exp_avg_sq"], lr=group["lr"], beta1=beta1, beta2=beta2,
            eps=group["eps"], weight_decay=group["weight_decay"], momentum_decay=group["momentum_decay"],
            mu_product=scalars["mu_product"], step=scalars["step"],
            decoupled_weight_decay=group["decoupled_weight_decay"], maximize=group["maximize"],
            check_finite=check_finite)
