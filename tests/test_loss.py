"""Losses: cross_entropy (fused log-softmax + NLL) and mse, forward and backward,
against the float64 references, float64 finite differences and PyTorch (when
installed), with every reduction, and their argument errors.
Run under each ISA with DEEPKERN_ISA=generic / avx2."""
import numpy as np
import pytest

import reference as ref
from deepkern import _C, ops
from helpers import DTYPES, assert_close, assert_grad, rng, torch_or_skip

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
