"""Functional API: normalises arguments, allocates outputs, calls the native kernels.

Validation of dtypes, shapes, contiguity and writeability happens in the bindings
(csrc/bindings/), which raise TypeError / ValueError naming the op and argument;
this layer turns PyTorch-style arguments into the kernels' explicit ones.
"""
import math
import operator
import sys

import numpy as np

from . import _C


def _float_array(op, name, x):
    """x as an ndarray (lists and scalars are converted; read-only, so no aliasing)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, int, float, np.generic)):
        return np.asarray(x, dtype=np.float32)
    raise TypeError(f"[{op}] {name} must be a numpy array, got {type(x).__name__}")


# -- gemm and linear -----------------------------------------------------------

def _out_dtype(x):
    """The dtype outputs are allocated with: x's when the kernels take it (float32,
    float64); otherwise any, since the binding rejects x naming it."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.float32


def _input(op, name, x):
    """A read-only operand: a numpy array as _float_array, or a CUDA array made
    C-contiguous (a strided CuPy or torch view is copied, as the CPU path copies)."""
    if not hasattr(x, "__cuda_array_interface__"):
        return _float_array(op, name, x)
    flags = getattr(x, "flags", None)
    if flags is not None and not flags.c_contiguous:
        return sys.modules[type(x).__module__.partition(".")[0]].ascontiguousarray(x)
    if hasattr(x, "is_contiguous") and not x.is_contiguous():
        return x.contiguous()
    return x


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, tf32=False):
    """alpha * op(a) @ op(b) + beta * out, op(x) = x.T where trans_x; a, b 2-D.

    out: written in place and returned (C-contiguous, writeable, same dtype); when
    None a new array is returned, which needs beta == 0. As in BLAS, beta == 0
    never reads out (NaN there does not propagate) and alpha == 0 reads neither
    a nor b. Strided and transposed views of a and b are read in place, not copied;
    an out that overlaps a or b gets the product of their old values, as numpy.

    CUDA arrays (CuPy, torch) run on the GPU, with out from their library; there
    strided views are copied and an out that overlaps a or b is a ValueError.
    tf32=True multiplies float32 on the GPU's tensor cores with TF32 inputs (about
    10 mantissa bits: faster, about 1e-3 relative error); it changes nothing on
    the CPU or for float64.
    """
    a, b = _input("gemm", "a", a), _input("gemm", "b", b)
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2:
            raise ValueError(f"[gemm] {name} must be 2-D, got shape {tuple(x.shape)}")
    if out is None:
        if beta != 0:
            raise ValueError(f"[gemm] beta={beta} reads out, but out is None")
        m = a.shape[1] if trans_a else a.shape[0]
        n = b.shape[0] if trans_b else b.shape[1]
        out = _empty(a, (m, n))
    _C.gemm(a, b, out, bool(trans_a), bool(trans_b), float(alpha), float(beta), bool(tf32))
    return out


def linear(x, w, b=None, *, tf32=False):
    """x @ w.T + b as torch.nn.functional.linear: x (*, in), w (out, in), b (out,) -> (*, out).
    CUDA arrays run on the GPU; tf32 as in gemm."""
    x, w = _input("linear", "x", x), _input("linear", "w", w)
    if x.ndim < 1:
        raise ValueError(f"[linear] x must have at least 1 dimension, got shape {tuple(x.shape)}")
    if w.ndim != 2:
        raise ValueError(f"[linear] w must be 2-D (out_features, in_features), got shape {tuple(w.shape)}")
    if b is not None:
        b = _input("linear", "b", b)
    lead = tuple(x.shape[:-1])
    x2 = x.reshape(int(np.prod(lead)), x.shape[-1]) if x.ndim != 2 else x
    y = _empty(x, (x2.shape[0], w.shape[0]))
    _C.linear(x2, w, b, y, bool(tf32))
    return y.reshape(lead + (w.shape[0],))


def linear_backward(dy, x, w, bias=True, *, tf32=False):
    """Gradients of linear: (dx, dw, db) with the shapes of x, w and the bias
    (db is None when bias=False); dy (*, out), x (*, in), w (out, in).
    CUDA arrays run on the GPU (db summed in a fixed order); tf32 as in gemm."""
    dy, x, w = (_input("linear_backward", n, v) for n, v in (("dy", dy), ("x", x), ("w", w)))
    if w.ndim != 2:
        raise ValueError(f"[linear_backward] w must be 2-D (out_features, in_features), got shape {tuple(w.shape)}")
    if x.ndim < 1 or dy.ndim != x.ndim or tuple(dy.shape[:-1]) != tuple(x.shape[:-1]):
        raise ValueError(f"[linear_backward] dy {tuple(dy.shape)} and x {tuple(x.shape)} must share their "
                         "leading dimensions")
    rows = int(np.prod(x.shape[:-1]))
    dy2, x2 = dy.reshape(rows, dy.shape[-1]), x.reshape(rows, x.shape[-1])
    dx = _empty(dy, x2.shape)
    dw = _empty(dy, w.shape)
    db = _empty(dy, w.shape[:1]) if bias else None
    _C.linear_backward(dy2, x2, w, dx, dw, db, bool(tf32))
    return dx.reshape(x.shape), dw, db


# -- activations ----------------------------------------------------------------
# Any shape; numpy arrays run on the CPU, CUDA arrays (__cuda_array_interface__:
# CuPy, torch CUDA tensors) on the GPU, with the output from the input's library.

_A = _C.Activation


def _is_cuda(x):
    return hasattr(x, "__cuda_array_interface__")


def _operand(op, name, x):
    """A read-only operand: a CUDA array made C-contiguous (a strided view is copied,
    as the bindings copy a strided numpy input), else x as an ndarray."""
    return _input(op, name, x) if _is_cuda(x) else _float_array(op, name, x)


def _cuda_input(op, name, x):
    """A read-only argument the bindings check (None, numpy, labels, masks): a
    strided CUDA array copied to C-contiguous memory, anything else unchanged."""
    return _input(op, name, x) if _is_cuda(x) else x


# Outputs of at least this many bytes take their memory from _C's host cache:
# blocks kept when an array dies and handed to the next array of the same size,
# so that the kernels writing a training step's outputs do not fault in fresh
# pages every step (csrc/bindings/core.cpp). Module forward + backward, 2 Zen 5
# cores, in-process A/B against np.empty: batch norm on (32, 64, 56, 56) 2.7x,
# 2x2 max pooling 1.4x, a 3x3 convolution 1.08x, a 2-layer LSTM (32, 512, 512)
# T=50 1.04-1.08x beside torch in the process (1.02x for one layer).
_HOST_CACHE_MIN_BYTES = 1 << 20


