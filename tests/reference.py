"""Plain float64 numpy references: obviously correct, slow, the oracle of every test."""
import numpy as np


def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


# -- gemm --------------------------------------------------------------------

def gemm(a, b, c=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    a, b = f64(a, b)
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    out = alpha * (a @ b)
    if c is not None and beta != 0.0:
        out = out + beta * np.asarray(c, dtype=np.float64)
    return out


def linear(x, w, b=None):
    x, w = f64(x, w)
    y = x @ w.T
    return y if b is None else y + np.asarray(b, dtype=np.float64)


def linear_backward(dy, x, w):
    dy, x, w = f64(dy, x, w)
    return dy @ w, dy.T @ x, dy.sum(axis=0)


# -- activations ---------------------------------------------------------------

def relu(x):
    return np.maximum(f64(x)[0], 0.0)


def leaky_relu(x, negative_slope=0.01):
    x = f64(x)[0]
    return np.where(x > 0, x, negative_slope * x)


def elu(x, alpha=1.0):
    x = f64(x)[0]
    return np.where(x > 0, x, alpha * np.expm1(x))


def sigmoid(x):
    x = f64(x)[0]
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def tanh(x):
    return np.tanh(f64(x)[0])


def softplus(x, beta=1.0, threshold=20.0):
    x = f64(x)[0]
    soft = np.logaddexp(0.0, beta * x) / beta
    return np.where(beta * x > threshold, x, soft)


def silu(x):
    x = f64(x)[0]
    return x * sigmoid(x)


def log_softmax(x, dim=-1):
    x = f64(x)[0]
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def softmax(x, dim=-1):
    return np.exp(log_softmax(x, dim))


# -- losses ------------------------------------------------------------------

def _reduce(per_item, reduction):
    if reduction == "none":
        return per_item
    return per_item.sum() if reduction == "sum" else per_item.mean()


def cross_entropy(logits, labels, reduction="mean"):
    logp = log_softmax(logits, dim=1)
    labels = np.asarray(labels)
    return _reduce(-logp[np.arange(len(labels)), labels], reduction)


def mse(pred, target, reduction="mean"):
    pred, target = f64(pred, target)
    return _reduce((pred - target) ** 2, reduction)


# -- optimizers --------------------------------------------------------------

def sgd_step(param, grad, buf, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False):
    """One torch.optim.SGD step; returns (new param, new buf). buf None: first step."""
    param, grad = f64(param, grad)
    g = -grad if maximize else grad
    g = g + weight_decay * param
    if momentum != 0.0:
        buf = g.copy() if buf is None else momentum * np.asarray(buf, np.float64) + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return param - lr * g, buf
