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


# -- convolution ------------------------------------------------------------------
# torch's conv2d (a cross-correlation), straight from the definition:
# y[n, k, i, j] = b[k] + sum over the group's channels c and taps (a, e) of
# w[k, c, a, e] * xpad[n, g * Cg + c, i * sh + a * dh, j * sw + e * dw].

def conv2d_padding(padding, kernel, dilation):
    """(top, bottom, left, right) of an int, a pair, "valid" or "same" (the odd one
    of an even dilated kernel at the bottom / right, as torch)."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        th, tw = (d * (k - 1) for k, d in zip(kernel, _pair(dilation)))
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    N, C, H, W = x_shape
    K, Cg, R, S = w_shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    pt, pb, pl, pr = conv2d_padding(padding, (R, S), (dh, dw))
    OH, OW = (H + pt + pb - dh * (R - 1) - 1) // sh + 1, (W + pl + pr - dw * (S - 1) - 1) // sw + 1
    return (sh, sw), (dh, dw), (pt, pb, pl, pr), (OH, OW)


def _conv_taps(R, S, stride, dilation, out):
    """(a, e, row slice, column slice): tap (a, e)'s inputs in the padded plane for every output."""
    (sh, sw), (dh, dw), (OH, OW) = stride, dilation, out
    return [(a, e, slice(a * dh, a * dh + sh * (OH - 1) + 1, sh), slice(e * dw, e * dw + sw * (OW - 1) + 1, sw))
            for a in range(R) for e in range(S)]


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    x, w = f64(x, w)
    unbatched = x.ndim == 3
    x = x[None] if unbatched else x
    K, Cg, R, S = w.shape
    s, d, (pt, pb, pl, pr), out = _conv_geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    Kg = K // groups
    y = np.zeros((x.shape[0], K) + out)
    for g in range(groups):
        xg, wg, yg = xp[:, g * Cg:(g + 1) * Cg], w[g * Kg:(g + 1) * Kg], y[:, g * Kg:(g + 1) * Kg]
        for a, e, rows, cols in _conv_taps(R, S, s, d, out):
            yg += np.einsum("nchw,kc->nkhw", xg[:, :, rows, cols], wg[:, :, a, e])
    if b is not None:
        y += f64(b)[0][None, :, None, None]
    return y[0] if unbatched else y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """(dx, dw, db): the transposes of conv2d's sums, tap by tap."""
    dy, x, w = f64(dy, x, w)
    unbatched = x.ndim == 3
    x, dy = (x[None], dy[None]) if unbatched else (x, dy)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    s, d, (pt, pb, pl, pr), out = _conv_geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dxp, dw = np.zeros(xp.shape), np.zeros(w.shape)
    Kg = K // groups
    for g in range(groups):
        ci, ko = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
        for a, e, rows, cols in _conv_taps(R, S, s, d, out):
            dxp[:, ci, rows, cols] += np.einsum("nkhw,kc->nchw", dy[:, ko], w[ko, :, a, e])
            dw[ko, :, a, e] = np.einsum("nkhw,nchw->kc", dy[:, ko], xp[:, ci, rows, cols])
    dx = dxp[:, :, pt:pt + H, pl:pl + W]
    return (dx[0] if unbatched else dx), dw, dy.sum(axis=(0, 2, 3))


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


# -- recurrent: LSTM and GRU (PyTorch's gate order and formulas) --------------------

def _sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _split(a, n):
    return np.split(a, n, axis=-1)


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """-> (h_new, c_new), gates i, f, g, o."""
    x, h, c, w_ih, w_hh = f64(x, h, c, w_ih, w_hh)
    a = x @ w_ih.T + h @ w_hh.T
    a = a + (0 if b_ih is None else f64(b_ih)[0]) + (0 if b_hh is None else f64(b_hh)[0])
    i, f, g, o = _split(a, 4)
    c_new = _sig(f) * c + _sig(i) * np.tanh(g)
    return _sig(o) * np.tanh(c_new), c_new


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """-> h_new; n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h_new = (1 - z) n + z h."""
    x, h, w_ih, w_hh = f64(x, h, w_ih, w_hh)
    gi = x @ w_ih.T + (0 if b_ih is None else f64(b_ih)[0])
    gh = h @ w_hh.T + (0 if b_hh is None else f64(b_hh)[0])
    (ir, iz, in_), (hr, hz, hn) = _split(gi, 3), _split(gh, 3)
    r, z = _sig(ir + hr), _sig(iz + hz)
    n = np.tanh(in_ + r * hn)
    return (1 - z) * n + z * h