def _host_empty(shape, dtype):
    """An uninitialised C-contiguous numpy array; a large one from the host cache."""
    dtype = np.dtype(dtype)
    try:
        dims = [operator.index(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,))]
    except TypeError:
        dims = [-1]
    nbytes = dtype.itemsize * math.prod(dims) if min(dims, default=0) >= 0 else -1  # Python ints: no overflow
    if not _HOST_CACHE_MIN_BYTES <= nbytes < 1 << 62:
        return np.empty(shape, dtype=dtype)  # small, or a shape for numpy to reject
    return _C.host_buffer(nbytes).view(dtype).reshape(dims)


def _empty_like(x):
    """An uninitialised C-contiguous array of x's shape and dtype, from x's own
    array module: numpy, or the library of a CUDA array (cupy.empty_like, torch.empty_like)."""
    if isinstance(x, np.ndarray):
        return _host_empty(x.shape, x.dtype)
    return sys.modules[type(x).__module__.partition(".")[0]].empty_like(x)


def _empty(x, shape, dtype=None):
    """An uninitialised C-contiguous array of `shape` from x's array module, with
    x's dtype (_out_dtype's for numpy) or the numpy `dtype` given."""
    if isinstance(x, np.ndarray):
        return _host_empty(shape, _out_dtype(x) if dtype is None else dtype)
    xp = sys.modules[type(x).__module__.partition(".")[0]]
    if xp.__name__ == "torch":
        dt = x.dtype if dtype is None else getattr(xp, np.dtype(dtype).name)
        return xp.empty(tuple(shape), dtype=dt, device=x.device)
    with x.device:  # CuPy allocates on the current device; the output belongs on x's
        return xp.empty(tuple(shape), dtype=x.dtype if dtype is None else dtype)


def _real(op, name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"[{op}] {name} must be a real number, got {type(v).__name__}")
    return float(v)


def _activation(kind, x, alpha=0.0, threshold=20.0, alpha_name="alpha"):
    """alpha: the kind's parameter (negative_slope, alpha or beta), named alpha_name in errors."""
    op = kind.name
    x = _operand(op, "x", x)
    y = _empty_like(x)
    _C.activation(kind, x, y, _real(op, alpha_name, alpha), _real(op, "threshold", threshold))
    return y


def _activation_backward(kind, dy, saved, alpha=0.0, threshold=20.0, alpha_name="alpha"):
    op = kind.name
    dy = _operand(op, "dy", dy)
    saved = _operand(op, "y" if kind in (_A.sigmoid, _A.tanh) else "x", saved)
    dx = _empty_like(dy)
    _C.activation_backward(kind, dy, saved, dx, _real(op, alpha_name, alpha), _real(op, "threshold", threshold))
    return dx


def relu(x):
    """max(x, 0) elementwise (torch.relu)."""
    return _activation(_A.relu, x)


def relu_backward(dy, x):
    """dy where x > 0, else 0 (relu'(0) = 0, as torch)."""
    return _activation_backward(_A.relu, dy, x)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x (torch.nn.functional.leaky_relu)."""
    return _activation(_A.leaky_relu, x, negative_slope, alpha_name="negative_slope")


def leaky_relu_backward(dy, x, negative_slope=0.01):
    """dy where x > 0, else negative_slope * dy."""
    return _activation_backward(_A.leaky_relu, dy, x, negative_slope, alpha_name="negative_slope")


def elu(x, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1) (torch.nn.functional.elu)."""
    return _activation(_A.elu, x, alpha)


def elu_backward(dy, x, alpha=1.0):
    """dy where x > 0, else dy * alpha * exp(x) (at x = 0: alpha, as torch)."""
    return _activation_backward(_A.elu, dy, x, alpha)


def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise."""
    return _activation(_A.sigmoid, x)


def sigmoid_backward(dy, y):
    """dy * y * (1 - y), from the forward output y."""
    return _activation_backward(_A.sigmoid, dy, y)


def tanh(x):
    """tanh(x) elementwise."""
    return _activation(_A.tanh, x)


def tanh_backward(dy, y):
    """dy * (1 - y^2), from the forward output y."""
    return _activation_backward(_A.tanh, dy, y)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold (torch.nn.functional.softplus)."""
    return _activation(_A.softplus, x, beta, threshold, alpha_name="beta")


def softplus_backward(dy, x, beta=1.0, threshold=20.0):
    """dy * sigmoid(beta x), and dy where beta x > threshold."""
    return _activation_backward(_A.softplus, dy, x, beta, threshold, alpha_name="beta")


def silu(x):
    """x * sigmoid(x) (swish; torch.nn.functional.silu)."""
    return _activation(_A.silu, x)


def silu_backward(dy, x):
    """dy * s * (1 + x (1 - s)), s = sigmoid(x)."""
    return _activation_backward(_A.silu, dy, x)


def _dim(op, dim):
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"[{op}] dim must be an int, got {type(dim).__name__}")
    return int(dim)


def _softmax(op, x, dim, log):
    x = _operand(op, "x", x)
    y = _empty_like(x)
    _C.softmax(x, y, _dim(op, dim), log)
    return y


def _softmax_backward(op, dy, y, dim, log):
    dy, y = _operand(op, "dy", dy), _operand(op, "y", y)
    dx = _empty_like(dy)
    _C.softmax_backward(dy, y, dx, _dim(op, dim), log)
    return dx


def softmax(x, dim=-1):
    """exp(x) / sum(exp(x)) along dim, computed max-subtracted (torch.softmax)."""
    return _softmax("softmax", x, dim, False)


def softmax_backward(dy, y, dim=-1):
    """dx = y * (dy - sum(dy * y, dim)), from the forward output y."""
    return _softmax_backward("softmax", dy, y, dim, False)


def log_softmax(x, dim=-1):
    """x - max - log(sum(exp(x - max))) along dim (torch.log_softmax)."""
    return _softmax("log_softmax", x, dim, True)


def log_softmax_backward(dy, y, dim=-1):
    """dx = dy - exp(y) * sum(dy, dim), from the forward output y."""
    return _softmax_backward("log_softmax", dy, y, dim, True)


# -- losses -------------------------------------------------------------------
# reduction "mean" / "sum" return a Python float, "none" the per-item array;
# the backward's `grad` is the upstream gradient (a scalar, or per item for "none").

def _per_item(reduction):
    return reduction in ("none", _C.Reduction.none)


def _reduced_out(pred, reduction, per_item_shape):
    return _empty(pred, per_item_shape if _per_item(reduction) else ())


def _upstream(op, grad, like, reduction, per_item_shape):
    """grad as the kernels' dout: a scalar becomes a 0-D array (broadcast per
    item for "none") of like's dtype, on like's device; arrays pass through and
    are checked by the binding."""
    if isinstance(grad, np.ndarray) or _is_cuda(grad):
        return grad
    g = _real(op, "grad", grad)
    if _is_cuda(like):
        out = _empty(like, per_item_shape if _per_item(reduction) else ())
        (out.fill_ if hasattr(out, "fill_") else out.fill)(g)  # torch fills with fill_, CuPy with fill
        return out
    g = np.asarray(g, dtype=like.dtype)
    return np.broadcast_to(g, per_item_shape) if _per_item(reduction) else g


