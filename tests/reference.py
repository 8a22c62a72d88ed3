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


# Derivatives, with torch's choices at the kinks (relu'(0) = 0, leaky_relu'(0) =
# negative_slope, elu'(0) = alpha) and past softplus's threshold (1).
def activation_backward(name, dy, saved, alpha=None, threshold=20.0):
    """dx of activation `name`; saved is x, or the forward output y for sigmoid and tanh."""
    dy, s = f64(dy, saved)
    if name == "relu":
        d = np.where(s <= 0, 0.0, 1.0)
    elif name == "leaky_relu":
        d = np.where(s > 0, 1.0, 0.01 if alpha is None else alpha)
    elif name == "elu":
        d = np.where(s <= 0, (1.0 if alpha is None else alpha) * np.exp(np.minimum(s, 0)), 1.0)
    elif name in ("sigmoid", "tanh"):
        d = s * (1 - s) if name == "sigmoid" else 1 - s * s
    elif name == "softplus":
        beta = 1.0 if alpha is None else alpha
        d = np.where(beta * s > threshold, 1.0, sigmoid(beta * s))
    else:  # silu
        sg = sigmoid(s)
        d = sg * (1 + s * (1 - sg))
    return dy * d


def softmax_backward(dy, y, dim=-1, log=False):
    """dx from dy and the forward output y of softmax (log_softmax when log)."""
    dy, y = f64(dy, y)
    if log:
        return dy - np.exp(y) * dy.sum(axis=dim, keepdims=True)
    return y * (dy - (dy * y).sum(axis=dim, keepdims=True))


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


def _upstream(grad, n, reduction):
    """The per-item weight of the upstream gradient: grad, or grad / n for a mean."""
    grad = np.asarray(grad, dtype=np.float64)
    return grad / n if reduction == "mean" else grad


def cross_entropy_backward(logits, labels, reduction="mean", grad=1.0):
    p = softmax(logits, dim=1)
    labels = np.asarray(labels)
    p[np.arange(len(labels)), labels] -= 1.0
    return p * _upstream(grad, len(labels), reduction).reshape(-1, 1)


def mse_backward(pred, target, reduction="mean", grad=1.0):
    pred, target = f64(pred, target)
    return 2.0 * (pred - target) * _upstream(grad, pred.size, reduction)


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


# The adaptive optimizers in their textbook form. Each takes the state dict of the
# previous step ({} before the first) and returns (new param, new state); "t" counts
# steps. Moments are written as the papers write them (m = b m + (1 - b) g), not in
# torch's lerp / addcmul order, so they check the kernels' algebra, not their rounding.

def _decayed(param, grad, weight_decay, maximize):
    param, grad = f64(param, grad)
    g = -grad if maximize else grad
    return param, g + weight_decay * param


def adagrad_step(param, grad, state, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 initial_accumulator_value=0.0, maximize=False):
    """Duchi et al.: G += g^2; param -= lr_t g / (sqrt(G) + eps), lr_t = lr / (1 + (t - 1) lr_decay)."""
    p, g = _decayed(param, grad, weight_decay, maximize)
    t = state.get("t", 0) + 1
    G = state.get("G", initial_accumulator_value) + g * g
    return p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(G) + eps), dict(t=t, G=G)


