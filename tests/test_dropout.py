"""Dropout: the native counter-based kernel (ops.dropout / dropout_backward) and the
Dropout module. The mask is random, so the checks are: y and dx follow from the
returned mask exactly; the kept fraction is 1 - p within a binomial bound; the mask
depends on the seed alone (not on the thread count); torch's edge cases (p = 0, p = 1,
NaN inputs). Run under each ISA with DEEPKERN_ISA=generic / avx2."""
import types

import numpy as np
import pytest

import deepkern
import reference as ref
from deepkern import _C, nn, ops
from helpers import DTYPES, assert_close, requires_gpu, rng, to_cpu, to_gpu

SHAPES = [(1,), (7,), (3, 5), (17, 33), (2, 3, 65), (300_001,)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_follows_its_mask(shape, p, dtype):
    x = rng(1).standard_normal(shape).astype(dtype)
    y, mask = ops.dropout(x, p, rng=123)
    assert y.shape == shape and y.dtype == dtype and mask.shape == shape and mask.dtype == np.bool_
    assert_close(y, ref.dropout(x, mask, p), dtype)
    dy = rng(2).standard_normal(shape).astype(dtype)
    assert_close(ops.dropout_backward(dy, mask, p), ref.dropout(dy, mask, p), dtype)
    if p == 0.0:
        assert mask.all()
    if p == 1.0:
        assert not mask.any() and not y.any()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_one_minus_p(p):
    n = 1_000_000
    _, mask = ops.dropout(np.ones(n, np.float32), p, rng=np.random.default_rng(5))
    kept = mask.mean()
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # 5 sigma of a binomial
    # neighbours independent: pairs of adjacent elements both kept (1 - p)^2 of the time
    both = (mask[:-1] & mask[1:]).mean()
    assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 / n)


def test_dropout_mask_depends_on_the_seed_only():
    x = rng(3).standard_normal(200_000).astype(np.float32)
    threads = _C.get_num_threads()
    try:
        masks = []
        for n in (1, 2, 3):
            _C.set_num_threads(n)
            masks.append(ops.dropout(x, 0.3, rng=42)[1])
    finally:
        _C.set_num_threads(threads)
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    assert not np.array_equal(masks[0], ops.dropout(x, 0.3, rng=43)[1])
    a = ops.dropout(x, 0.3, rng=np.random.default_rng(9))[1]
    assert np.array_equal(a, ops.dropout(x, 0.3, rng=np.random.default_rng(9))[1])
    deepkern.manual_seed(4)
    b = ops.dropout(x, 0.3)[1]
    deepkern.manual_seed(4)
    assert np.array_equal(b, ops.dropout(x, 0.3)[1])


def test_dropout_nan_and_empty_as_torch():
    x = np.full(1000, np.nan, np.float32)
    y, mask = ops.dropout(x, 0.5, rng=1)
    assert np.isnan(y).all()  # x * 0 for dropped elements, as torch
    y, mask = ops.dropout(np.empty((0, 3)), 0.5, rng=1)
    assert y.shape == (0, 3) and mask.shape == (0, 3)


def test_dropout_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"\[dropout\] p must be a probability in \[0, 1\]"):
        ops.dropout(x, 1.5)
    with pytest.raises(TypeError, match=r"\[dropout\] x must be float32 or float64, got int64"):
        ops.dropout(np.ones(4, np.int64), 0.5)
    with pytest.raises(TypeError, match=r"\[dropout\] rng must be a numpy Generator, an int seed or None"):
        ops.dropout(x, 0.5, rng="seed")
    with pytest.raises(TypeError, match=r"\[dropout_backward\] mask must be a bool \(or integer\) array, got float32"):
        ops.dropout_backward(x, x, 0.5)
    with pytest.raises(ValueError, match=r"\[dropout_backward\] mask must have shape \(4,\), got \(3,\)"):
        ops.dropout_backward(x, np.ones(3, bool), 0.5)
    mask = np.ones(8, bool)[::2]  # a strided mask is only read: copied, accepted
    assert_close(ops.dropout_backward(x, mask, 0.5), 2 * x, np.float32)


