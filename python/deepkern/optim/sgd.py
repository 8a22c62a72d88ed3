"""SGD with torch.optim.SGD's arguments and update rule (momentum, dampening,
Nesterov, weight decay, maximize):

    g   = (maximize ? -grad : grad) + weight_decay * param
    buf = g on the first step, else momentum * buf + (1 - dampening) * g
    g   = nesterov ? g + momentum * buf : buf          (when momentum != 0)
    param -= lr * g

step() makes one native ops.sgd_step call per param group over every param that
has a grad (params whose grad is None are skipped, as torch). A group whose params
mix new and existing momentum buffers needs two calls, one per kind, because the
first step copies g into the buffer instead of blending it (torch's rule), and so
does a group mixing float32 and float64 params.
"""
import math

import numpy as np

from .. import ops
from .._array import array_module
from .optimizer import Optimizer


def _by_dtype(params):
    groups = {}
    for p in params:
        groups.setdefault(p.dtype, []).append(p)
    return groups.values()


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False, *, nonfinite="skip"):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        self._check_hyperparameters(defaults)
        if nesterov and momentum == 0:  # torch checks this on the defaults only
            raise ValueError("[SGD] nesterov momentum requires a momentum > 0 and zero dampening")
        super().__init__(params, defaults, nonfinite)

    def _check_hyperparameters(self, group):
        for k in ("lr", "momentum", "dampening", "weight_decay"):
            v = group[k]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValueError(f"[SGD] {k} must be a finite number, got {v!r}")
        for k in ("lr", "momentum", "weight_decay"):
            if group[k] < 0:
                raise ValueError(f"[SGD] invalid {k}: {group[k]} (must be >= 0)")
        # A group with momentum 0 ignores nesterov, as torch's update does.
        if group["nesterov"] and group["momentum"] != 0 and group["dampening"] != 0:
            raise ValueError("[SGD] nesterov momentum requires a momentum > 0 and zero dampening")

    def _layout(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    @staticmethod
    def _hyper(g):
        return dict(lr=float(g["lr"]), momentum=float(g["momentum"]), dampening=float(g["dampening"]),
                    weight_decay=float(g["weight_decay"]), nesterov=bool(g["nesterov"]) and float(g["momentum"]) != 0,
                    maximize=bool(g["maximize"]))

    def _native(self, call, grads, check_finite):
        return ops.sgd_step(call.datas, grads, call.arrays.get("momentum_buffer"), first_step=False,
                            check_finite=check_finite, **self._hyper(call.group))

    def _planned_step(self):
        plans = []
        for gi, g in enumerate(self.param_groups):
            self._check_hyperparameters(g)  # groups are plain dicts: they may have been edited
            plans.append((g, self._checked(gi, g, ("momentum_buffer",))))
        if not self._grads_finite([p for _, params in plans for p in params]):
            return False
        for g, params in plans:
            hyper = self._hyper(g)
            for same in _by_dtype(params):
                if hyper["momentum"] == 0:
                    ops.sgd_step([p.data for p in same], [p.grad for p in same], None, first_step=False, **hyper)
                    continue
                old = [p for p in same if "momentum_buffer" in self.state.get(p, {})]
                new = [p for p in same if "momentum_buffer" not in self.state.get(p, {})]
                if old:
                    ops.sgd_step([p.data for p in old], [p.grad for p in old],
                                 [self.state[p]["momentum_buffer"] for p in old], first_step=False, **hyper)
                if new:
                    bufs = [array_module(p.data).empty_like(p.data) for p in new]
                    ops.sgd_step([p.data for p in new], [p.grad for p in new], bufs, first_step=True, **hyper)
                    for p, b in zip(new, bufs):
                        self.state.setdefault(p, {})["momentum_buffer"] = b
        return True
