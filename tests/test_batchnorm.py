"""batch_norm and its backward over (N, C), (N, C, L), (N, C, H, W): training and eval
against the float64 reference and torch (running statistics included), float64 finite
differences, numerical stability with a large mean, the split-channel schedules,
thread-count invariance, bad arguments, and the BatchNorm1d / BatchNorm2d modules.
CI runs this file under every DEEPKERN_ISA."""
import types

import numpy as np
import pytest

import deepkern
import reference as ref
from deepkern import nn, ops
from helpers import DTYPES, assert_close, assert_grad, randn, requires_gpu, rng, to_cpu, to_gpu, torch_or_skip

# Odd sizes, 1s, primes, sizes that are not multiples of the vector width, and
# shapes large enough to split a channel over pieces ((3, 2, 256, 256): 196608
# values per channel; (3000, 5): more than one piece of rows).
SHAPES = [(2, 3), (7, 1), (64, 17), (5, 3, 1), (2, 5, 33), (1, 3, 7, 9), (4, 16, 5, 5), (2, 3, 1, 1),
          (3, 4, 56, 56)]
BIG = [(3, 2, 256, 256), (3000, 5)]


def affine(gen, c, dtype):
    return randn(gen, c, dtype), randn(gen, c, dtype)


def running(gen, c, dtype):
    return randn(gen, c, dtype), gen.uniform(0.5, 2.0, c).astype(dtype)