def _cuda_labels(labels):
    """Integer CUDA labels as int64, which the GPU kernels take (the binding names
    any other dtype)."""
    typestr = labels.__cuda_array_interface__["typestr"]
    if typestr == "<i8" or typestr[1:2] not in ("i", "u"):
        return labels
    return labels.long() if hasattr(labels, "long") else labels.astype(np.int64)


def _labels(op, labels):
    if isinstance(labels, np.ndarray):
        return labels
    if _is_cuda(labels):
        return _cuda_labels(_cuda_input(op, "labels", labels))
    if isinstance(labels, (list, tuple, np.generic, int)):
        a = np.asarray(labels)
        return a.astype(np.int64) if a.size == 0 else a  # [] would be float64
    raise TypeError(f"[{op}] labels must be an integer numpy array, got {type(labels).__name__}")


def cross_entropy(logits, labels, reduction="mean"):
    """torch.nn.functional.cross_entropy over class indices: logits (N, C), integer
    labels (N,) in [0, C). Fused log-softmax + NLL, one pass per row."""
    logits, labels = _operand("cross_entropy", "logits", logits), _labels("cross_entropy", labels)
    out = _reduced_out(logits, reduction, logits.shape[:1])
    _C.cross_entropy(logits, labels, out, reduction)
    return out if _per_item(reduction) else float(out)


def cross_entropy_backward(logits, labels, reduction="mean", grad=1.0):
    """d(cross_entropy)/d(logits) * grad = (softmax(logits) - onehot(labels)) * grad (/ N for "mean")."""
    op = "cross_entropy_backward"
    logits, labels = _operand(op, "logits", logits), _labels(op, labels)
    dout = _upstream(op, grad, logits, reduction, logits.shape[:1])
    dlogits = _empty(logits, logits.shape)
    _C.cross_entropy_backward(logits, labels, dout, dlogits, reduction)
    return dlogits


def mse(pred, target, reduction="mean"):
    """(pred - target)^2, averaged, summed or per element (torch.nn.functional.mse_loss)."""
    pred, target = _operand("mse", "pred", pred), _operand("mse", "target", target)
    out = _reduced_out(pred, reduction, pred.shape)
    _C.mse(pred, target, out, reduction)
    return out if _per_item(reduction) else float(out)


def mse_backward(pred, target, reduction="mean", grad=1.0):
    """d(mse)/d(pred) * grad = 2 (pred - target) * grad (/ pred.size for "mean")."""
    op = "mse_backward"
    pred, target = _operand(op, "pred", pred), _operand(op, "target", target)
    dout = _upstream(op, grad, pred, reduction, pred.shape)
    dpred = _empty(pred, pred.shape)
    _C.mse_backward(pred, target, dout, dpred, reduction)
    return dpred


def _pos_weight(op, pos_weight, logits):
    """None, or pos_weight broadcast over the last axis of logits: (C,) contiguous."""
    if pos_weight is None:
        return None
    w = _operand(op, "pos_weight", pos_weight)
    c = logits.shape[-1] if logits.ndim else 1
    try:
        if not _is_cuda(w):
            return np.ascontiguousarray(np.broadcast_to(w, (c,)))
        if tuple(w.shape) == (c,):
            return w
        if hasattr(w, "expand"):  # a torch tensor
            return w.expand(c).contiguous()
        xp = sys.modules[type(w).__module__.partition(".")[0]]
        return xp.ascontiguousarray(xp.broadcast_to(w, (c,)))
    except (ValueError, RuntimeError):  # torch's expand raises RuntimeError
        raise ValueError(f"[{op}] pos_weight of shape {w.shape} does not broadcast over the last axis "
                         f"of logits {logits.shape}") from None


def binary_cross_entropy_with_logits(logits, target, reduction="mean", pos_weight=None):
    """torch.nn.functional.binary_cross_entropy_with_logits: sigmoid + binary
    cross-entropy in one stable formula, targets in [0, 1] of the logits' shape,
    pos_weight (C,) over the last axis weighting the positive term."""
    op = "binary_cross_entropy_with_logits"
    logits, target = _operand(op, "logits", logits), _operand(op, "target", target)
    out = _reduced_out(logits, reduction, logits.shape)
    _C.binary_cross_entropy_with_logits(logits, target, _pos_weight(op, pos_weight, logits), out, reduction)
    return out if _per_item(reduction) else float(out)


def binary_cross_entropy_with_logits_backward(logits, target, reduction="mean", pos_weight=None, grad=1.0):
    """d/dlogits * grad = ((1 - t) - l * sigmoid(-x)) * grad, l = 1 + (pos_weight - 1) t
    (/ logits.size for "mean"); without pos_weight, sigmoid(x) - t."""
    op = "binary_cross_entropy_with_logits_backward"
    logits, target = _operand(op, "logits", logits), _operand(op, "target", target)
    dout = _upstream(op, grad, logits, reduction, logits.shape)
    dlogits = _empty(logits, logits.shape)
    _C.binary_cross_entropy_with_logits_backward(logits, target, _pos_weight(op, pos_weight, logits), dout,
                                                 dlogits, reduction)
    return dlogits


def _margin_args(op, x, labels, p, margin, weight):
    x, labels = _operand(op, "x", x), _labels(op, labels)
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
        raise TypeError(f"[{op}] p must be the integer 1 or 2, got {p!r}")
    if weight is not None:
        weight = _operand(op, "weight", weight)
    return x, labels, int(p), _real(op, "margin", margin), weight


def _single_label(op, labels):
    """The label of an unbatched (C,) input: one integer, as shape (1,)."""
    if labels.size != 1:
        raise ValueError(f"[{op}] x is one row (C,), so labels must be a single label, got shape {labels.shape}")
    return labels.reshape(1)


def multi_margin(x, labels, reduction="mean", p=1, margin=1.0, weight=None):
    """Multi-class hinge loss, torch.nn.functional.multi_margin_loss: per row,
    sum over j != y of weight[y] * max(0, margin - x[y] + x[j])^p / C. x (N, C) or
    (C,) with a single label."""
    op = "multi_margin"
    x, labels, p, margin, weight = _margin_args(op, x, labels, p, margin, weight)
    single = x.ndim == 1
    if single:
        x, labels = x[None], _single_label(op, labels)
    out = _reduced_out(x, reduction, x.shape[:1])
    _C.multi_margin(x, labels, weight, out, reduction, p, margin)
    if single and _per_item(reduction):
        return out.reshape(())
    return out if _per_item(reduction) else float(out)


def multi_margin_backward(x, labels, reduction="mean", p=1, margin=1.0, weight=None, grad=1.0):
    """d(multi_margin)/dx * grad: weight[y] p h^(p-1) / C at each j != y with a
    positive hinge h, minus their sum at y (/ N for "mean")."""
    op = "multi_margin_backward"
    x, labels, p, margin, weight = _margin_args(op, x, labels, p, margin, weight)
    shape = x.shape
    if x.ndim == 1:
        x, labels = x[None], _single_label(op, labels)
        if isinstance(grad, np.ndarray) or _is_cuda(grad):
            grad = grad.reshape(1)
    dout = _upstream(op, grad, x, reduction, x.shape[:1])
    dx = _empty(x, x.shape)
    _C.multi_margin_backward(x, labels, weight, dout, dx, reduction, p, margin)
    return dx.reshape(shape)


