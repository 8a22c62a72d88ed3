"""RMSprop (torch.optim.RMSprop), one native ops.rmsprop_step per group.

    g = grad + weight_decay * param;    v = alpha v + (1 - alpha) g^2
    centered: a = alpha a + (1 - alpha) g, avg = sqrt(v - a^2) + eps;  else avg = sqrt(v) + eps
    momentum > 0: buf = momentum buf + g / avg, param -= lr buf;  else param -= lr g / avg
"""
from .. import ops
from ._fused import FusedOptimizer, check_range


class RMSprop(FusedOptimizer):
    """torch.optim.RMSprop: same arguments, defaults, checks, state names ("step",
    "square_avg", "momentum_buffer" when momentum > 0, "grad_avg" when centered) and
    update rule.

    nonfinite: "skip" (default): a step meeting a NaN/Inf grad updates nothing, adds
    one to `skipped_steps` and returns False; "raise": FloatingPointError instead;
    "ignore": no check (torch's behaviour). step() returns True when it updated.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 *, maximize=False, nonfinite="skip"):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults, nonfinite)

    def _check_hyperparameters(self, group):
        for name in ("lr", "eps", "momentum", "weight_decay", "alpha"):
            check_range(self._name, group, name)

    def _arrays(self, group):
        return (("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ())
                + (("grad_avg",) if group["centered"] else ()))

    def _update(self, group, params, grads, arrays, scalars, check_finite):
        return ops.rmsprop_step(
            params, grads, arrays["square_avg"], arrays.get("grad_avg"), arrays.get("momentum_buffer"),
            lr=group["lr"], alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
            momentum=group["momentum"], centered=group["centered"], maximize=group["maximize"],
            check_finite=check_finite)
