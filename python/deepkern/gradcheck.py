"""gradcheck: analytic gradients against central differences, in float64.

The scalar checked is L = sum(out * R) for a fixed random R (seeded) of the
output's shape, so dL/dout = R and every output element takes part. The analytic
gradients come from one backward(R); each numerical one from
(L(v + eps) - L(v - eps)) / (2 eps) per element. The error of one array is
max |analytic - numerical| / max(|analytic|, |numerical|, floor) over its elements,
where floor = 1e-3 times the array's largest numerical gradient (and at least
1e-10), so elements whose true gradient is zero are judged against the scale of
the array, not against rounding noise. A correct float64 backward gives errors of
1e-8 to 1e-6 (the difference quotient's rounding noise, which grows as 1/eps, so
kernels whose float64 exp is a polynomial land at the top of that range); a wrong
one gives errors near 1. The default tol, 1e-5, sits between.

What can be checked:
  - a Module: gradcheck(module, inputs). The module is copied and converted to
    float64 (the original is untouched); its parameters and its float inputs are
    checked. Output may be an array or a tuple whose first item is the array
    (LSTM / GRU); a module holding random state (Dropout in training mode) must be
    put in eval mode first.
  - a function pair: gradcheck((forward, backward), inputs) with forward(*inputs)
    -> out and backward(dout, *inputs) -> the gradient of each float input (one
    array, or a tuple in the order of the inputs).
Integer inputs (class labels) are passed unchanged and not checked.
"""
import copy

import numpy as np

from .nn.module import Module


class GradcheckResult:
    """errors: name -> worst relative error ("input0", ..., then parameter names);
    ok: every error <= tol."""

    def __init__(self, errors, tol):
        self.errors, self.tol = errors, tol

    @property
    def ok(self):
        return all(e <= self.tol for e in self.errors.values())

    @property
    def worst(self):
        return max(self.errors.values(), default=0.0)

    def __bool__(self):
        return self.ok

    def __repr__(self):
        width = max((len(n) for n in self.errors), default=4)
        rows = [f"{n:<{width}}  {e:.2e}{'' if e <= self.tol else '  FAIL'}" for n, e in self.errors.items()]
        return f"gradcheck ({'ok' if self.ok else 'FAILED'}, tol {self.tol:.0e})\n" + "\n".join(rows)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _worst(analytic, numerical):
    a, n = analytic.ravel(), numerical.ravel()
    if a.size == 0:
        return 0.0
    floor = max(1e-3 * float(np.abs(n).max()), 1e-10)
    return float((np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)).max())


def _sample(size, max_elements, rng):
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, max_elements, replace=False))


def gradcheck(module_or_fn, inputs, eps=1e-6, tol=1e-5, max_elements=None, seed=0, raise_on_failure=False):
    """Compare analytic and central-difference gradients (see the module docstring).
    inputs: an array or a sequence of arrays. max_elements: check at most this many
    randomly chosen elements per array (None: all). Returns a GradcheckResult (truthy
    when every error <= tol); raise_on_failure=True raises AssertionError instead of
    returning a failed one."""
    # A stream of its own: R must not repeat inputs the caller drew from default_rng(seed).
    rng = np.random.default_rng([seed, 0x67726164])
    inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    inputs = [np.array(x, dtype=np.float64) if np.asarray(x).dtype.kind == "f" else np.asarray(x) for x in inputs]
    checked = [i for i, x in enumerate(inputs) if x.dtype.kind == "f"]

    if isinstance(module_or_fn, Module):
        module = copy.deepcopy(module_or_fn).to(np.float64)
        params = list(module.named_parameters())

        def forward():
            return _first(module(*inputs))

        def backward(R):
            module.zero_grad()
            dx = module.backward(R)
            return dx
    elif isinstance(module_or_fn, (tuple, list)) and len(module_or_fn) == 2 and all(map(callable, module_or_fn)):
        fwd, bwd = module_or_fn
        params = []

        def forward():
            return _first(fwd(*inputs))

        def backward(R):
            return bwd(R, *inputs)
    else:
        raise TypeError("[gradcheck] expected a deepkern.nn.Module or a pair (forward, backward) of callables, "
                        f"got {type(module_or_fn).__name__}")

    out = np.asarray(forward(), dtype=np.float64)
    R = rng.standard_normal(out.shape)
    grads = backward(R if out.ndim else float(R))
    grads = list(grads) if isinstance(grads, (tuple, list)) else [grads]
    analytic = {}
    for k, i in enumerate(checked):
        if k < len(grads) and grads[k] is not None:
            analytic[f"input{i}"] = (inputs[i], np.asarray(grads[k], dtype=np.float64))
    for name, p in params:
        g = p.grad if p.grad is not None else np.zeros_like(p.data)
        analytic[name] = (p.data, np.array(g, dtype=np.float64))

    def objective():
        return float(np.sum(np.asarray(forward(), dtype=np.float64) * R))

    errors = {}
    for name, (array, grad) in analytic.items():
        if grad.shape != array.shape:
            raise ValueError(f"[gradcheck] the gradient of {name} has shape {grad.shape}, the array {array.shape}")
        flat = array.reshape(-1)  # a view: writes reach the array the forward reads
        idx = _sample(flat.size, max_elements, rng)
        numerical = np.empty(idx.size)
        for j, e in enumerate(idx):
            old = flat[e]
            flat[e] = old + eps
            up = objective()
            flat[e] = old - eps
            down = objective()
            flat[e] = old
            numerical[j] = (up - down) / (2 * eps)
        errors[name] = _worst(grad.reshape(-1)[idx], numerical)
    result = GradcheckResult(errors, tol)
    if raise_on_failure and not result.ok:
        raise AssertionError(repr(result))
    return result
