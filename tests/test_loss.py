"""Losses: cross_entropy (fused log-softmax + NLL) and mse, forward and backward,
against the float64 references, float64 finite differences and PyTorch (when
installed), with every reduction, and their argument errors.
Run under each ISA with DEEPKERN_ISA=generic / avx2."""
import types

import numpy as np
import pytest

import reference as ref
from deepkern import _C, ops
from helpers import DTYPES, assert_close, assert_grad, randn, requires_gpu, rng, to_cpu, to_gpu, torch_or_skip

REDUCTIONS = ["none", "mean", "sum"]
# (N, C): single row/class, odd and vector-width-straddling sizes, and one past
# the threading threshold
CE_SHAPES = [(1, 1), (1, 7), (5, 3), (7, 15), (17, 33), (33, 17), (3, 1000), (400, 101)]


def logits_and_labels(gen, n, c, dtype, scale=3.0):
    return (gen.standard_normal((n, c)) * scale).astype(dtype), gen.integers(0, c, n)


def reduced_scale(n, reduction):
    """Absolute error allowance of a sum over n items (the mean divides it again)."""
    return np.sqrt(n) + 1 if reduction == "sum" else 1.0


@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_reference(shape, reduction, dtype):
    gen = rng(1)
    x, labels = logits_and_labels(gen, *shape, dtype)
    loss = ops.cross_entropy(x, labels, reduction=reduction)
    expect = ref.cross_entropy(x, labels, reduction)
    if reduction == "none":
        assert loss.shape == (shape[0],) and loss.dtype == dtype
    else:
        assert isinstance(loss, float)
    assert_close(np.asarray(loss), expect, dtype, scale=reduced_scale(shape[0], reduction) * np.log(shape[1] + 1),
                 name=f"cross_entropy {reduction}")
    grad = gen.standard_normal(shape[0]).astype(dtype) if reduction == "none" else 0.7
    d = ops.cross_entropy_backward(x, labels, reduction=reduction, grad=grad)
    assert d.shape == x.shape and d.dtype == dtype
    assert_close(d, ref.cross_entropy_backward(x, labels, reduction, grad), dtype,
                 name=f"cross_entropy_backward {reduction}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_finite_differences(reduction):
    gen = rng(2)
    x, labels = logits_and_labels(gen, 6, 5, np.float64)
    w = gen.standard_normal(6) if reduction == "none" else 1.3  # the upstream gradient

    def f():
        return float(np.sum(np.asarray(ops.cross_entropy(x, labels, reduction)) * w))

    assert_grad(ops.cross_entropy_backward(x, labels, reduction, grad=w), f, x, name=reduction)


def test_cross_entropy_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [3e4, 3e4, 3e4], [-1e4, -1e4 + 1, 0.0]])
    labels = np.array([0, 2, 1])
    for dtype in DTYPES:
        loss = ops.cross_entropy(x.astype(dtype), labels, reduction="none")
        assert np.isfinite(loss).all()
        assert_close(loss, ref.cross_entropy(x, labels, "none"), dtype)
        d = ops.cross_entropy_backward(x.astype(dtype), labels, "sum")
        assert_close(d, ref.cross_entropy_backward(x, labels, "sum"), dtype)


def test_cross_entropy_label_dtypes_and_enum():
    gen = rng(3)
    x, labels = logits_and_labels(gen, 9, 4, np.float32)
    expect = ref.cross_entropy(x, labels)
    for ldt in (np.int8, np.uint8, np.int32, np.uint32, np.int64):
        assert_close(np.asarray(ops.cross_entropy(x, labels.astype(ldt))), expect, np.float32)
    assert_close(np.asarray(ops.cross_entropy(x, list(labels))), expect, np.float32)
    out = np.empty(1, np.float32)  # shape (1,) is accepted for a reduced result too
    _C.cross_entropy(x, labels, out, _C.Reduction.mean)
    assert_close(out[0], expect, np.float32)


def test_cross_entropy_empty_batch():
    x, labels = np.empty((0, 5), np.float32), np.empty(0, np.int64)
    assert ops.cross_entropy(x, labels, reduction="none").shape == (0,)
    assert ops.cross_entropy(x, labels, reduction="sum") == 0.0
    assert np.isnan(ops.cross_entropy(x, labels, reduction="mean"))  # 0 / 0, as torch
    assert ops.cross_entropy_backward(x, labels).shape == (0, 5)