# -- dropout ----------------------------------------------------------------------
# The keep mask comes from a counter-based hash of (seed, element index) in the
# kernel: one 64-bit seed drawn from `rng` per call reproduces the whole mask, for
# any thread count and on either device.

def _seed(op, rng):
    """A 64-bit seed from rng: a numpy Generator, an int seed, or None (the global
    generator that deepkern.manual_seed reseeds)."""
    if rng is None:
        from .nn import init
        rng = init._rng(None)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return int(rng) % 2 ** 64
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2 ** 63, dtype=np.int64))
    raise TypeError(f"[{op}] rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def dropout(x, p=0.5, rng=None):
    """Training-mode dropout, torch.nn.functional.dropout: each element is zeroed with
    probability p and the others scaled by 1 / (1 - p). Returns (y, mask), mask a bool
    array of kept elements, for dropout_backward."""
    op = "dropout"
    x = _operand(op, "x", x)
    p = _real(op, "p", p)
    y, mask = _empty(x, x.shape), _empty(x, x.shape, np.bool_)
    _C.dropout(x, y, mask, p, _seed(op, rng))
    return y, mask


def dropout_backward(dy, mask, p=0.5):
    """dx = dy * mask / (1 - p)."""
    op = "dropout_backward"
    dy = _operand(op, "dy", dy)
    dx = _empty(dy, dy.shape)
    if _is_cuda(mask) and mask.__cuda_array_interface__["typestr"][1:2] in ("i", "u"):
        # the GPU kernel reads bytes: nonzero integers are kept, as on the CPU; other
        # dtypes (float) reach the binding, which rejects them as the CPU path does
        mask = mask != 0
    mask = _cuda_input(op, "mask", mask)
    _C.dropout_backward(dy, mask, dx, _real(op, "p", p))
    return dx


# -- optimizer steps ------------------------------------------------------------

# Each step updates params and state arrays in place in one native call and
# returns True; with check_finite=True a read-only pass over the grads runs first
# and a NaN/Inf anywhere means nothing is written and the step returns False.
# `step` is torch's state["step"] after the increment (1 on the first step).
# Hyperparameter checks are torch.optim's; arrays are checked by the bindings.

def _nonnegative(op, **values):
    for name, v in values.items():
        if not v >= 0:  # also rejects NaN
            raise ValueError(f"[{op}] {name} must be >= 0, got {v}")


def _betas(op, beta1, beta2):
    for i, b in enumerate((beta1, beta2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"[{op}] betas[{i}] must be in [0, 1), got {b}")


def _state(op, name, arrays, needed):
    if not needed:
        return []
    if arrays is None:
        raise ValueError(f"[{op}] {name} are needed with these options")
    return list(arrays)


def sgd_step(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False, maximize=False, first_step=False, check_finite=False):
    """torch.optim.SGD's update of every array in `params`, in place, in one native call.

    momentum_buffers: one array per param, updated in place (needed when momentum != 0);
    first_step: the buffers do not hold history yet and start as the first gradient.
    """
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("[sgd_step] nesterov needs momentum > 0 and dampening == 0")
    _nonnegative("sgd_step", lr=lr, momentum=momentum, weight_decay=weight_decay)
    bufs = _state("sgd_step", "momentum_buffers", momentum_buffers, momentum != 0)
    return _C.sgd_step(list(params), list(grads), bufs, float(lr), float(momentum), float(dampening),
                       float(weight_decay), bool(nesterov), bool(maximize), bool(first_step), bool(check_finite))


def adagrad_step(params, grads, sums, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step,
                 maximize=False, check_finite=False):
    """torch.optim.Adagrad: sum += g^2; param -= lr / (1 + (step - 1) lr_decay) * g / (sqrt(sum) + eps).

    sums: state["sum"] per param (torch starts it at initial_accumulator_value)."""
    _nonnegative("adagrad_step", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps)
    return _C.adagrad_step(list(params), list(grads), list(sums), float(lr), float(lr_decay),
                           float(weight_decay), float(eps), _step("adagrad_step", step), bool(maximize), bool(check_finite))


def adadelta_step(params, grads, square_avgs, acc_deltas, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                  maximize=False, check_finite=False):
    """torch.optim.Adadelta: v = rho v + (1 - rho) g^2; delta = sqrt(u + eps) / sqrt(v + eps) * g;
    u = rho u + (1 - rho) delta^2; param -= lr * delta."""
    _nonnegative("adadelta_step", lr=lr, eps=eps, weight_decay=weight_decay)
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"[adadelta_step] rho must be in [0, 1], got {rho}")
    return _C.adadelta_step(list(params), list(grads), list(square_avgs), list(acc_deltas), float(lr),
                            float(rho), float(eps), float(weight_decay), bool(maximize), bool(check_finite))


def rmsprop_step(params, grads, square_avgs, grad_avgs=None, momentum_buffers=None, *, lr=1e-2, alpha=0.99,
                 eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False, check_finite=False):
    """torch.optim.RMSprop: v = alpha v + (1 - alpha) g^2; avg = sqrt(v - a^2) + eps with
    a = lerp(a, g, 1 - alpha) when centered (grad_avgs), else sqrt(v) + eps; with momentum
    (momentum_buffers) buf = momentum buf + g / avg and param -= lr buf, else param -= lr g / avg."""
    _nonnegative("rmsprop_step", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
    ga = _state("rmsprop_step", "grad_avgs", grad_avgs, centered)
    bufs = _state("rmsprop_step", "momentum_buffers", momentum_buffers, momentum > 0)
    return _C.rmsprop_step(list(params), list(grads), list(square_avgs), ga, bufs, float(lr), float(alpha),
                           float(eps), float(weight_decay), float(momentum), bool(centered), bool(maximize),
                           bool(check_finite))


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, lr=1e-3, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, step, amsgrad=False, decoupled_weight_decay=False,
              maximize=False, check_finite=False):
    """torch.optim.Adam (AdamW with decoupled_weight_decay, AMSGrad with amsgrad and
    max_exp_avg_sqs): m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
    param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)."""
    _nonnegative("adam_step", lr=lr, eps=eps, weight_decay=weight_decay)
    _betas("adam_step", beta1, beta2)
    vmax = _state("adam_step", "max_exp_avg_sqs", max_exp_avg_sqs, amsgrad)
    return _C.adam_step(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), vmax, float(lr),
                        float(beta1), float(beta2), float(eps), float(weight_decay), _step("adam_step", step), bool(amsgrad),
                        bool(decoupled_weight_decay), bool(maximize), bool(check_finite))