def lstm_cell_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """Gradients of lstm_cell by the chain rule written out: (dx, dh, dc, dw_ih, dw_hh, db)
    (db is the gradient of b_ih and of b_hh alike)."""
    x, h, c, w_ih, w_hh = f64(x, h, c, w_ih, w_hh)
    hh = w_hh.shape[1]
    dh_new = np.zeros(h.shape) if dh_new is None else f64(dh_new)[0]
    dc_new = np.zeros(h.shape) if dc_new is None else f64(dc_new)[0]
    a = x @ w_ih.T + h @ w_hh.T
    a = a + (0 if b_ih is None else f64(b_ih)[0]) + (0 if b_hh is None else f64(b_hh)[0])
    i, f, g, o = _split(a, 4)
    i, f, g, o = _sig(i), _sig(f), np.tanh(g), _sig(o)
    tc = np.tanh(f * c + i * g)
    dc_total = dc_new + dh_new * o * (1 - tc ** 2)
    da = np.concatenate([dc_total * g * i * (1 - i), dc_total * c * f * (1 - f), dc_total * i * (1 - g ** 2),
                         dh_new * tc * o * (1 - o)], axis=-1)
    return da @ w_ih, da @ w_hh, dc_total * f, da.T @ x, da.T @ h, da.sum(axis=0)


def gru_cell_backward(dh_new, x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """(dx, dh, dw_ih, dw_hh, db_ih, db_hh) of gru_cell."""
    x, h, w_ih, w_hh, dh_new = f64(x, h, w_ih, w_hh, dh_new)
    gi = x @ w_ih.T + (0 if b_ih is None else f64(b_ih)[0])
    gh = h @ w_hh.T + (0 if b_hh is None else f64(b_hh)[0])
    (ir, iz, in_), (hr, hz, hn) = _split(gi, 3), _split(gh, 3)
    r, z = _sig(ir + hr), _sig(iz + hz)
    n = np.tanh(in_ + r * hn)
    dn = dh_new * (1 - z) * (1 - n ** 2)
    dz = dh_new * (h - n) * z * (1 - z)
    dr = dn * hn * r * (1 - r)
    dgi = np.concatenate([dr, dz, dn], axis=-1)
    dgh = np.concatenate([dr, dz, dn * r], axis=-1)
    return dgi @ w_ih, dgh @ w_hh + dh_new * z, dgi.T @ x, dgh.T @ h, dgi.sum(axis=0), dgh.sum(axis=0)


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """One layer over x (T, B, I), step by step: (y (T, B, H), h_n, c_n)."""
    h, c, ys = f64(h0)[0], f64(c0)[0], []
    for xt in f64(x)[0]:
        h, c = lstm_cell(xt, h, c, w_ih, w_hh, b_ih, b_hh)
        ys.append(h)
    return np.stack(ys) if ys else np.zeros((0,) + h.shape), h, c


def gru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None):
    """One layer over x (T, B, I): (y (T, B, H), h_n)."""
    h, ys = f64(h0)[0], []
    for xt in f64(x)[0]:
        h = gru_cell(xt, h, w_ih, w_hh, b_ih, b_hh)
        ys.append(h)
    return np.stack(ys) if ys else np.zeros((0,) + h.shape), h


def lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """Backward through time of lstm, one cell backward per step, last to first:
    (dx, dh0, dc0, dw_ih, dw_hh, db)."""
    x, h0, c0, w_ih, w_hh = f64(x, h0, c0, w_ih, w_hh)
    hs, cs, (h, c) = [h0], [c0], (h0, c0)
    for xt in x:
        h, c = lstm_cell(xt, h, c, w_ih, w_hh, b_ih, b_hh)
        hs.append(h)
        cs.append(c)
    dh = np.zeros(h0.shape) if dh_n is None else f64(dh_n)[0].copy()
    dc = np.zeros(c0.shape) if dc_n is None else f64(dc_n)[0].copy()
    dx, dw_ih, dw_hh, db = np.zeros(x.shape), np.zeros(w_ih.shape), np.zeros(w_hh.shape), np.zeros(w_ih.shape[0])
    for t in reversed(range(len(x))):
        if dy is not None:
            dh = dh + f64(dy)[0][t]
        dx[t], dh, dc, a, b, c_ = lstm_cell_backward(dh, dc, x[t], hs[t], cs[t], w_ih, w_hh, b_ih, b_hh)
        dw_ih, dw_hh, db = dw_ih + a, dw_hh + b, db + c_
    return dx, dh, dc, dw_ih, dw_hh, db