def check_training(shape, dtype, gen, with_affine=True, momentum=0.1):
    c = shape[1]
    x = randn(gen, shape, dtype) * 3 + 1
    w, b = affine(gen, c, dtype) if with_affine else (None, None)
    rm, rv = running(gen, c, dtype)
    want = ref.batch_norm(x, w, b, rm, rv, True, momentum, 1e-5)
    y, mean, invstd = ops.batch_norm(x, w, b, rm, rv, True, momentum, 1e-5)
    scale = np.sqrt(x.size // c)  # sums over m values
    for name, got, exp in zip(("y", "save_mean", "save_invstd", "running_mean", "running_var"),
                              (y, mean, invstd, rm, rv), want):
        assert_close(got, exp, dtype, scale=scale, name=name)
    dy = randn(gen, shape, dtype)
    check_backward(ops.batch_norm_backward(dy, x, w, mean, invstd), ref.batch_norm_backward(dy, x, w, want[1], want[2]),
                   dtype, scale, with_affine)


def check_backward(got, exp, dtype, scale, with_affine):
    """(dx, dweight, dbias) against the reference; the last two are None without affine."""
    for name, g, e in zip(("dx", "dweight", "dbias"), got, exp):
        if with_affine or name == "dx":
            assert_close(g, e, dtype, scale=scale * (1 + np.abs(e).max()), name=name)
        else:
            assert g is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_training_matches_reference(shape, dtype):
    check_training(shape, dtype, rng(1))
    check_training(shape, dtype, rng(2), with_affine=False, momentum=0.3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BIG, ids=str)
def test_channels_split_into_pieces_match_reference(shape, dtype):
    check_training(shape, dtype, rng(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_written_with_streaming_stores_match_reference(dtype):
    """Outputs of 16 MiB and more bypass the cache; odd segment lengths misalign most segments."""
    shape = (4, 2, 513, 1031)
    check_training(shape, dtype, rng(12))
    gen = rng(13)
    x = randn(gen, shape, dtype)
    w, b = affine(gen, 2, dtype)
    rm, rv = running(gen, 2, dtype)
    assert_close(ops.batch_norm(x, w, b, rm, rv, False)[0], ref.batch_norm(x, w, b, rm, rv, False)[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[:6], ids=str)
def test_eval_matches_reference(shape, dtype):
    gen = rng(4)
    c = shape[1]
    x = randn(gen, shape, dtype)
    w, b = affine(gen, c, dtype)
    rm, rv = running(gen, c, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = ops.batch_norm(x, w, b, rm, rv, False)
    exp = ref.batch_norm(x, w, b, rm, rv, False)
    assert_close(y, exp[0], dtype)
    np.testing.assert_array_equal(rm, rm0)  # eval never writes the running statistics
    np.testing.assert_array_equal(rv, rv0)
    assert_close(invstd, 1 / np.sqrt(rv0.astype(np.float64) + 1e-5), dtype)
    dy = randn(gen, shape, dtype)
    for name, g, e in zip(("dx", "dweight", "dbias"), ops.batch_norm_backward(dy, x, w, mean, invstd, training=False),
                          ref.batch_norm_backward(dy, x, w, exp[1], exp[2], training=False)):
        assert_close(g, e, dtype, scale=np.sqrt(x.size), name=name)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 3, 4)], ids=str)
def test_backward_matches_finite_differences(shape):
    gen = rng(5)
    c = shape[1]
    x = randn(gen, shape, np.float64)
    w, b = affine(gen, c, np.float64)
    r = randn(gen, shape, np.float64)
    rm, rv = running(gen, c, np.float64)
    for training in (True, False):
        def loss():
            return float((ops.batch_norm(x, w, b, None if training else rm, None if training else rv,
                                         training)[0] * r).sum())
        _, mean, invstd = ops.batch_norm(x, w, b, None if training else rm, None if training else rv, training)
        dx, dw, db = ops.batch_norm_backward(r, x, w, mean, invstd, training=training)
        assert_grad(dx, loss, x, name="dx")
        assert_grad(dw, loss, w, name="dweight")
        assert_grad(db, loss, b, name="dbias")


def test_statistics_are_stable_for_a_large_mean():
    """Naive sum-of-squares variance loses every digit here in float32."""
    gen = rng(6)
    x = (1e4 + gen.standard_normal((8, 3, 40, 40))).astype(np.float32)
    _, mean, invstd = ops.batch_norm(x, None, None, None, None, True)
    _, rmean, rinvstd, _, _ = ref.batch_norm(x, None, None, None, None, True)
    assert_close(mean, rmean, np.float32)
    assert_close(invstd, rinvstd, np.float32)


def test_results_do_not_depend_on_the_thread_count():
    gen = rng(7)
    old = deepkern.get_num_threads()
    try:
        for shape in [(3, 2, 256, 256), (3000, 5), (4, 16, 9, 9)]:
            x, dy = randn(gen, shape, np.float32), randn(gen, shape, np.float32)
            w, b = affine(gen, shape[1], np.float32)
            results = []
            for threads in (1, 2, 3):
                deepkern.set_num_threads(threads)
                y, mean, invstd = ops.batch_norm(x, w, b, None, None, True)
                results.append((y, mean, invstd) + ops.batch_norm_backward(dy, x, w, mean, invstd))
            for other in results[1:]:
                for a, b_ in zip(results[0], other):
                    np.testing.assert_array_equal(a, b_)
    finally:
        deepkern.set_num_threads(old)


def test_empty_batch_gives_empty_results_and_keeps_running_stats():
    x = np.zeros((0, 3, 4, 4), np.float32)
    rm, rv = np.full(3, 0.5, np.float32), np.full(3, 2.0, np.float32)
    y, mean, invstd = ops.batch_norm(x, np.ones(3, np.float32), np.zeros(3, np.float32), rm, rv, True)
    assert y.shape == x.shape
    np.testing.assert_array_equal(rm, 0.5)
    np.testing.assert_array_equal(rv, 2.0)
    dx, dw, db = ops.batch_norm_backward(x, x, np.ones(3, np.float32), mean, invstd)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = torch_or_skip()
    F = torch.nn.functional
    gen = rng(8)
    for shape in SHAPES + BIG[:1]:
        c = shape[1]
        x, dy = randn(gen, shape, dtype), randn(gen, shape, dtype)
        w, b = affine(gen, c, dtype)
        rm, rv = running(gen, c, dtype)
        trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
        tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
        ty = F.batch_norm(tx, trm, trv, tw, tb, True, 0.2, 1e-3)
        ty.backward(torch.from_numpy(dy))
        y, mean, invstd = ops.batch_norm(x, w, b, rm, rv, True, 0.2, 1e-3)
        dx, dw, db = ops.batch_norm_backward(dy, x, w, mean, invstd)
        scale = np.sqrt(x.size // c)
        for name, got, exp in [("y", y, ty), ("running_mean", rm, trm), ("running_var", rv, trv),
                               ("dx", dx, tx.grad), ("dweight", dw, tw.grad), ("dbias", db, tb.grad)]:
            assert_close(got, exp.detach().numpy(), dtype, scale=scale * 4, name=name)


# -- bad arguments: a clear error naming the op and argument, never a crash ---------

def test_bad_arguments_raise():
    x = np.zeros((4, 3, 5), np.float32)
    c3 = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"\[batch_norm\] expected more than 1 value per channel when training"):
        ops.batch_norm(np.zeros((1, 3), np.float32), None, None, None, None, True)
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel"):
        ops.batch_norm(np.zeros((1, 3, 1, 1), np.float32), None, None, None, None, True)
    with pytest.raises(ValueError, match=r"\[batch_norm\] running_mean is written in place and must be C-contiguous"):
        ops.batch_norm(x, None, None, np.zeros(6, np.float32)[::2], c3.copy(), True)
    ro = c3.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"\[batch_norm\] running_var is written in place and must be writeable"):
        ops.batch_norm(x, None, None, c3.copy(), ro, True)
    with pytest.raises(ValueError, match=r"\[batch_norm\] running_mean must have shape \(3,\), got \(4,\)"):
        ops.batch_norm(x, None, None, np.zeros(4, np.float32), c3.copy(), True)
    with pytest.raises(TypeError, match=r"\[batch_norm\] running_var has dtype float64, expected float32"):
        ops.batch_norm(x, None, None, c3.copy(), np.zeros(3), True)
    with pytest.raises(ValueError, match=r"both given or both None"):
        ops.batch_norm(x, None, None, c3.copy(), None, True)
    with pytest.raises(ValueError, match=r"needed when training is False"):
        ops.batch_norm(x, None, None, None, None, False)
    with pytest.raises(ValueError, match=r"\[batch_norm\] weight must have shape \(3,\)"):
        ops.batch_norm(x, np.ones(2, np.float32), None, None, None, True)
    with pytest.raises(TypeError, match=r"\[batch_norm\] bias has dtype float64"):
        ops.batch_norm(x, None, np.zeros(3), None, None, True)
    with pytest.raises(ValueError, match=r"\[batch_norm\] x must be \(N, C, \*\)"):
        ops.batch_norm(np.zeros(5, np.float32), None, None, None, None, True)
    with pytest.raises(TypeError, match=r"\[batch_norm\] x must be float32 or float64"):
        ops.batch_norm(x.astype(np.int64), None, None, None, None, True)
    with pytest.raises(ValueError, match=r"\[batch_norm\] eps must be finite and >= 0"):
        ops.batch_norm(x, None, None, None, None, True, eps=-1.0)
    with pytest.raises(ValueError, match=r"\[batch_norm\] momentum must be in \[0, 1\]"):
        ops.batch_norm(x, None, None, None, None, True, momentum=1.5)
    with pytest.raises(TypeError, match=r"\[batch_norm\] momentum must be a float"):
        ops.batch_norm(x, None, None, None, None, True, momentum=None)
    _, mean, invstd = ops.batch_norm(x, None, None, None, None, True)
    with pytest.raises(ValueError, match=r"\[batch_norm_backward\] dy must have shape \(4, 3, 5\)"):
        ops.batch_norm_backward(x[:2], x, None, mean, invstd)
    with pytest.raises(ValueError, match=r"\[batch_norm_backward\] save_invstd must have shape \(3,\)"):
        ops.batch_norm_backward(x, x, None, mean, invstd[:2])
    with pytest.raises(TypeError, match=r"\[batch_norm_backward\] dy has dtype float64"):
        ops.batch_norm_backward(x.astype(np.float64), x, None, mean, invstd)
    with pytest.raises(ValueError, match=r"\[batch_norm\] y must have shape"):
        deepkern._C.batch_norm(x, None, None, None, None, np.empty((4, 3, 4), np.float32), c3.copy(), c3.copy(),
                               True, 0.1, 1e-5)


# -- modules ----------------------------------------------------------------------

def _torch_bn(torch, module, **kw):
    cls = {nn.BatchNorm1d: torch.nn.BatchNorm1d, nn.BatchNorm2d: torch.nn.BatchNorm2d}[type(module)]
    return cls(module.num_features, **kw).double()


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm1d, (5, 4, 7)),
                                        (nn.BatchNorm2d, (3, 4, 5, 6))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_modules_match_torch_over_train_and_eval_steps(cls, shape, momentum):
    torch = torch_or_skip()
    gen = rng(9)
    m = cls(4, momentum=momentum, dtype=np.float64)
    t = _torch_bn(torch, m, momentum=momentum)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(randn(gen, 4, np.float64)))
        t.bias.copy_(torch.from_numpy(randn(gen, 4, np.float64)))
    m.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    for step, training in enumerate([True, True, True, False]):
        m.train(training)
        t.train(training)
        x, dy = randn(gen, shape, np.float64), randn(gen, shape, np.float64)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = t(tx)
        ty.backward(torch.from_numpy(dy))
        assert_close(m(x), ty.detach().numpy(), name=f"y step {step}")
        assert_close(m.backward(dy), tx.grad.numpy(), name=f"dx step {step}", scale=10)
        for k, v in t.state_dict().items():
            assert_close(m.state_dict()[k], v.numpy(), np.float64, name=k)
        assert_close(m.weight.grad, t.weight.grad.numpy(), name="weight.grad", scale=10)
        assert_close(m.bias.grad, t.bias.grad.numpy(), name="bias.grad", scale=10)
    assert list(m.state_dict()) == list(t.state_dict())
    assert int(m.num_batches_tracked) == 3