def adamax_step(params, grads, exp_avgs, exp_infs, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, step, maximize=False, check_finite=False):
    """torch.optim.Adamax: m = lerp(m, g, 1 - beta1); u = max(beta2 u, |g| + eps);
    param -= lr / (1 - beta1^step) * m / u."""
    _nonnegative("adamax_step", lr=lr, eps=eps, weight_decay=weight_decay)
    _betas("adamax_step", beta1, beta2)
    return _C.adamax_step(list(params), list(grads), list(exp_avgs), list(exp_infs), float(lr), float(beta1),
                          float(beta2), float(eps), float(weight_decay), _step("adamax_step", step), bool(maximize),
                          bool(check_finite))


def nadam_mu(beta1, momentum_decay, step):
    """NAdam's momentum coefficient of `step`: beta1 (1 - 0.5 * 0.96^(step momentum_decay))."""
    return _C.nadam_mu(float(beta1), float(momentum_decay), _step("nadam_mu", step))


def nadam_step(params, grads, exp_avgs, exp_avg_sqs, *, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.0, momentum_decay=4e-3, mu_product, step, decoupled_weight_decay=False,
               maximize=False, check_finite=False):
    """torch.optim.NAdam. mu_product is torch's state["mu_product"] after this step's update:
    the product of nadam_mu(beta1, momentum_decay, s) for s = 1 .. step."""
    _nonnegative("nadam_step", lr=lr, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay)
    _betas("nadam_step", beta1, beta2)
    return _C.nadam_step(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), float(lr), float(beta1),
                         float(beta2), float(eps), float(weight_decay), float(momentum_decay),
                         float(mu_product), _step("nadam_step", step), bool(decoupled_weight_decay), bool(maximize),
                         bool(check_finite))


# Gradient utilities. Lists may mix float32 and float64 arrays: one native call per dtype.

def _step(op, step):
    """The optimizer step count: a positive integer the kernels' int64 can hold."""
    step = operator.index(step)
    if not 1 <= step < 2**62:
        raise ValueError(f"[{op}] step counts from 1 and must be below 2**62, got {step}")
    return step


def _by_dtype(op, arrays, name="grads"):
    """The arrays split by dtype (float32, float64), each checked here while its
    index in the caller's list is still known. CUDA arrays are accepted too: the
    binding runs a list of them on the GPU (and rejects a list mixing devices)."""
    groups = {}
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) and not hasattr(a, "__cuda_array_interface__"):
            raise TypeError(f"[{op}] {name}[{i}] must be a numpy or CUDA array, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"[{op}] {name}[{i}] must be float32 or float64, got {a.dtype}")
        groups.setdefault(a.dtype, []).append(a)
    return list(groups.values())


def all_finite(arrays):
    """True when no element of any array is NaN or infinite (read-only, stops early)."""
    arrays = list(arrays)
    try:
        return _C.all_finite(arrays)  # one dtype, the common case: one call
    except TypeError:  # mixed dtypes (or a non-array, which _by_dtype names)
        return all(_C.all_finite(same) for same in _by_dtype("all_finite", arrays, "arrays"))


def _combine_norms(norms, norm_type):
    """The norm of a concatenation from the norms of its parts (torch: a norm of norms)."""
    if len(norms) == 1:
        return norms[0]
    if np.isnan(norms).any():
        return float("nan")
    if norm_type == np.inf:
        return max(norms)
    if norm_type == -np.inf:
        return min(norms)
    if norm_type == 0:
        return sum(norms)
    return float(np.sum(np.power(norms, norm_type)) ** (1.0 / norm_type))


def grad_norm(arrays, norm_type=2.0):
    """The norm_type-norm of all arrays seen as one vector (float64 accumulation):
    p > 0, 0 (non-zero count), inf (max |x|) or -inf (min |x|). 0.0 for no arrays."""
    norm_type = float(norm_type)
    if np.isnan(norm_type):  # checked here: the native call would name clip_grad_norm in the message
        raise ValueError("[grad_norm] norm_type must not be NaN")
    groups = _by_dtype("grad_norm", arrays)
    if not groups:
        return 0.0
    return _combine_norms([_C.clip_grad_norm(same, -1.0, norm_type, True) for same in groups], norm_type)


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """torch.nn.utils.clip_grad_norm_ on arrays: total = grad_norm(grads, norm_type), then
    every grad is scaled in place by min(1, max_norm / (total + 1e-6)); returns total, in one
    native call (a reduction, then the scaling pass only when total > max_norm). A NaN/Inf
    total raises RuntimeError, with nothing scaled, when error_if_nonfinite; otherwise it
    scales as torch does (to NaN, or 0 where the total is Inf). norm_type: any p != 0, inf
    or -inf. Grads are written in place: C-contiguous, aligned, writeable."""
    op = "clip_grad_norm_"
    max_norm, norm_type = float(max_norm), float(norm_type)
    _nonnegative(op, max_norm=max_norm)
    if norm_type == 0 or np.isnan(norm_type):
        raise ValueError(f"[{op}] norm_type {norm_type} is not a norm to clip by (torch's clip_grad_norm_ "
                         "turns 0 into the count of non-zero tensors); grad_norm(grads, 0) counts non-zeros")
    groups = _by_dtype(op, grads)
    if not groups:
        return 0.0
    if len(groups) == 1:
        total = _C.clip_grad_norm(groups[0], max_norm, norm_type, not error_if_nonfinite)
    else:  # mixed dtypes: the norm of the per-dtype norms, then one scaling pass per dtype
        # the rule the single-dtype path's native call applies, so mixing dtypes accepts no more
        # (CuPy's flags have neither writeable nor aligned: its arrays always are both)
        if not all(g.flags.c_contiguous and getattr(g.flags, "aligned", True) and getattr(g.flags, "writeable", True)
                   for same in groups for g in same):
            raise ValueError(f"[{op}] grads are scaled in place and must be C-contiguous, aligned and writeable")
        total = _combine_norms([_C.clip_grad_norm(same, -1.0, norm_type, True) for same in groups], norm_type)
        coef = max_norm / (total + 1e-6)
        if not (error_if_nonfinite and not np.isfinite(total)) and not coef >= 1.0:
            for same in groups:
                for g in same:
                    np.multiply(g, g.dtype.type(coef), out=g)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"[{op}] the total norm of order {norm_type} of the gradients is non-finite "
                           f"({total}), so it cannot be clipped; nothing was scaled (error_if_nonfinite=False "
                           "scales anyway, as torch)")
    return total


def clip_grad_value_(grads, clip_value):
    """torch.nn.utils.clip_grad_value_ on arrays: each grad clamped to [-clip_value, clip_value] in place."""
    for same in _by_dtype("clip_grad_value_", grads):
        _C.clip_grad_value(same, float(clip_value))


# -- pooling --------------------------------------------------------------------
# kernel_size, stride, padding and dilation are an int or an (h, w) pair, as torch;
# x is (N, C, H, W) or unbatched (C, H, W). The bindings check every rule torch
# checks (padding at most half the kernel, a non-empty output) and the arrays;
# _C.pool2d_output_shape is the one place the output size is computed.