def test_cross_entropy_is_thread_invariant():
    x, labels = logits_and_labels(rng(8), 2000, 37, np.float32)  # past the threading threshold
    threads = _C.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            _C.set_num_threads(n)
            results.append((ops.cross_entropy(x, labels, "sum"), ops.cross_entropy_backward(x, labels, "sum")))
        for loss, grad in results[1:]:
            assert loss == results[0][0] and np.array_equal(grad, results[0][1])
    finally:
        _C.set_num_threads(threads)


def test_cross_entropy_matches_torch():
    torch = torch_or_skip()
    gen = rng(4)
    for dtype in DTYPES:
        for reduction in REDUCTIONS:
            x, labels = logits_and_labels(gen, 37, 11, dtype, scale=6.0)
            t = torch.tensor(x, requires_grad=True)
            tl = torch.nn.functional.cross_entropy(t, torch.tensor(labels), reduction=reduction)
            g = gen.standard_normal(37).astype(dtype) if reduction == "none" else np.asarray(0.5, dtype)
            (tdx,) = torch.autograd.grad(tl, t, torch.tensor(g))
            assert_close(np.asarray(ops.cross_entropy(x, labels, reduction)), tl.detach().numpy(), dtype, scale=7)
            assert_close(ops.cross_entropy_backward(x, labels, reduction, grad=g), tdx.numpy(), dtype)