def adadelta_step(param, grad, state, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """Zeiler: E[g^2] = rho E[g^2] + (1 - rho) g^2; dx = RMS[dx] / RMS[g] g;
    E[dx^2] = rho E[dx^2] + (1 - rho) dx^2; param -= lr dx, RMS[y] = sqrt(E[y^2] + eps)."""
    p, g = _decayed(param, grad, weight_decay, maximize)
    eg = rho * state.get("eg", 0.0) + (1 - rho) * g * g
    dx = np.sqrt(state.get("edx", 0.0) + eps) / np.sqrt(eg + eps) * g
    edx = rho * state.get("edx", 0.0) + (1 - rho) * dx * dx
    return p - lr * dx, dict(eg=eg, edx=edx)


def rmsprop_step(param, grad, state, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False):
    """Hinton's RMSProp: v = alpha v + (1 - alpha) g^2, step g / (sqrt(v) + eps); centered
    (Graves) divides by sqrt(v - E[g]^2) + eps instead; momentum accumulates the steps."""
    p, g = _decayed(param, grad, weight_decay, maximize)
    v = alpha * state.get("v", 0.0) + (1 - alpha) * g * g
    mean = alpha * state.get("mean", 0.0) + (1 - alpha) * g
    denom = np.sqrt(v - mean * mean if centered else v) + eps
    if momentum > 0:
        buf = momentum * state.get("buf", 0.0) + g / denom
        return p - lr * buf, dict(v=v, mean=mean, buf=buf)
    return p - lr * g / denom, dict(v=v, mean=mean)


def adam_step(param, grad, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              amsgrad=False, decoupled_weight_decay=False, maximize=False):
    """Kingma & Ba with bias correction: m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t),
    param -= lr m_hat / (sqrt(v_hat) + eps); AMSGrad uses the running max of v; AdamW
    (decoupled) shrinks param by lr * weight_decay instead of adding it to g."""
    p, g = f64(param, grad)
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    t = state.get("t", 0) + 1
    m = beta1 * state.get("m", 0.0) + (1 - beta1) * g
    v = beta2 * state.get("v", 0.0) + (1 - beta2) * g * g
    vmax = np.maximum(state.get("vmax", 0.0), v)
    m_hat, v_hat = m / (1 - beta1 ** t), (vmax if amsgrad else v) / (1 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), dict(t=t, m=m, v=v, vmax=vmax)


def adamax_step(param, grad, state, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                maximize=False):
    """Kingma & Ba's Adamax: u = max(beta2 u, |g| + eps) (torch puts eps inside the max),
    param -= lr / (1 - beta1^t) m / u."""
    p, g = _decayed(param, grad, weight_decay, maximize)
    t = state.get("t", 0) + 1
    m = beta1 * state.get("m", 0.0) + (1 - beta1) * g
    u = np.maximum(beta2 * state.get("u", 0.0), np.abs(g) + eps)
    return p - lr / (1 - beta1 ** t) * m / u, dict(t=t, m=m, u=u)


def nadam_step(param, grad, state, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
               momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False):
    """Dozat's NAdam with torch's momentum schedule mu_t = beta1 (1 - 0.5 * 0.96^(t psi)):
    param -= lr [(1 - mu_t) / (1 - prod_{i<=t} mu_i) g + mu_{t+1} / (1 - prod_{i<=t+1} mu_i) m]
             / (sqrt(v / (1 - beta2^t)) + eps)."""
    p, g = f64(param, grad)
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    t = state.get("t", 0) + 1
    mu = lambda s: beta1 * (1 - 0.5 * 0.96 ** (s * momentum_decay))  # noqa: E731
    prod = state.get("prod", 1.0) * mu(t)
    m = beta1 * state.get("m", 0.0) + (1 - beta1) * g
    v = beta2 * state.get("v", 0.0) + (1 - beta2) * g * g
    denom = np.sqrt(v / (1 - beta2 ** t)) + eps
    p = p - lr * (1 - mu(t)) / (1 - prod) * g / denom - lr * mu(t + 1) / (1 - prod * mu(t + 1)) * m / denom
    return p, dict(t=t, prod=prod, m=m, v=v)


def grad_norm(grads, norm_type=2.0):
    """The norm_type-norm of all grads as one vector (torch.linalg.vector_norm's orders)."""
    x = np.abs(np.concatenate([np.asarray(g, np.float64).ravel() for g in grads]))
    if norm_type == np.inf:
        return x.max()
    if norm_type == -np.inf:
        return x.min()
    if norm_type == 0:
        return float(np.count_nonzero(x))
    return (x ** norm_type).sum() ** (1.0 / norm_type)


# -- pooling and batch norm -------------------------------------------------------
# Windows follow torch: output o along an axis looks at o * s - p + i * d, i < k.

def _pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices) by torch's rule: taps in row-major window order, a tap replaces the
    running maximum when greater or NaN; a window wholly in padding: -inf, index -1."""
    x = f64(x)[0]
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    H, W = x.shape[-2:]
    oh, ow = _pool_out(H, kh, sh, ph, dh, ceil_mode), _pool_out(W, kw, sw, pw, dw, ceil_mode)
    y = np.full(x.shape[:-2] + (oh, ow), -np.inf)
    idx = np.full(y.shape, -1, dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            taps = [(h, w) for h in range(i * sh - ph, i * sh - ph + kh * dh, dh)
                    for w in range(j * sw - pw, j * sw - pw + kw * dw, dw) if 0 <= h < H and 0 <= w < W]
            for n, (h, w) in enumerate(taps):
                v = x[..., h, w]
                take = (v > y[..., i, j]) | np.isnan(v) | (n == 0)
                y[..., i, j] = np.where(take, v, y[..., i, j])
                idx[..., i, j] = np.where(take, h * W + w, idx[..., i, j])
    return y, idx


def max_pool2d_backward(dy, indices, input_shape):
    dy = f64(dy)[0]
    H, W = input_shape[-2:]
    planes = dy.reshape(-1, dy.shape[-2] * dy.shape[-1])
    ix = np.asarray(indices).reshape(planes.shape)
    dx = np.zeros((planes.shape[0], H * W))
    for p in range(planes.shape[0]):
        keep = ix[p] >= 0
        np.add.at(dx[p], ix[p][keep], planes[p][keep])
    return dx.reshape(input_shape)


def _avg_windows(H, W, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """(oh, ow, [(i, j, h0, h1, w0, w1, divisor)]) with torch's divisor rule."""
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    oh, ow = _pool_out(H, kh, sh, ph, 1, ceil_mode), _pool_out(W, kw, sw, pw, 1, ceil_mode)
    out = []
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - ph, j * sw - pw
            h1, w1 = min(h0 + kh, H + ph), min(w0 + kw, W + pw)
            size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            div = size if count_include_pad else (h1 - h0) * (w1 - w0)
            out.append((i, j, h0, h1, w0, w1, div))
    return oh, ow, out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    x = f64(x)[0]
    oh, ow, wins = _avg_windows(*x.shape[-2:], kernel_size, stride, padding, ceil_mode, count_include_pad)
    y = np.zeros(x.shape[:-2] + (oh, ow))
    for i, j, h0, h1, w0, w1, div in wins:
        if h0 < h1 and w0 < w1:
            y[..., i, j] = x[..., h0:h1, w0:w1].sum(axis=(-2, -1)) / div
    return y


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    dy = f64(dy)[0]
    _, _, wins = _avg_windows(*input_shape[-2:], kernel_size, stride, padding, ceil_mode, count_include_pad)
    dx = np.zeros(input_shape)
    for i, j, h0, h1, w0, w1, div in wins:
        if h0 < h1 and w0 < w1:
            dx[..., h0:h1, w0:w1] += dy[..., i, j, None, None] / div
    return dx