def gru_backward(dy, dh_n, x, h0, w_ih, w_hh, b_ih=None, b_hh=None):
    """Backward through time of gru: (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    x, h0, w_ih, w_hh = f64(x, h0, w_ih, w_hh)
    hs, h = [h0], h0
    for xt in x:
        h = gru_cell(xt, h, w_ih, w_hh, b_ih, b_hh)
        hs.append(h)
    dh = np.zeros(h0.shape) if dh_n is None else f64(dh_n)[0].copy()
    dx = np.zeros(x.shape)
    acc = [np.zeros(w_ih.shape), np.zeros(w_hh.shape), np.zeros(w_ih.shape[0]), np.zeros(w_ih.shape[0])]
    for t in reversed(range(len(x))):
        if dy is not None:
            dh = dh + f64(dy)[0][t]
        dx[t], dh, *g = gru_cell_backward(dh, x[t], hs[t], w_ih, w_hh, b_ih, b_hh)
        acc = [s + v for s, v in zip(acc, g)]
    return (dx, dh, *acc)


# -- more losses: binary cross-entropy with logits, multi-class hinge ------------

def _last_axis(w, x):
    """w (C,), (1,) or () broadcast over the last axis of x, never widening x's shape."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    return np.broadcast_to(w, (x.shape[-1] if x.ndim else 1,)).reshape(x.shape[-1:])


def binary_cross_entropy_with_logits(logits, target, reduction="mean", pos_weight=None):
    """-(w t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), logs as -logaddexp(0, -+x)."""
    x, t = f64(logits, target)
    w = 1.0 if pos_weight is None else _last_axis(pos_weight, x)
    per = w * t * np.logaddexp(0.0, -x) + (1 - t) * np.logaddexp(0.0, x)
    return _reduce(per, reduction)


def binary_cross_entropy_with_logits_backward(logits, target, reduction="mean", pos_weight=None, grad=1.0):
    x, t = f64(logits, target)
    w = 1.0 if pos_weight is None else _last_axis(pos_weight, x)
    s = 1.0 / (1.0 + np.exp(-x))
    return ((1 - t) * s - w * t * (1 - s)) * _upstream(grad, x.size, reduction)


def multi_margin(x, labels, reduction="mean", p=1, margin=1.0, weight=None):
    x, = f64(x)
    n, c = x.shape
    labels = np.asarray(labels)
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    h = np.maximum(0.0, margin - x[np.arange(n), labels][:, None] + x)
    h[np.arange(n), labels] = 0.0
    return _reduce(w[labels] * (h ** p).sum(axis=1) / c, reduction)


def multi_margin_backward(x, labels, reduction="mean", p=1, margin=1.0, weight=None, grad=1.0):
    x, = f64(x)
    n, c = x.shape
    labels = np.asarray(labels)
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    h = margin - x[np.arange(n), labels][:, None] + x
    d = np.where(h > 0, 1.0 if p == 1 else 2.0 * h, 0.0)
    d[np.arange(n), labels] = 0.0
    d[np.arange(n), labels] = -d.sum(axis=1)
    g = np.broadcast_to(_upstream(grad, n, reduction), (n,))
    return d * (w[labels] * g / c)[:, None]


# -- dropout ------------------------------------------------------------------

def dropout(x, mask, p):
    """x * mask / (1 - p) (0 for p == 1) given the kept-element mask."""
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return f64(x)[0] * np.asarray(mask, dtype=np.float64) * scale


def dropout_mask(seed, shape, p):
    """The kept elements of core/random.h's stream `seed`: SplitMix64 of
    seed + (i + 1) * golden gamma, kept when its top 32 bits >= round(p * 2^32)."""
    i = np.arange(1, int(np.prod(shape)) + 1, dtype=np.uint64)
    z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(32)) >= np.uint64(int(p * 2.0 ** 32 + 0.5))).reshape(shape)