def _pair(op, name, v):
    def is_int(e):
        return isinstance(e, (int, np.integer)) and not isinstance(e, bool)
    if is_int(v):
        v = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(e) for e in v):
        v = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"[{op}] {name} must be an int or a pair of ints, got {v!r}")
    if not all(-2**63 <= e < 2**63 for e in v):  # the bindings take int64
        raise ValueError(f"[{op}] {name} must fit in 64 bits, got {v}")
    return v


def _pool_window(op, kernel_size, stride, padding, dilation=1):
    k = _pair(op, "kernel_size", kernel_size)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)  # torch: stride=[]
    return k, k if no_stride else _pair(op, "stride", stride), _pair(op, "padding", padding), \
        _pair(op, "dilation", dilation)


def _pool_input(op, name, x):
    x = _operand(op, name, x)
    _C.pool2d_check_input(op, name, x.shape)
    return x


def _input_shape(op, shape):
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"[{op}] input_shape must be a sequence of ints, got {shape!r}") from None
    _C.pool2d_check_input(op, "input_shape", shape)
    return shape


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """torch.nn.functional.max_pool2d(..., return_indices=True) -> (y, indices).

    indices (int64, y's shape) are flat, h * W + w, within each (n, c) plane, as torch.
    stride defaults to kernel_size. A window lying wholly in padding (possible only
    with dilation; torch returns an index outside the plane there) gives -inf and -1.
    """
    op = "max_pool2d"
    x = _pool_input(op, "x", x)
    k, s, p, d = _pool_window(op, kernel_size, stride, padding, dilation)
    oh, ow = _C.pool2d_output_shape(op, "x", x.shape, k, s, p, d, bool(ceil_mode))
    y = _empty(x, tuple(x.shape[:-2]) + (oh, ow))
    indices = _empty(x, y.shape, np.int64)
    _C.max_pool2d(x, y, indices, k, s, p, d, bool(ceil_mode))
    return y, indices


def max_pool2d_backward(dy, indices, input_shape):
    """dx (input_shape) of max_pool2d: each dy added at the input element its index names."""
    op = "max_pool2d_backward"
    dy = _pool_input(op, "dy", dy)
    dx = _empty(dy, _input_shape(op, input_shape))
    _C.max_pool2d_backward(dy, indices, dx)
    return dx


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """torch.nn.functional.avg_pool2d: each window's mean; the divisor is the window's size
    clipped to the padded input (count_include_pad) or its count of input elements."""
    op = "avg_pool2d"
    x = _pool_input(op, "x", x)
    k, s, p, _ = _pool_window(op, kernel_size, stride, padding)
    oh, ow = _C.pool2d_output_shape(op, "x", x.shape, k, s, p, (1, 1), bool(ceil_mode))
    y = _empty(x, tuple(x.shape[:-2]) + (oh, ow))
    _C.avg_pool2d(x, y, k, s, p, bool(ceil_mode), bool(count_include_pad))
    return y


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """dx (input_shape) of avg_pool2d with the same window arguments."""
    op = "avg_pool2d_backward"
    dy = _pool_input(op, "dy", dy)
    k, s, p, _ = _pool_window(op, kernel_size, stride, padding)
    shape = _input_shape(op, input_shape)
    _C.pool2d_output_shape(op, "input_shape", shape, k, s, p, (1, 1), bool(ceil_mode))  # a window that fits
    dx = _empty(dy, shape)
    _C.avg_pool2d_backward(dy, dx, k, s, p, bool(ceil_mode), bool(count_include_pad))
    return dx


def global_avg_pool2d(x):
    """The mean of each (H, W) plane, keeping the dimensions: (N, C, 1, 1) or (C, 1, 1),
    as torch.nn.functional.adaptive_avg_pool2d(x, 1)."""
    op = "global_avg_pool2d"
    x = _pool_input(op, "x", x)
    y = _empty(x, tuple(x.shape[:-2]) + (1, 1))
    _C.global_avg_pool2d(x, y)
    return y


def global_avg_pool2d_backward(dy, input_shape):
    """dx (input_shape) of global_avg_pool2d: dy / (H * W) over each plane."""
    op = "global_avg_pool2d_backward"
    dy = _pool_input(op, "dy", dy)
    dx = _empty(dy, _input_shape(op, input_shape))
    _C.global_avg_pool2d_backward(dy, dx)
    return dx


# -- convolution ------------------------------------------------------------------
# x is (N, C, H, W) or unbatched (C, H, W), w (K, C / groups, kH, kW), as torch;
# stride, padding and dilation an int or an (h, w) pair, padding also "same" or
# "valid". The bindings check every rule torch checks and compute the output
# shape (_C.conv2d_output_shape), "same"'s asymmetric padding included.

def _conv_args(op, stride, padding, dilation, groups):
    """(stride, padding, dilation, groups, same) as the bindings take them."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"[{op}] padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
        pad, same = (0, 0), padding == "same"
    else:
        pad, same = _pair(op, "padding", padding), False
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"[{op}] groups must be an int, got {groups!r}")
    if not 1 <= groups < 2**63:
        raise ValueError(f"[{op}] groups must be >= 1, got {groups}")
    return _pair(op, "stride", stride), pad, _pair(op, "dilation", dilation), int(groups), same


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, tf32=False):
    """torch.nn.functional.conv2d (a cross-correlation): x (N, C, H, W) or (C, H, W),
    w (K, C / groups, kH, kW), b (K,) or None -> y (N, K, oH, oW) or (K, oH, oW).

    padding: an int, an (h, w) pair, "valid" (0) or "same" (stride 1; output size =
    input size, the odd padding of an even dilated kernel at the bottom / right, as torch).
    CUDA arrays run on the GPU, y from their library; tf32 as in gemm.
    """
    op = "conv2d"
    x, w = _input(op, "x", x), _input(op, "w", w)
    if b is not None:
        b = _input(op, "b", b)
    args = _conv_args(op, stride, padding, dilation, groups)
    y = _empty(x, _C.conv2d_output_shape(op, tuple(x.shape), tuple(w.shape), *args))
    _C.conv2d(x, w, b, y, *args, bool(tf32))
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, bias=True, *, tf32=False):
    """Gradients of conv2d: (dx, dw, db) with the shapes of x, w and the bias (K,);
    db is None when bias=False. dy has the forward output's shape. CUDA arrays run
    on the GPU (deterministic: no atomics); tf32 as in gemm."""
    op = "conv2d_backward"
    dy, x, w = (_input(op, n, v) for n, v in (("dy", dy), ("x", x), ("w", w)))
    args = _conv_args(op, stride, padding, dilation, groups)
    _C.conv2d_output_shape(op, tuple(x.shape), tuple(w.shape), *args)  # x and w checked before anything is allocated
    dx, dw = _empty(dy, x.shape), _empty(dy, w.shape)
    db = _empty(dy, w.shape[:1]) if bias else None
    _C.conv2d_backward(dy, x, w, dx, dw, db, *args, bool(tf32))
    return dx, dw, db


# -- batch norm -----------------------------------------------------------------

def batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm over x (N, C, *), returning (y, save_mean, save_invstd).

    weight, bias: (C,) or None. training: normalise with the batch mean and biased
    variance and update running_mean / running_var (both (C,) arrays written in place,
    or both None) with momentum and the unbiased variance, as torch; an empty batch
    leaves them unchanged. Otherwise normalise with the running statistics.
    save_mean and save_invstd = 1 / sqrt(var + eps) are the statistics used, for
    batch_norm_backward. (momentum=None, torch's cumulative average, is the modules'
    business: they pass 1 / num_batches_tracked.)
    """
    op = "batch_norm"
    x = _operand(op, "x", x)
    if x.ndim < 2:
        raise ValueError(f"[{op}] x must be (N, C, *) with at least 2 dimensions, got shape {x.shape}")
    if momentum is None:
        raise TypeError(f"[{op}] momentum must be a float; BatchNorm modules turn momentum=None into "
                        "1 / num_batches_tracked")
    weight, bias = _cuda_input(op, "weight", weight), _cuda_input(op, "bias", bias)
    y = _empty(x, x.shape)
    save_mean, save_invstd = _empty(x, x.shape[1:2]), _empty(x, x.shape[1:2])
    _C.batch_norm(x, weight, bias, running_mean, running_var, y, save_mean, save_invstd, bool(training),
                  float(momentum), float(eps))
    return y, save_mean, save_invstd