def test_cross_entropy_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[cross_entropy\] labels\[1\] = 4 is not a class in \[0, 4\)"):
        ops.cross_entropy(x, [0, 4, 1])
    with pytest.raises(ValueError, match=r"labels\[2\] = -1 is not a class"):
        ops.cross_entropy_backward(x, np.array([0, 1, -1]))
    out = np.full(3, 7.0, np.float32)
    with pytest.raises(ValueError, match="labels"):
        _C.cross_entropy(x, np.array([0, 9, 1]), out, "none")
    assert (out == 7.0).all()  # checked before anything is written
    with pytest.raises(TypeError, match=r"\[cross_entropy\] labels must be an integer array, got float32"):
        ops.cross_entropy(x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"\[cross_entropy\] labels must have shape \(3,\), got \(4,\)"):
        ops.cross_entropy(x, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"\[cross_entropy\] logits must be 2-D, got shape \(3, 4, 1\)"):
        ops.cross_entropy(x[..., None], np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"\[cross_entropy\] logits must be float32 or float64, got int64"):
        ops.cross_entropy(np.zeros((3, 4), np.int64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        ops.cross_entropy(x, np.zeros(3, np.int64), reduction="avg")
    with pytest.raises(TypeError, match=r"\[cross_entropy_backward\] dout \(grad\) has dtype float64, expected"):
        ops.cross_entropy_backward(x, np.zeros(3, np.int64), "none", grad=np.ones(3))
    with pytest.raises(ValueError, match=r"dout \(grad\) must have shape \(\) or \(1,\)"):
        ops.cross_entropy_backward(x, np.zeros(3, np.int64), "mean", grad=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"\[cross_entropy\] out must have shape \(3,\), got \(\)"):
        _C.cross_entropy(x, np.zeros(3, np.int64), np.empty((), np.float32), "none")


# -- mse ----------------------------------------------------------------------------------

MSE_SHAPES = [(1,), (7,), (15,), (17,), (33,), (1000,), (3, 5, 7), (200_003,)]


@pytest.mark.parametrize("shape", MSE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_matches_reference(shape, reduction, dtype):
    gen = rng(5)
    p, t = gen.standard_normal(shape).astype(dtype), gen.standard_normal(shape).astype(dtype)
    loss = ops.mse(p, t, reduction=reduction)
    if reduction == "none":
        assert loss.shape == shape and loss.dtype == dtype
    else:
        assert isinstance(loss, float)
    n = int(np.prod(shape))
    assert_close(np.asarray(loss), ref.mse(p, t, reduction), dtype, scale=reduced_scale(n, reduction),
                 name=f"mse {reduction}")
    grad = gen.standard_normal(shape).astype(dtype) if reduction == "none" else -1.5
    d = ops.mse_backward(p, t, reduction=reduction, grad=grad)
    assert d.shape == shape and d.dtype == dtype
    assert_close(d, ref.mse_backward(p, t, reduction, grad), dtype, name=f"mse_backward {reduction}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_finite_differences(reduction):
    gen = rng(6)
    p, t = gen.standard_normal((4, 5)), gen.standard_normal((4, 5))
    w = gen.standard_normal((4, 5)) if reduction == "none" else 0.8
    assert_grad(ops.mse_backward(p, t, reduction, grad=w),
                lambda: float(np.sum(np.asarray(ops.mse(p, t, reduction)) * w)), p, name=reduction)


def test_mse_matches_torch_and_is_thread_invariant():
    torch = torch_or_skip()
    gen = rng(7)
    for dtype in DTYPES:
        p, t = gen.standard_normal(70_001).astype(dtype), gen.standard_normal(70_001).astype(dtype)
        for reduction in REDUCTIONS:
            tp = torch.tensor(p, requires_grad=True)
            tl = torch.nn.functional.mse_loss(tp, torch.tensor(t), reduction=reduction)
            (tdx,) = torch.autograd.grad(tl, tp, torch.ones_like(tl))
            assert_close(np.asarray(ops.mse(p, t, reduction)), tl.detach().numpy(), dtype, scale=300)
            assert_close(ops.mse_backward(p, t, reduction), tdx.numpy(), dtype)
    # blocks are summed in index order: the same bits for any thread count
    threads = _C.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            _C.set_num_threads(n)
            results.append(ops.mse(p, t, "sum"))
        assert results[0] == results[1] == results[2]
    finally:
        _C.set_num_threads(threads)


def test_mse_empty_and_errors():
    e = np.empty((0, 3))
    assert ops.mse(e, e, "none").shape == (0, 3)
    assert ops.mse(e, e, "sum") == 0.0
    assert np.isnan(ops.mse(e, e, "mean"))
    assert ops.mse_backward(e, e).shape == (0, 3)
    a32, a64 = np.ones(4, np.float32), np.ones(4)
    with pytest.raises(TypeError, match=r"\[mse\] target has dtype float64, expected float32"):
        ops.mse(a32, a64)
    with pytest.raises(ValueError, match=r"\[mse\] target must have shape \(4,\), got \(5,\)"):
        ops.mse(a64, np.ones(5))
    with pytest.raises(ValueError, match=r"\[mse_backward\] dout \(grad\) must have shape \(4,\), got \(3,\)"):
        ops.mse_backward(a64, a64, "none", grad=np.ones(3))
    with pytest.raises(TypeError, match=r"\[mse\] reduction must be a string or _C.Reduction"):
        ops.mse(a64, a64, reduction=1)
    with pytest.raises(TypeError, match=r"\[mse_backward\] grad must be a real number"):
        ops.mse_backward(a64, a64, grad="1")


# -- binary_cross_entropy_with_logits -----------------------------------------------------

BCE_SHAPES = [(1,), (7,), (5, 3), (17, 33), (4, 3, 5), (300, 101)]


def bce_inputs(gen, shape, dtype, pos_weight):
    x = (gen.standard_normal(shape) * 4).astype(dtype)
    t = gen.uniform(0, 1, shape).astype(dtype)  # soft targets, as torch allows
    w = gen.uniform(0.2, 3.0, shape[-1]).astype(dtype) if pos_weight else None
    return x, t, w


@pytest.mark.parametrize("shape", BCE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_matches_reference(shape, reduction, pos_weight, dtype):
    gen = rng(11)
    x, t, w = bce_inputs(gen, shape, dtype, pos_weight)
    loss = ops.binary_cross_entropy_with_logits(x, t, reduction, pos_weight=w)
    n = int(np.prod(shape))
    assert_close(np.asarray(loss), ref.binary_cross_entropy_with_logits(x, t, reduction, w), dtype,
                 scale=4 * reduced_scale(n, reduction), name=f"bce {reduction}")
    grad = gen.standard_normal(shape).astype(dtype) if reduction == "none" else 0.6
    d = ops.binary_cross_entropy_with_logits_backward(x, t, reduction, pos_weight=w, grad=grad)
    assert d.shape == shape and d.dtype == dtype
    assert_close(d, ref.binary_cross_entropy_with_logits_backward(x, t, reduction, w, grad), dtype,
                 scale=3, name=f"bce backward {reduction}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_finite_differences(reduction):
    gen = rng(12)
    x, t, w = bce_inputs(gen, (4, 5), np.float64, True)
    g = gen.standard_normal((4, 5)) if reduction == "none" else 1.1
    f = lambda: float(np.sum(np.asarray(ops.binary_cross_entropy_with_logits(x, t, reduction, w)) * g))  # noqa
    assert_grad(ops.binary_cross_entropy_with_logits_backward(x, t, reduction, w, grad=g), f, x, name=reduction)


def test_bce_with_logits_is_stable_for_huge_logits():
    x = np.array([1e4, -1e4, 80.0, -80.0, 0.0])
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.5])
    for dtype in DTYPES:
        loss = ops.binary_cross_entropy_with_logits(x.astype(dtype), t.astype(dtype), "none")
        assert np.isfinite(loss).all()
        assert_close(loss, ref.binary_cross_entropy_with_logits(x, t, "none"), dtype)


def test_bce_with_logits_matches_torch():
    torch = torch_or_skip()
    gen = rng(13)
    for dtype in DTYPES:
        for reduction in REDUCTIONS:
            x, t, w = bce_inputs(gen, (9, 6), dtype, True)
            tx = torch.tensor(x, requires_grad=True)
            tl = torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.tensor(t), reduction=reduction,
                                                                      pos_weight=torch.tensor(w))
            (tdx,) = torch.autograd.grad(tl, tx, torch.ones_like(tl))
            assert_close(np.asarray(ops.binary_cross_entropy_with_logits(x, t, reduction, w)),
                         tl.detach().numpy(), dtype, scale=10)
            assert_close(ops.binary_cross_entropy_with_logits_backward(x, t, reduction, w), tdx.numpy(), dtype)


def test_bce_with_logits_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[binary_cross_entropy_with_logits\] target must have shape \(3, 4\)"):
        ops.binary_cross_entropy_with_logits(x, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3,\) does not broadcast"):
        ops.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"pos_weight has dtype float64, expected float32"):
        ops.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(4))
    assert_close(np.asarray(ops.binary_cross_entropy_with_logits(x, x, pos_weight=np.float32(2.0))),
                 ref.binary_cross_entropy_with_logits(x, x, pos_weight=2.0), np.float32)  # broadcast scalar


# -- multi_margin (multi-class hinge) -----------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3), (17, 33), (400, 10)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p,margin,weighted", [(1, 1.0, False), (2, 1.0, False), (1, 0.5, True), (2, 2.0, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_margin_matches_reference(shape, reduction, p, margin, weighted, dtype):
    gen = rng(14)
    x, labels = logits_and_labels(gen, *shape, dtype, scale=1.0)
    w = gen.uniform(0.1, 2, shape[1]).astype(dtype) if weighted else None
    loss = ops.multi_margin(x, labels, reduction, p=p, margin=margin, weight=w)
    assert_close(np.asarray(loss), ref.multi_margin(x, labels, reduction, p, margin, w), dtype,
                 scale=4 * reduced_scale(shape[0], reduction))
    grad = gen.standard_normal(shape[0]).astype(dtype) if reduction == "none" else 0.9
    d = ops.multi_margin_backward(x, labels, reduction, p=p, margin=margin, weight=w, grad=grad)
    assert_close(d, ref.multi_margin_backward(x, labels, reduction, p, margin, w, grad), dtype, scale=4)


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_finite_differences(p):
    gen = rng(15)
    x, labels = logits_and_labels(gen, 5, 4, np.float64, scale=1.0)
    w = gen.uniform(0.5, 2, 4)
    f = lambda: ops.multi_margin(x, labels, "sum", p=p, margin=0.7, weight=w)  # noqa: E731
    assert_grad(ops.multi_margin_backward(x, labels, "sum", p=p, margin=0.7, weight=w), f, x)


def test_multi_margin_matches_torch_and_takes_one_row():
    torch = torch_or_skip()
    gen = rng(16)
    for dtype in DTYPES:
        for reduction in REDUCTIONS:
            x, labels = logits_and_labels(gen, 13, 7, dtype, scale=1.0)
            w = gen.uniform(0.1, 2, 7).astype(dtype)
            tx = torch.tensor(x, requires_grad=True)
            tl = torch.nn.functional.multi_margin_loss(tx, torch.tensor(labels), p=2, margin=0.8,
                                                       weight=torch.tensor(w), reduction=reduction)
            (tdx,) = torch.autograd.grad(tl, tx, torch.ones_like(tl))
            assert_close(np.asarray(ops.multi_margin(x, labels, reduction, 2, 0.8, w)), tl.detach().numpy(), dtype,
                         scale=4)
            assert_close(ops.multi_margin_backward(x, labels, reduction, 2, 0.8, w), tdx.numpy(), dtype)
    x = gen.standard_normal(5)
    tl = torch.nn.functional.multi_margin_loss(torch.tensor(x), torch.tensor(3))
    assert_close(np.asarray(ops.multi_margin(x, 3)), tl.numpy(), np.float64)
    assert ops.multi_margin_backward(x, 3).shape == (5,)


def test_multi_margin_errors():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[multi_margin\] labels\[1\] = 4 is not a class in \[0, 4\)"):
        ops.multi_margin(x, [0, 4, 1])
    with pytest.raises(ValueError, match=r"\[multi_margin\] p must be 1 or 2, got 3"):
        ops.multi_margin(x, [0, 1, 1], p=3)
    with pytest.raises(ValueError, match=r"\[multi_margin\] weight must have shape \(4,\)"):
        ops.multi_margin(x, [0, 1, 1], weight=np.ones(3))
    with pytest.raises(ValueError, match=r"\[multi_margin\] x is one row"):
        ops.multi_margin(np.zeros(4), [0, 1])
    with pytest.raises(ValueError, match=r"\[multi_margin\] margin must be finite"):
        ops.multi_margin(x, [0, 1, 1], margin=float("nan"))


def test_loss_modules_match_ops():
    from deepkern import nn
    gen = rng(17)
    x, t, w = bce_inputs(gen, (6, 3), np.float64, True)
    m = nn.BCEWithLogitsLoss(pos_weight=w)
    assert m(x, t) == ops.binary_cross_entropy_with_logits(x, t, pos_weight=w)
    assert np.array_equal(m.backward(), ops.binary_cross_entropy_with_logits_backward(x, t, pos_weight=w))
    assert list(m.state_dict()) == ["pos_weight"]
    x, labels = logits_and_labels(gen, 6, 3, np.float64)
    h = nn.MultiMarginLoss(p=2, margin=0.5, reduction="sum")
    assert h(x, labels) == ops.multi_margin(x, labels, "sum", 2, 0.5)
    assert np.array_equal(h.backward(2.0), ops.multi_margin_backward(x, labels, "sum", 2, 0.5, grad=2.0))
    with pytest.raises(ValueError, match=r"\[MultiMarginLoss\] p must be 1 or 2"):
        nn.MultiMarginLoss(p=3)


# -- CUDA: the same losses on the GPU against the CPU kernels and the reference ----------

def _gpu_grad(grad):
    return to_gpu(grad) if isinstance(grad, np.ndarray) else grad


@requires_gpu
@pytest.mark.parametrize("shape", CE_SHAPES + [(1, 300), (5000, 10)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_cross_entropy_matches_cpu(shape, reduction, dtype):
    gen = rng(31)
    x, labels = logits_and_labels(gen, *shape, dtype)
    scale = reduced_scale(shape[0], reduction) * np.log(shape[1] + 1)
    loss = ops.cross_entropy(to_gpu(x), to_gpu(labels), reduction=reduction)
    assert_close(np.asarray(to_cpu(loss)), ref.cross_entropy(x, labels, reduction), dtype, scale=scale)
    assert_close(np.asarray(to_cpu(loss)), np.asarray(ops.cross_entropy(x, labels, reduction)), dtype, scale=scale)
    if reduction != "none":  # one block adds the row losses in a fixed order
        assert ops.cross_entropy(to_gpu(x), to_gpu(labels), reduction=reduction) == loss
    grad = gen.standard_normal(shape[0]).astype(dtype) if reduction == "none" else 0.7
    d = to_cpu(ops.cross_entropy_backward(to_gpu(x), to_gpu(labels), reduction, _gpu_grad(grad)))
    assert_close(d, ref.cross_entropy_backward(x, labels, reduction, grad), dtype)
    assert_close(d, ops.cross_entropy_backward(x, labels, reduction, grad), dtype)


@requires_gpu
def test_gpu_strided_inputs_are_copied_as_on_the_cpu():
    gen = rng(35)
    x, labels = logits_and_labels(gen, 6, 10, np.float32)
    sx, sl = x[::2, ::2], labels[::2] % 5  # read-only views: copied, not rejected
    gx, gl = to_gpu(x)[::2, ::2], to_gpu(np.repeat(sl, 2))[::2]
    assert_close(ops.cross_entropy(gx, gl), ops.cross_entropy(sx, sl), np.float32, scale=4)
    assert_close(to_cpu(ops.cross_entropy_backward(gx, gl)), ops.cross_entropy_backward(sx, sl), np.float32)
    assert_close(ops.mse(gx, gx[:, ::-1]), ops.mse(sx, sx[:, ::-1]), np.float32, scale=4)


@requires_gpu
def test_gpu_labels_are_checked_as_on_the_cpu():
    x = np.zeros((4, 3), np.float32)
    for labels in (np.array([0, 1, 3, 2]), np.array([0, -1, 2, 5]), np.array([2, 1, 0, 7], np.int32)):
        for fn in (lambda a, l: ops.cross_entropy(a, l), lambda a, l: ops.cross_entropy_backward(a, l),
                   lambda a, l: ops.multi_margin(a, l), lambda a, l: ops.multi_margin_backward(a, l)):
            with pytest.raises(ValueError) as cpu_err:
                fn(x, labels)
            with pytest.raises(ValueError) as gpu_err:
                fn(to_gpu(x), to_gpu(labels))
            assert str(gpu_err.value) == str(cpu_err.value)
    assert np.isnan(ops.cross_entropy(to_gpu(np.zeros((0, 3), np.float32)), to_gpu(np.zeros(0, np.int64))))
    assert ops.cross_entropy(to_gpu(np.zeros((0, 3))), to_gpu(np.zeros(0, np.int64)), "sum") == 0.0


@requires_gpu
@pytest.mark.parametrize("shape", [(1,), (7,), (5, 3), (17, 33), (4, 3, 5), (300, 101), (1 << 20,), (0,)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_mse_matches_cpu(shape, reduction, dtype):
    gen = rng(32)
    pred, target = randn(gen, shape, dtype), randn(gen, shape, dtype)
    n = int(np.prod(shape))
    loss = ops.mse(to_gpu(pred), to_gpu(target), reduction)
    if n == 0 and reduction == "mean":
        assert np.isnan(loss)
    else:
        assert_close(np.asarray(to_cpu(loss)), ref.mse(pred, target, reduction), dtype,
                     scale=4 * reduced_scale(n, reduction))
        assert_close(np.asarray(to_cpu(loss)), np.asarray(ops.mse(pred, target, reduction)), dtype,
                     scale=4 * reduced_scale(n, reduction))
    if reduction != "none":
        assert ops.mse(to_gpu(pred), to_gpu(target), reduction) == loss or n == 0
    grad = randn(gen, shape, dtype) if reduction == "none" else 0.3
    d = to_cpu(ops.mse_backward(to_gpu(pred), to_gpu(target), reduction, _gpu_grad(grad)))
    assert_close(d, ref.mse_backward(pred, target, reduction, grad), dtype)
    assert_close(d, ops.mse_backward(pred, target, reduction, grad), dtype)


@requires_gpu
@pytest.mark.parametrize("shape", BCE_SHAPES + [(1, 1 << 18)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_bce_with_logits_matches_cpu(shape, reduction, pos_weight, dtype):
    gen = rng(33)
    x, t, w = bce_inputs(gen, shape, dtype, pos_weight)
    n = int(np.prod(shape))
    loss = ops.binary_cross_entropy_with_logits(to_gpu(x), to_gpu(t), reduction, pos_weight=to_gpu(w))
    for want in (ref.binary_cross_entropy_with_logits(x, t, reduction, w),
                 np.asarray(ops.binary_cross_entropy_with_logits(x, t, reduction, pos_weight=w))):
        assert_close(np.asarray(to_cpu(loss)), want, dtype, scale=4 * reduced_scale(n, reduction))
    grad = gen.standard_normal(shape).astype(dtype) if reduction == "none" else 0.6
    d = to_cpu(ops.binary_cross_entropy_with_logits_backward(to_gpu(x), to_gpu(t), reduction, to_gpu(w),
                                                             _gpu_grad(grad)))
    assert_close(d, ref.binary_cross_entropy_with_logits_backward(x, t, reduction, w, grad), dtype, scale=3)
    assert_close(d, ops.binary_cross_entropy_with_logits_backward(x, t, reduction, w, grad), dtype, scale=3)


@requires_gpu
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3), (17, 33), (400, 10), (3, 1000)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p,margin,weighted", [(1, 1.0, False), (2, 1.0, False), (1, 0.5, True), (2, 2.0, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_multi_margin_matches_cpu(shape, reduction, p, margin, weighted, dtype):
    gen = rng(34)
    x, labels = logits_and_labels(gen, *shape, dtype, scale=1.0)
    w = gen.uniform(0.1, 2, shape[1]).astype(dtype) if weighted else None
    loss = ops.multi_margin(to_gpu(x), to_gpu(labels), reduction, p=p, margin=margin, weight=to_gpu(w))
    for want in (ref.multi_margin(x, labels, reduction, p, margin, w),
                 np.asarray(ops.multi_margin(x, labels, reduction, p=p, margin=margin, weight=w))):
        assert_close(np.asarray(to_cpu(loss)), want, dtype, scale=4 * reduced_scale(shape[0], reduction))
    grad = gen.standard_normal(shape[0]).astype(dtype) if reduction == "none" else 0.9
    d = to_cpu(ops.multi_margin_backward(to_gpu(x), to_gpu(labels), reduction, p=p, margin=margin,
                                         weight=to_gpu(w), grad=_gpu_grad(grad)))
    assert_close(d, ref.multi_margin_backward(x, labels, reduction, p, margin, w, grad), dtype, scale=4)
    assert_close(d, ops.multi_margin_backward(x, labels, reduction, p=p, margin=margin, weight=w, grad=grad),
                 dtype, scale=4)


@pytest.mark.skipif(not _C.cuda_built, reason="deepkern was built without CUDA")
def test_cuda_arrays_are_checked_before_any_gpu_work():
    def f(shape, typestr="<f4"):  # only the CUDA array interface: rejected before any GPU work
        return types.SimpleNamespace(__cuda_array_interface__=dict(shape=shape, typestr=typestr, data=(0x1000, False),
                                                                   strides=None, version=3))
    with pytest.raises(TypeError, match=r"\[cross_entropy\] labels must be an int64 array, got a CUDA array"):
        _C.cross_entropy(f((2, 3)), f((2,), "<i4"), f(()), "mean")
    with pytest.raises(ValueError, match=r"\[cross_entropy\] labels must have shape \(2,\), got \(3,\)"):
        _C.cross_entropy(f((2, 3)), f((3,), "<i8"), f(()), "mean")
    with pytest.raises(ValueError, match=r"\[mse\] out must have shape \(\) or \(1,\) for a reduced loss"):
        _C.mse(f((4,)), f((4,)), f((4,)), "mean")
    with pytest.raises(ValueError, match=r"\[binary_cross_entropy_with_logits\] pos_weight must have shape \(3,\)"):
        _C.binary_cross_entropy_with_logits(f((4, 3)), f((4, 3)), f((2,)), f(()), "mean")
    with pytest.raises(TypeError, match=r"\[multi_margin\] weight is not a CUDA array but x is"):
        _C.multi_margin(f((4, 3)), f((4,), "<i8"), np.ones(3, np.float32), f(()), "mean", 1, 1.0)