def test_dropout_module():
    gen = np.random.default_rng(0)
    m = nn.Dropout(0.25, rng=np.random.default_rng(7))
    x = gen.standard_normal((64, 32))
    y = m(x)
    mask = y != 0
    assert_close(y, ref.dropout(x, mask, 0.25), np.float64)
    dy = gen.standard_normal(x.shape)
    assert_close(m.backward(dy), ref.dropout(dy, mask, 0.25), np.float64)
    m.eval()
    assert m(x) is x and m.backward(dy) is dy
    assert "p=0.25" in repr(m)
    with pytest.raises(ValueError, match=r"\[Dropout\] p must be a probability"):
        nn.Dropout(-0.1)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_dropout_mask_is_the_documented_stream(p):
    """The mask is core/random.h's SplitMix64 stream, recomputed here in numpy: the
    CUDA kernel and any reimplementation can reproduce it from the seed."""
    seed = 0xDEADBEEF12345
    _, mask = ops.dropout(np.zeros((37, 41)), p, rng=seed)
    assert np.array_equal(mask, ref.dropout_mask(seed, (37, 41), p))


# -- CUDA: the same stream on the GPU ---------------------------------------------------

@requires_gpu
@pytest.mark.parametrize("shape", SHAPES + [(0, 3)], ids=str)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_dropout_mask_is_bit_identical_to_the_cpus(shape, p, dtype):
    x = rng(41).standard_normal(shape).astype(dtype)
    x.reshape(-1)[::7] = np.nan  # dropped NaNs stay NaN on both devices
    seed = 0x9E3779B97F4A7C15
    y, mask = ops.dropout(x, p, rng=seed)
    gy, gmask = ops.dropout(to_gpu(x), p, rng=seed)
    assert str(gmask.dtype) == "bool"
    np.testing.assert_array_equal(to_cpu(gmask), mask)
    np.testing.assert_array_equal(to_cpu(gy), y)  # one multiply by the same scale: the same bits
    dy = rng(42).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(to_cpu(ops.dropout_backward(to_gpu(dy), gmask, p)), ops.dropout_backward(dy, mask, p))
    np.testing.assert_array_equal(to_cpu(ops.dropout_backward(to_gpu(dy), to_gpu(mask.astype(np.uint8)), p)),
                                  ops.dropout_backward(dy, mask, p))  # integer masks: nonzero is kept


@requires_gpu
def test_gpu_dropout_is_the_documented_stream_and_checks_as_the_cpu():
    seed = 0xDEADBEEF12345
    _, mask = ops.dropout(to_gpu(np.zeros((37, 41))), 0.3, rng=seed)
    assert np.array_equal(to_cpu(mask), ref.dropout_mask(seed, (37, 41), 0.3))
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"\[dropout\] p must be a probability in \[0, 1\]"):
        ops.dropout(to_gpu(x), 1.5, rng=1)
    with pytest.raises(TypeError, match=r"\[dropout\] mask is not a CUDA array but x is"):
        _C.dropout(to_gpu(x), to_gpu(x), np.empty(4, np.bool_), 0.5, 1)
    with pytest.raises(ValueError, match=r"\[dropout_backward\] mask must have shape \(4,\), got \(5,\)"):
        ops.dropout_backward(to_gpu(x), to_gpu(np.ones(5, np.bool_)), 0.5)
    for dev in (np.asarray, to_gpu):  # a float mask is refused on both devices, not read as nonzero
        with pytest.raises(TypeError, match=r"\[dropout_backward\] mask must be a bool \(or integer\) array"):
            ops.dropout_backward(dev(x), dev(np.ones(4, np.float32)), 0.5)


@pytest.mark.skipif(not _C.cuda_built, reason="deepkern was built without CUDA")
def test_cuda_arrays_are_checked_before_any_gpu_work():
    def f(shape, typestr="<f4", readonly=False):  # only the CUDA array interface: rejected before any GPU work
        return types.SimpleNamespace(__cuda_array_interface__=dict(shape=shape, typestr=typestr,
                                                                   data=(0x1000, readonly), strides=None, version=3))
    with pytest.raises(TypeError, match=r"\[dropout\] mask must be a bool array, got a CUDA array of typestr '<f4'"):
        _C.dropout(f((4,)), f((4,)), f((4,)), 0.5, 1)
    with pytest.raises(ValueError, match=r"\[dropout\] mask is written in place and must be writeable"):
        _C.dropout(f((4,)), f((4,)), f((4,), "|b1", True), 0.5, 1)
    with pytest.raises(ValueError, match=r"\[dropout_backward\] dx must have shape \(4,\), got \(5,\)"):
        _C.dropout_backward(f((4,)), f((4,), "|b1"), f((5,)), 0.5)