def test_module_options_and_checks():
    gen = rng(10)
    x = randn(gen, (8, 3, 4, 4), np.float32)
    m = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert list(m.parameters()) == [] and list(m.state_dict()) == []
    y = m.eval()(x)  # no running statistics: eval keeps using the batch's
    assert_close(y, ref.batch_norm(x, None, None, None, None, True)[0], np.float32, scale=10)
    dx = m.backward(np.ones_like(x))  # sum(y) does not depend on x
    assert_close(dx, np.zeros_like(x, dtype=np.float64), np.float32, scale=10)
    m = nn.BatchNorm2d(3)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    with pytest.raises(RuntimeError, match=r"\[BatchNorm2d\] backward\(\) called before forward\(\)"):
        m.backward(x)
    with pytest.raises(ValueError, match=r"\[BatchNorm2d\] expected 4D input"):
        m(x[0])
    with pytest.raises(ValueError, match=r"\[BatchNorm1d\] expected 2D or 3D input"):
        nn.BatchNorm1d(3)(x)
    with pytest.raises(ValueError, match=r"\[BatchNorm2d\] expected 3 channels"):
        m(randn(gen, (2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[BatchNorm1d\] momentum must be in \[0, 1\] or None"):
        nn.BatchNorm1d(3, momentum=2.0)
    m.to(np.float64)
    assert m.running_mean.dtype == np.float64 and m.num_batches_tracked.dtype == np.int64


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (5, 3)), (nn.BatchNorm2d, (2, 3, 3, 4))])
def test_module_gradients_match_finite_differences(cls, shape):
    gen = rng(11)
    m = cls(3, dtype=np.float64)
    m.weight.data[:] = randn(gen, 3, np.float64)
    m.bias.data[:] = randn(gen, 3, np.float64)
    x, r = randn(gen, shape, np.float64), randn(gen, shape, np.float64)
    m(x)
    dx = m.backward(r)
    loss = lambda: float((m(x) * r).sum())  # noqa: E731
    assert_grad(dx, loss, x, name="dx")
    assert_grad(m.weight.grad, loss, m.weight.data, name="weight.grad")
    assert_grad(m.bias.grad, loss, m.bias.data, name="bias.grad")