def batch_norm_backward(dy, x, weight, save_mean, save_invstd, training=True):
    """Gradients of batch_norm: (dx, dweight, dbias) with dweight = sum(dy * xhat) and
    dbias = sum(dy) per channel (both None when weight is None, affine=False).

    training: the statistics were the batch's, so they are differentiated too (two
    passes over the data); False: they were constants (eval), dx = dy * weight * invstd.
    """
    op = "batch_norm_backward"
    x = _operand(op, "x", x)
    if x.ndim < 2:
        raise ValueError(f"[{op}] x must be (N, C, *) with at least 2 dimensions, got shape {x.shape}")
    dy, weight, save_mean, save_invstd = (_cuda_input(op, n, v) for n, v in (
        ("dy", dy), ("weight", weight), ("save_mean", save_mean), ("save_invstd", save_invstd)))
    dx = _empty(x, x.shape)
    dweight = dbias = None
    if weight is not None:
        dweight, dbias = _empty(x, x.shape[1:2]), _empty(x, x.shape[1:2])
    _C.batch_norm_backward(dy, x, weight, save_mean, save_invstd, dx, dweight, dbias, bool(training))
    return dx, dweight, dbias


# -- recurrent: LSTM and GRU -----------------------------------------------------
# PyTorch's gate order and weight shapes: w_ih (G * H, I), w_hh (G * H, H), b_ih,
# b_hh (G * H,) or None, with G = 4 for LSTM (gates i, f, g, o) and 3 for GRU
# (r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h).
#
# Cells, one step (x (B, I), states (B, H)):
#   lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh) -> (h_new, c_new, cache)
#   lstm_cell_backward(dh_new, dc_new, cache) -> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)
#   gru_cell(x, h, w_ih, w_hh, b_ih, b_hh) -> (h_new, cache)
#   gru_cell_backward(dh_new, cache) -> (dx, dh, dw_ih, dw_hh, db_ih, db_hh)
# Sequences, one layer over all T steps in one native call (x (T, B, I),
# time-major; initial states (B, H)): the input projection of every step is one
# GEMM before the recurrence, the weight gradients one GEMM after it.
#   lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh) -> (y, h_n, c_n, cache), y (T, B, H) the
#       hidden state after each step, h_n = y[-1] and c_n the final states
#   lstm_backward(dy, dh_n, dc_n, cache) -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)
#   gru(x, h0, w_ih, w_hh, b_ih, b_hh) -> (y, h_n, cache)
#   gru_backward(dy, dh_n, cache) -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)
# Initial states, biases and incoming gradients may be None (zeros; no bias);
# db_ih / db_hh are None where the forward had no such bias. The cache is an
# RnnCache: what backward needs (the inputs, by reference, not copied, and the
# activated gates), so the inputs must not be changed in place in between.

class RnnCache:
    """What an LSTM or GRU forward saved for its backward: the op, the inputs x,
    h0, c0, w_ih, w_hh (by reference), the states after each step (hs, cs), the
    activated gates (LSTM: i, f, g, o; GRU: r, z, n and hn = W_hn h + b_hn) and
    which biases there were."""
    __slots__ = ("op", "x", "h0", "c0", "w_ih", "w_hh", "hs", "cs", "gates", "has_b_ih", "has_b_hh")

    def __init__(self, op, x, h0, c0, w_ih, w_hh, hs, cs, gates, has_b_ih, has_b_hh):
        self.op, self.x, self.h0, self.c0, self.w_ih, self.w_hh = op, x, h0, c0, w_ih, w_hh
        self.hs, self.cs, self.gates, self.has_b_ih, self.has_b_hh = hs, cs, gates, has_b_ih, has_b_hh

    def __repr__(self):
        return f"RnnCache({self.op}, x={self.x.shape}, hidden={self.w_hh.shape[1]}, dtype={self.x.dtype})"


def _rnn_dims(x, w_ih, gates, cell):
    """(T, B, I, H) for allocating outputs; 0 where an argument is malformed, which
    the binding then reports by name before it looks at any output."""
    want = 2 if cell else 3
    t, b, i = ((1,) + tuple(x.shape) if cell else tuple(x.shape)) if x.ndim == want else (0, 0, 0)
    h = w_ih.shape[0] // gates if hasattr(w_ih, "ndim") and w_ih.ndim == 2 else 0
    return t, b, i, h


def _new_like(x, shape, zeros=False):
    """An uninitialised (or zero) C-contiguous array of `shape` and x's dtype, from x's
    array module (numpy, or a CUDA array's library, on x's device)."""
    if isinstance(x, np.ndarray):
        return np.zeros(shape, dtype=_out_dtype(x)) if zeros else _host_empty(shape, _out_dtype(x))
    if hasattr(x, "new_empty"):  # torch: new tensors on x's device
        return x.new_zeros(shape) if zeros else x.new_empty(shape)
    xp = sys.modules[type(x).__module__.partition(".")[0]]
    return (xp.zeros if zeros else xp.empty)(shape, dtype=x.dtype)


def _copy(a):
    """A copy of a, from a's own library (torch tensors copy with clone)."""
    return a.clone() if hasattr(a, "clone") else a.copy()


def _rnn_empty(op, x, shape):
    """An output of x's sizes; numpy's "array is too big" becomes the op's ValueError."""
    try:
        return _new_like(x, shape)
    except ValueError:
        raise ValueError(f"[{op}] an output of shape {shape} (from x and w_ih) overflows the address space") from None