def global_avg_pool2d(x):
    return f64(x)[0].mean(axis=(-2, -1), keepdims=True)


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """(y, save_mean, save_invstd, new_running_mean, new_running_var); x (N, C, *)."""
    x = f64(x)[0]
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    rm = None if running_mean is None else f64(running_mean)[0]
    rv = None if running_var is None else f64(running_var)[0]
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        m = x.size // x.shape[1]
        if rm is not None:
            rm = (1 - momentum) * rm + momentum * mean
            rv = (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mean, var = rm, rv
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean.reshape(shape)) * invstd.reshape(shape)
    if weight is not None:
        y = y * f64(weight)[0].reshape(shape)
    if bias is not None:
        y = y + f64(bias)[0].reshape(shape)
    return y, mean, invstd, rm, rv


def batch_norm_backward(dy, x, weight, mean, invstd, training=True):
    """(dx, dweight, dbias) of y = xhat * weight + bias, xhat = (x - mean) * invstd."""
    dy, x, mean, invstd = f64(dy, x, mean, invstd)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    w = np.ones(x.shape[1]) if weight is None else f64(weight)[0]
    dbias, dweight = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
    if training:
        dxhat = dy - (dbias.reshape(shape) + xhat * dweight.reshape(shape)) / m
    else:
        dxhat = dy
    dx = dxhat * (w * invstd).reshape(shape)
    return dx, dweight, dbias