# -- CUDA: the same ops on the GPU against the CPU kernels and the reference ------------

# Both statistics kernels (inner == 1: columns; inner > 1: block pieces, one or
# many per channel), batch 1, odd sizes, a channel split over many pieces.
GPU_SHAPES = [(2, 3), (7, 1), (1000, 17), (5, 3, 1), (1, 5, 33), (1, 3, 7, 9), (4, 16, 5, 5), (2, 3, 1, 1),
              (3, 4, 56, 56), (3, 2, 256, 256)]


def _gpu_training(shape, dtype, gen, with_affine, momentum):
    c = shape[1]
    x = randn(gen, shape, dtype) * 3 + 1
    w, b = affine(gen, c, dtype) if with_affine else (None, None)
    rm, rv = running(gen, c, dtype)
    grm, grv = to_gpu(rm), to_gpu(rv)
    want = ref.batch_norm(x, w, b, rm, rv, True, momentum, 1e-5)
    cpu = ops.batch_norm(x, w, b, rm, rv, True, momentum, 1e-5) + (rm, rv)
    gpu = ops.batch_norm(to_gpu(x), to_gpu(w), to_gpu(b), grm, grv, True, momentum, 1e-5) + (grm, grv)
    scale = np.sqrt(x.size // c)
    for name, g, cp, exp in zip(("y", "save_mean", "save_invstd", "running_mean", "running_var"), gpu, cpu, want):
        assert_close(to_cpu(g), exp, dtype, scale=scale, name=name)
        assert_close(to_cpu(g), cp, dtype, scale=scale, name=name)
    dy = randn(gen, shape, dtype)
    got = to_cpu(ops.batch_norm_backward(to_gpu(dy), to_gpu(x), to_gpu(w), gpu[1], gpu[2]))
    check_backward(got, ref.batch_norm_backward(dy, x, w, want[1], want[2]), dtype, scale, with_affine)
    again = to_cpu(ops.batch_norm_backward(to_gpu(dy), to_gpu(x), to_gpu(w), gpu[1], gpu[2]))
    for g, a in zip(got, again):  # fixed reduction order: the same bits every run
        if g is not None:
            np.testing.assert_array_equal(g, a)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
def test_gpu_training_matches_cpu_and_reference(shape, dtype):
    _gpu_training(shape, dtype, rng(21), True, 0.1)
    _gpu_training(shape, dtype, rng(22), False, 0.3)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
def test_gpu_eval_matches_cpu_and_reference(shape, dtype):
    gen = rng(23)
    c = shape[1]
    x = randn(gen, shape, dtype)
    w, b = affine(gen, c, dtype)
    rm, rv = running(gen, c, dtype)
    want = ref.batch_norm(x, w, b, rm, rv, False)
    y, mean, invstd = (to_cpu(a) for a in ops.batch_norm(to_gpu(x), to_gpu(w), to_gpu(b), to_gpu(rm), to_gpu(rv),
                                                            False))
    for name, got, exp in zip(("y", "save_mean", "save_invstd"), (y, mean, invstd), want):
        assert_close(got, exp, dtype, name=name)
    dy = randn(gen, shape, dtype)
    got = to_cpu(ops.batch_norm_backward(to_gpu(dy), to_gpu(x), to_gpu(w), to_gpu(mean), to_gpu(invstd),
                                         training=False))
    exp = ref.batch_norm_backward(dy, x, w, want[1], want[2], training=False)
    for name, g, e in zip(("dx", "dweight", "dbias"), got, exp):
        assert_close(g, e, dtype, scale=np.sqrt(x.size // c) * (1 + np.abs(e).max()), name=name)


@requires_gpu
def test_gpu_statistics_are_stable_and_empty_batches_work():
    gen = rng(24)
    x = (1e4 + randn(gen, (64, 3, 20, 20), np.float32)).astype(np.float32)
    _, mean, invstd = ops.batch_norm(to_gpu(x), None, None, None, None, True)
    want = ref.batch_norm(x, None, None, None, None, True)
    assert_close(to_cpu(mean), want[1], np.float32, scale=1e4)
    assert_close(to_cpu(invstd), want[2], np.float32, scale=10)
    rm, rv = running(gen, 3, np.float32)
    grm, grv = to_gpu(rm), to_gpu(rv)
    y, mean, invstd = ops.batch_norm(to_gpu(np.empty((0, 3, 4, 4), np.float32)), None, None, grm, grv, True)
    assert to_cpu(y).shape == (0, 3, 4, 4)
    np.testing.assert_array_equal(to_cpu(mean), 0)
    np.testing.assert_array_equal(to_cpu(invstd), 0)
    np.testing.assert_array_equal(to_cpu(grm), rm)
    np.testing.assert_array_equal(to_cpu(grv), rv)


@requires_gpu
def test_gpu_strided_inputs_are_copied_as_on_the_cpu():
    gen = rng(25)
    x, w, dy = randn(gen, (4, 6, 5), np.float32), randn(gen, 6, np.float32), randn(gen, (4, 6, 5), np.float32)
    sx, sw, sdy = (a[:, ::2] if a.ndim > 1 else a[::2] for a in (x, w, dy))  # read-only views: copied, not rejected
    gx, gw, gdy = (to_gpu(a)[:, ::2] if a.ndim > 1 else to_gpu(a)[::2] for a in (x, w, dy))
    want = ops.batch_norm(sx, sw, sw, None, None, True)
    got = ops.batch_norm(gx, gw, gw, None, None, True)
    for g, e in zip(got, want):
        assert_close(to_cpu(g), e, np.float32, scale=4)
    want = ops.batch_norm_backward(sdy, sx, sw, want[1], want[2])
    got = ops.batch_norm_backward(gdy, gx, gw, got[1], got[2])
    for g, e in zip(got, want):
        assert_close(to_cpu(g), e, np.float32, scale=4 * (1 + np.abs(e).max()))


@requires_gpu
def test_gpu_batch_norm_checks_match_cpu():
    x = np.ones((4, 3, 2), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    for args in [(np.ones(4, np.float32), None, rm, rv, True), (None, None, None, None, False),
                 (None, None, rm, None, True), (None, None, np.zeros(3, np.float64), rv, True)]:
        with pytest.raises((ValueError, TypeError)) as cpu_err:
            ops.batch_norm(x, *args)
        with pytest.raises((ValueError, TypeError)) as gpu_err:
            ops.batch_norm(to_gpu(x), *(to_gpu(a) if isinstance(a, np.ndarray) else a for a in args))
        assert type(gpu_err.value) is type(cpu_err.value) and str(gpu_err.value) == str(cpu_err.value)


@pytest.mark.skipif(not deepkern._C.cuda_built, reason="deepkern was built without CUDA")
def test_cuda_arrays_are_checked_before_any_gpu_work():
    def f(shape, typestr="<f4"):  # only the CUDA array interface: rejected before any GPU work
        return types.SimpleNamespace(__cuda_array_interface__=dict(shape=shape, typestr=typestr, data=(0x1000, False),
                                                                   strides=None, version=3))
    C = deepkern._C
    with pytest.raises(ValueError, match=r"\[batch_norm\] running_mean and running_var must be both given or both"):
        C.batch_norm(f((4, 3)), None, None, f((3,)), None, f((4, 3)), f((3,)), f((3,)), True, 0.1, 1e-5)
    with pytest.raises(TypeError, match=r"\[batch_norm\] running_mean is not a CUDA array but x is"):
        C.batch_norm(f((4, 3)), None, None, np.zeros(3, np.float32), None, f((4, 3)), f((3,)), f((3,)), True, 0.1,
                     1e-5)
    with pytest.raises(ValueError, match=r"\[batch_norm_backward\] save_mean must have shape \(3,\), got \(4,\)"):
        C.batch_norm_backward(f((4, 3)), f((4, 3)), None, f((4,)), f((3,)), f((4, 3)), None, None, True)