def _rnn_state(op, name, s, x, b, h):
    """An initial state, or zeros (B, H) of x's dtype and device for None."""
    return _new_like(x, (b, h), zeros=True) if s is None else _operand(op, name, s)


def _rnn_forward(op, gates, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    cell = op.endswith("_cell")
    names = ("h", "c") if cell else ("h0", "c0")
    x = _operand(op, "x", x)
    w_ih, w_hh = _operand(op, "w_ih", w_ih), _operand(op, "w_hh", w_hh)
    b_ih = None if b_ih is None else _operand(op, "b_ih", b_ih)
    b_hh = None if b_hh is None else _operand(op, "b_hh", b_hh)
    t, b, _, h = _rnn_dims(x, w_ih, gates, cell)
    h0 = _rnn_state(op, names[0], h0, x, b, h)
    lead = (b,) if cell else (t, b)
    if cell:
        hs = _rnn_empty(op, x, lead + (h,))
    else:
        # h0 copied in right before hs[0]: backward's dw_hh = dA^T [h0; hs[:-1]] is
        # then one GEMM (a malformed h0 is left for the binding to report).
        states = _rnn_empty(op, x, (t + 1, b, h))
        hs = states[1:]
        if tuple(h0.shape) == (b, h) and h0.dtype == hs.dtype:
            states[0] = h0
            h0 = states[0]
    g = _rnn_empty(op, x, lead + (4 * h,))
    if gates == 4:
        c0 = _rnn_state(op, names[1], c0, x, b, h)
        cs = _rnn_empty(op, x, lead + (h,))
        getattr(_C, op)(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, g)
    else:
        cs = None
        getattr(_C, op)(x, h0, w_ih, w_hh, b_ih, b_hh, hs, g)
    return hs, cs, RnnCache(op, x, h0, c0, w_ih, w_hh, hs, cs, g, b_ih is not None, b_hh is not None)


def _rnn_backward(op, dy, dh_n, dc_n, cache, state_grads=True):
    fwd = op.removesuffix("_backward")
    if not isinstance(cache, RnnCache) or cache.op != fwd:
        raise TypeError(f"[{op}] cache must be the RnnCache that {fwd} returned, got "
                        f"{cache if isinstance(cache, RnnCache) else type(cache).__name__}")
    c = cache
    # Gradients of the cache's kind (numpy or the CUDA arrays' library) and dtype.
    dx = _new_like(c.x, tuple(c.x.shape))
    dh0 = _new_like(c.x, tuple(c.h0.shape))
    dw_ih, dw_hh = _new_like(c.x, tuple(c.w_ih.shape)), _new_like(c.x, tuple(c.w_hh.shape))
    db_ih = _new_like(c.x, tuple(c.w_ih.shape[:1])) if c.has_b_ih else None
    db_hh = _new_like(c.x, tuple(c.w_ih.shape[:1])) if c.has_b_hh else None
    grads = (dw_ih, dw_hh, db_ih, db_hh)
    # Without state_grads the kernels still carry dh (and dc) through dh0 (dc0) but
    # skip the product that only dh0 needs; the caller gets None for them.
    state_grads = bool(state_grads)
    if c.cs is not None:  # LSTM
        dc0 = _new_like(c.x, tuple(c.c0.shape))
        getattr(_C, op)(dy, dh_n, dc_n, c.x, c.h0, c.c0, c.w_ih, c.w_hh, c.hs, c.cs, c.gates, dx, dh0, dc0, *grads,
                        state_grads)
        return (dx,) + ((dh0, dc0) if state_grads else (None, None)) + grads
    getattr(_C, op)(dy, dh_n, c.x, c.h0, c.w_ih, c.w_hh, c.hs, c.gates, dx, dh0, *grads, state_grads)
    return (dx, dh0 if state_grads else None) + grads


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step (torch.nn.LSTMCell's math): x (B, I), h, c (B, H) or None (zeros)
    -> (h_new, c_new, cache); gates i, f, g, o = x w_ih^T + b_ih + h w_hh^T + b_hh,
    c_new = sigmoid(f) c + sigmoid(i) tanh(g), h_new = sigmoid(o) tanh(c_new)."""
    h_new, c_new, cache = _rnn_forward("lstm_cell", 4, x, h, c, w_ih, w_hh, b_ih, b_hh)
    return h_new, c_new, cache


def lstm_cell_backward(dh_new, dc_new, cache, state_grads=True):
    """Gradients of lstm_cell from dh_new, dc_new (B, H) (either may be None: zero):
    (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh), db_* None where the forward had no bias.
    state_grads=False: dh and dc come back None, and the product dA w_hh that only dh
    needs is skipped (a caller that passed no state has no use for them)."""
    return _rnn_backward("lstm_cell_backward", dh_new, None, dc_new, cache, state_grads)


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (torch.nn.GRUCell's math): x (B, I), h (B, H) or None (zeros) -> (h_new, cache)."""
    h_new, _, cache = _rnn_forward("gru_cell", 3, x, h, None, w_ih, w_hh, b_ih, b_hh)
    return h_new, cache


def gru_cell_backward(dh_new, cache, state_grads=True):
    """Gradients of gru_cell from dh_new (B, H): (dx, dh, dw_ih, dw_hh, db_ih, db_hh);
    state_grads=False: dh comes back None and its product is skipped."""
    return _rnn_backward("gru_cell_backward", dh_new, None, None, cache, state_grads)


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM layer over a whole sequence: x (T, B, I), h0, c0 (B, H) or None (zeros)
    -> (y, h_n, c_n, cache), y (T, B, H) the hidden state after every step."""
    y, cs, cache = _rnn_forward("lstm", 4, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    if y.shape[0] == 0:
        return y, _copy(cache.h0), _copy(cache.c0), cache
    return y, _copy(y[-1]), _copy(cs[-1]), cache


def lstm_backward(dy, dh_n, dc_n, cache, state_grads=True):
    """Backward through time of lstm from dy (T, B, H), the gradient of y, and dh_n,
    dc_n (B, H), those of the final states (each may be None: zero):
    (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh). state_grads=False: dh0 and dc0 come
    back None, and the first step's product dA_0 w_hh, which only dh0 needs, is skipped."""
    return _rnn_backward("lstm_backward", dy, dh_n, dc_n, cache, state_grads)


def gru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU layer over a whole sequence: x (T, B, I), h0 (B, H) or None -> (y, h_n, cache)."""
    y, _, cache = _rnn_forward("gru", 3, x, h0, None, w_ih, w_hh, b_ih, b_hh)
    return y, _copy(y[-1] if y.shape[0] else cache.h0), cache


def gru_backward(dy, dh_n, cache, state_grads=True):
    """Backward through time of gru from dy (T, B, H) and dh_n (B, H) (each may be None):
    (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); state_grads=False: dh0 comes back None and
    its product is skipped."""
    return _rnn_backward("gru_backward", dy, dh_n, None, cache, state_grads)
