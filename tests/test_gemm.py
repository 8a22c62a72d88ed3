"""gemm, linear and linear_backward against the float64 references (tests/reference.py).

Error bound (not a loose constant): each output of op(A) op(B) is a k-term dot
product, whose rounding error is at most k * u * (|op(A)| @ |op(B)|) with
u = eps / 2; the alpha, beta and bias steps add a few more roundings. The bound
below is (k + 4) * eps * (that sum + the beta and bias terms): a factor of two
over the worst case, which also covers the float64 reference's own error.
Shapes cover 1, primes, sizes that are no multiple of the vector width or the
micro-tile, and sizes past the cache blocks (k > KC, m > MC, n > NC).
"""
import numpy as np
import pytest

import deepkern
import reference as ref
from deepkern import _C, ops
from helpers import DTYPES, assert_grad, requires_gpu, rng, to_cpu, to_gpu, torch_or_skip

SHAPES = [(1, 1, 1), (1, 17, 3), (13, 1, 7), (2, 3, 1), (14, 32, 16), (15, 33, 17), (29, 61, 97),
          (97, 31, 5), (6, 257, 25), (131, 67, 800), (200, 40, 30), (3, 3100, 5), (300, 16, 400),
          (44, 70, 1700), (15, 100, 900),  # edge rows over several strips, several K blocks
          (350, 530, 800)]  # tiles of several A blocks over B rows 2 KiB apart: B packed, not read in place


def op(x, trans):
    return np.asarray(x, np.float64).T if trans else np.asarray(x, np.float64)


def gemm_bound(a, b, trans_a, trans_b, alpha, beta, c, dtype, bias=None):
    """The rounding-error bound of alpha * op(a) @ op(b) + beta * c + bias, per element."""
    eps = np.finfo(dtype).eps
    k = op(a, trans_a).shape[1]
    mag = abs(alpha) * (np.abs(op(a, trans_a)) @ np.abs(op(b, trans_b)))
    if c is not None and beta != 0:
        mag = mag + abs(beta) * np.abs(np.asarray(c, np.float64))
    if bias is not None:
        mag = mag + np.abs(np.asarray(bias, np.float64))
    return (k + 4) * eps * mag + np.finfo(dtype).tiny


def assert_within(actual, expected, bound, name="result"):
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual.astype(np.float64) - expected)
    bad = ~(err <= bound)
    assert not bad.any(), (f"{name}: {bad.sum()} of {err.size} off; worst error {err.max():.3g}, "
                           f"bound there {bound.flat[np.argmax(err)]:.3g}")


def operands(gen, m, n, k, trans_a, trans_b, dtype):
    a = gen.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = gen.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def gemm_cases(gen, shapes, trans_a, trans_b, dtype):
    """(a, b, c0, alpha, beta, name) for each shape and three (alpha, beta) pairs."""
    for m, n, k in shapes:
        a, b = operands(gen, m, n, k, trans_a, trans_b, dtype)
        c0 = gen.standard_normal((m, n)).astype(dtype)
        for alpha, beta in [(1.0, 0.0), (-0.75, 1.0), (2.0, -0.5)]:
            yield a, b, c0, alpha, beta, f"gemm {(m, n, k)} alpha={alpha} beta={beta}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_against_reference(dtype, trans_a, trans_b):
    for a, b, c0, alpha, beta, name in gemm_cases(rng(1), SHAPES, trans_a, trans_b, dtype):
        out = c0.copy()
        got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out)
        assert got is out
        want = ref.gemm(a, b, c0, trans_a, trans_b, alpha, beta)
        assert_within(out, want, gemm_bound(a, b, trans_a, trans_b, alpha, beta, c0, dtype), name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tall_a_packed_in_several_bands(dtype):
    """m large enough (with k = KC) that A is packed a band of rows at a time."""
    gen = rng(11)
    for trans_a in (False, True):
        a, b = operands(gen, 5500, 37, 768, trans_a, False, dtype)
        c0 = gen.standard_normal((5500, 37)).astype(dtype)
        out = c0.copy()
        ops.gemm(a, b, trans_a=trans_a, alpha=0.5, beta=2.0, out=out)
        assert_within(out, ref.gemm(a, b, c0, trans_a, False, 0.5, 2.0),
                      gemm_bound(a, b, trans_a, False, 0.5, 2.0, c0, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_beta_zero_never_reads_out(dtype):
    gen = rng(2)
    a, b = operands(gen, 37, 45, 19, False, False, dtype)
    out = np.full((37, 45), np.nan, dtype)
    ops.gemm(a, b, out=out)
    assert_within(out, ref.gemm(a, b), gemm_bound(a, b, False, False, 1.0, 0.0, None, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (4, 0, 3), (0, 0, 0), (4, 5, 0), (1, 1, 0)])
def test_empty_dimensions(dtype, m, n, k):
    a, b = np.ones((m, k), dtype), np.ones((k, n), dtype)
    assert ops.gemm(a, b).shape == (m, n)
    np.testing.assert_array_equal(ops.gemm(a, b), np.zeros((m, n)))
    c = np.full((m, n), 3.0, dtype)
    ops.gemm(a, b, alpha=2.0, beta=0.5, out=c)  # k = 0: c = beta * c
    np.testing.assert_array_equal(c, np.full((m, n), 1.5 if k == 0 else 1.5 + 2.0 * k))


@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_zero_reads_neither_a_nor_b(dtype):
    a = np.full((6, 5), np.nan, dtype)
    out = np.ones((6, 7), dtype)
    ops.gemm(a, np.ones((5, 7), dtype), alpha=0.0, beta=2.0, out=out)
    np.testing.assert_array_equal(out, np.full((6, 7), 2.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_transposed_views(dtype):
    """Views are read in place where the engine can (a row stride becomes lda, a transposed
    view flips trans); negative or non-unit inner steps are copied. All must agree."""
    gen = rng(3)
    big_a = gen.standard_normal((60, 90)).astype(dtype)
    big_b = gen.standard_normal((90, 70)).astype(dtype)
    views = [(big_a[:33, :41], big_b[:41, :29]),        # row strides > widths (lda, ldb)
             (big_a[::2, 5:46], big_b[1:42, ::-1]),      # every other row; reversed columns
             (big_a[:41, :33].T, big_b[:29, :41].T),     # transposed views (F-ordered)
             (big_a[:33, :82:2], big_b[:41, :29].copy(order="F"))]
    for a, b in views:
        for trans_a, trans_b in [(False, False), (True, True)]:
            a_, b_ = (a.T, b.T) if trans_a else (a, b)
            got = ops.gemm(a_, b_, trans_a=trans_a, trans_b=trans_b)
            assert_within(got, ref.gemm(a, b), gemm_bound(a, b, False, False, 1.0, 0.0, None, dtype))
            out = np.zeros(got.shape, dtype)
            _C.gemm(a_, b_, out, trans_a, trans_b, 1.0, 0.0)  # the native call takes views too
            np.testing.assert_array_equal(out, got)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_aliasing_an_input_computes_from_the_old_values(dtype):
    gen = rng(4)
    a = gen.standard_normal((40, 40)).astype(dtype)
    want = ref.gemm(a, a, a, alpha=1.0, beta=0.5)
    bound = gemm_bound(a, a, False, False, 1.0, 0.5, a, dtype)
    ops.gemm(a, a, beta=0.5, out=a)
    assert_within(a, want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pack_a,pack_b", [(True, False), (False, True), (True, True)])
def test_prepacked_operands(dtype, pack_a, pack_b):
    """The pack-once-multiply-many path (conv's weight as A, linear's as B with trans_b)."""
    gen = rng(5)
    for m, n, k in [(1, 1, 1), (15, 33, 17), (29, 61, 97), (131, 67, 800), (300, 16, 400), (3, 3100, 5)]:
        for trans_a, trans_b in [(False, False), (False, True), (True, False), (True, True)]:
            a, b = operands(gen, m, n, k, trans_a, trans_b, dtype)
            c0 = gen.standard_normal((m, n)).astype(dtype)
            out = c0.copy()
            _C._gemm_prepacked(a, b, out, trans_a, trans_b, 1.5, -1.0, pack_a, pack_b)
            want = ref.gemm(a, b, c0, trans_a, trans_b, 1.5, -1.0)
            assert_within(out, want, gemm_bound(a, b, trans_a, trans_b, 1.5, -1.0, c0, dtype),
                          f"prepacked {(m, n, k)} trans={trans_a, trans_b}")


def test_results_do_not_depend_on_the_thread_count():
    gen = rng(6)
    a, b = operands(gen, 211, 173, 300, False, True, np.float32)
    old = deepkern.get_num_threads()
    try:
        deepkern.set_num_threads(1)
        one = ops.gemm(a, b, trans_b=True)
        deepkern.set_num_threads(2)
        two = ops.gemm(a, b, trans_b=True)
    finally:
        deepkern.set_num_threads(old)
    np.testing.assert_array_equal(one, two)


# -- linear ---------------------------------------------------------------------

def check_linear(dtype, lead, gen, shapes, gpu=False):
    """linear and linear_backward against the reference; gpu: on CuPy arrays."""
    put, get = (to_gpu, to_cpu) if gpu else (lambda v: v, lambda v: v)
    for i, o in shapes:
        x = gen.standard_normal(lead + (i,)).astype(dtype)
        w = gen.standard_normal((o, i)).astype(dtype)
        b = gen.standard_normal((o,)).astype(dtype)
        x2 = x.reshape(-1, i)
        for bias in (b, None):
            y = get(ops.linear(put(x), put(w), put(bias)))
            assert y.shape == lead + (o,) and y.dtype == dtype
            bound = gemm_bound(x2, w, False, True, 1.0, 0.0, None, dtype, bias)
            assert_within(y.reshape(-1, o), ref.linear(x2, w, bias), bound, "linear")

        dy = gen.standard_normal(lead + (o,)).astype(dtype)
        dy2 = dy.reshape(-1, o)
        dx, dw, db = get(ops.linear_backward(put(dy), put(x), put(w)))
        want_dx, want_dw, want_db = ref.linear_backward(dy2, x2, w)
        assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (o,)
        assert_within(dx.reshape(-1, i), want_dx, gemm_bound(dy2, w, False, False, 1.0, 0.0, None, dtype), "dx")
        assert_within(dw, want_dw, gemm_bound(dy2, x2, True, False, 1.0, 0.0, None, dtype), "dw")
        ones = np.ones((1, dy2.shape[0]))
        assert_within(db, want_db, gemm_bound(ones, dy2, False, False, 1.0, 0.0, None, dtype)[0], "db")
        assert ops.linear_backward(put(dy), put(x), put(w), bias=False)[2] is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", [(), (1,), (7,), (3, 5), (0,), (2, 0, 3)])
def test_linear_and_backward(dtype, lead):
    check_linear(dtype, lead, rng(7), [(1, 1), (13, 7), (40, 33), (5, 70)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols", [(7000, 13), (3, 5000), (600, 1100), (1, 1)])
def test_bias_gradient_sums_rows(dtype, rows, cols):
    """db = column sums, through both threading strategies (tall and narrow: rows split
    with per-thread partials; wide: columns split)."""
    gen = rng(8)
    dy = gen.standard_normal((rows, cols)).astype(dtype)
    _, _, db = ops.linear_backward(dy, np.zeros((rows, 1), dtype), np.zeros((cols, 1), dtype))
    eps = np.finfo(dtype).eps
    assert_within(db, dy.astype(np.float64).sum(0), (rows + 2) * eps * np.abs(dy.astype(np.float64)).sum(0), "db")


def test_linear_gradients_by_finite_differences():
    gen = rng(9)
    x, w, b = gen.standard_normal((4, 5)), gen.standard_normal((3, 5)), gen.standard_normal(3)
    g = gen.standard_normal((4, 3))  # loss = sum(g * linear(x, w, b))
    loss = lambda: float((g * ops.linear(x, w, b)).sum())
    dx, dw, db = ops.linear_backward(g, x, w)
    assert_grad(dx, loss, x, name="dx")
    assert_grad(dw, loss, w, name="dw")
    assert_grad(db, loss, b, name="db")


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = torch_or_skip()
    gen = rng(10)
    a, b = operands(gen, 45, 77, 130, True, False, dtype)
    want = torch.mm(torch.from_numpy(a).T, torch.from_numpy(b)).numpy()
    assert_within(ops.gemm(a, b, trans_a=True), want.astype(np.float64),
                  2 * gemm_bound(a, b, True, False, 1.0, 0.0, None, dtype))
    x, w, bias = gen.standard_normal((9, 30)).astype(dtype), gen.standard_normal((11, 30)).astype(dtype), \
        gen.standard_normal(11).astype(dtype)
    tx, tw, tb = (torch.from_numpy(v).requires_grad_() for v in (x, w, bias))
    ty = torch.nn.functional.linear(tx, tw, tb)
    dy = gen.standard_normal((9, 11)).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    bound = 2 * gemm_bound(x, w, False, True, 1.0, 0.0, None, dtype, bias)
    assert_within(ops.linear(x, w, bias), ty.detach().numpy().astype(np.float64), bound, "linear")
    for got, t, bnd in zip(ops.linear_backward(dy, x, w), (tx, tw, tb),
                           (gemm_bound(dy, w, False, False, 1.0, 0.0, None, dtype),
                            gemm_bound(dy, x, True, False, 1.0, 0.0, None, dtype),
                            gemm_bound(np.ones((1, 9)), dy, False, False, 1.0, 0.0, None, dtype)[0])):
        assert_within(got, t.grad.numpy().astype(np.float64), 2 * bnd)


# -- bad input --------------------------------------------------------------------

f32 = lambda *s: np.ones(s, np.float32)
f64 = lambda *s: np.ones(s, np.float64)


@pytest.mark.parametrize("call,exc,words", [
    (lambda: ops.gemm(f32(2, 3), f64(3, 2)), TypeError, ["[gemm] b", "float64", "float32"]),
    (lambda: ops.gemm(np.ones((2, 3), np.int64), f32(3, 2)), TypeError, ["[gemm] a", "int64"]),
    (lambda: ops.gemm(f32(2, 3), f32(3, 2), out=f64(2, 2)), TypeError, ["[gemm] out", "float64"]),
    (lambda: ops.gemm(f32(3), f32(3, 2)), ValueError, ["[gemm] a", "2-D"]),
    (lambda: ops.gemm(f32(2, 3), f32(4, 2)), ValueError, ["[gemm]", "inner"]),
    (lambda: ops.gemm(f32(2, 3), f32(2, 4), trans_b=True), ValueError, ["[gemm]", "inner"]),
    (lambda: ops.gemm(f32(2, 3), f32(3, 2), out=f32(3, 2)), ValueError, ["[gemm] out", "(2, 2)"]),
    (lambda: ops.gemm(f32(2, 3), f32(3, 2), out=f32(2, 4)[:, :2]), ValueError, ["[gemm] out", "contiguous"]),
    (lambda: ops.gemm(f32(2, 3), f32(3, 2), beta=1.0), ValueError, ["[gemm] beta", "out"]),
    (lambda: ops.gemm("a", f32(3, 2)), TypeError, ["[gemm] a", "str"]),
    (lambda: ops.linear(f32(2, 3), f32(4, 5)), ValueError, ["[linear]", "features"]),
    (lambda: ops.linear(f32(2, 3), f32(3)), ValueError, ["[linear] w", "2-D"]),
    (lambda: ops.linear(f32(2, 3), f32(4, 3), f32(5)), ValueError, ["[linear] b", "(4,)"]),
    (lambda: ops.linear(f32(2, 3), f32(4, 3), f64(4)), TypeError, ["[linear] b", "float64"]),
    (lambda: ops.linear(f64(2, 3), f32(4, 3)), TypeError, ["[linear] w", "float32"]),
    (lambda: ops.linear_backward(f32(2, 4), f32(3, 3), f32(4, 3)), ValueError, ["[linear_backward]", "dy"]),
    (lambda: ops.linear_backward(f32(2, 5), f32(2, 3), f32(4, 3)), ValueError, ["[linear_backward] w"]),
    (lambda: ops.linear_backward(f32(2, 4), f32(2, 3), f64(4, 3)), TypeError, ["[linear_backward] w"]),
])
def test_bad_input_raises(call, exc, words):
    with pytest.raises(exc) as e:
        call()
    for w in words:
        assert w in str(e.value), f"{w!r} not in {str(e.value)!r}"


def test_read_only_out_and_overlapping_outputs():
    out = f32(2, 2)
    out.setflags(write=False)
    with pytest.raises(ValueError, match=r"\[gemm\] out .*writeable"):
        ops.gemm(f32(2, 3), f32(3, 2), out=out)
    buf = f32(3 * 4 + 3)
    with pytest.raises(ValueError, match=r"\[linear_backward\] dw and db"):
        _C.linear_backward(f32(8, 3), f32(8, 4), f32(3, 4), f32(8, 4), buf[:12].reshape(3, 4), buf[9:12])


def test_tf32_changes_nothing_on_the_cpu():
    gen = rng(20)
    a, b = operands(gen, 33, 17, 29, False, True, np.float32)
    np.testing.assert_array_equal(ops.gemm(a, b, trans_b=True, tf32=True), ops.gemm(a, b, trans_b=True))
    x, w, bias = a, gen.standard_normal((5, 29)).astype(np.float32), gen.standard_normal(5).astype(np.float32)
    np.testing.assert_array_equal(ops.linear(x, w, bias, tf32=True), ops.linear(x, w, bias))
    dy = gen.standard_normal((33, 5)).astype(np.float32)
    for got, want in zip(ops.linear_backward(dy, x, w, tf32=True), ops.linear_backward(dy, x, w)):
        np.testing.assert_array_equal(got, want)


# -- CUDA arrays: checked like numpy ones, before any GPU work -----------------------

from test_activation import FakeCudaArray  # noqa: E402  (only the interface, never dereferenced)


def test_cuda_arrays_mixed_with_numpy_or_without_cuda_raise_type_error():
    a, out = f32(2, 3), f32(2, 2)
    with pytest.raises(TypeError, match=r"\[gemm\] b is a CUDA array but a is not"):
        _C.gemm(a, FakeCudaArray((3, 2)), out, False, False, 1.0, 0.0)
    with pytest.raises(TypeError, match=r"\[linear\] b is a CUDA array but x is not"):
        _C.linear(a, f32(2, 3), FakeCudaArray((2,)), out)
    with pytest.raises(TypeError, match=r"\[linear_backward\] x is not a CUDA array but dy is"):
        _C.linear_backward(FakeCudaArray((2, 2)), a, f32(2, 3), f32(2, 3), f32(2, 3), None)
    if not _C.cuda_built:
        with pytest.raises(TypeError, match="built without CUDA"):
            _C.gemm(FakeCudaArray((2, 3)), FakeCudaArray((3, 2)), FakeCudaArray((2, 2)), False, False, 1.0, 0.0)


@pytest.mark.skipif(not _C.cuda_built, reason="deepkern was built without CUDA: no CUDA argument checks")
def test_cuda_arguments_get_the_cpu_messages():
    F = FakeCudaArray
    with pytest.raises(ValueError, match=r"\[gemm\] op\(a\) is \(2, 3\) but op\(b\) is \(4, 2\)"):
        _C.gemm(F((2, 3)), F((4, 2)), F((2, 2)), False, False, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\[gemm\] a must be 2-D, got shape \(3,\)"):
        _C.gemm(F((3,)), F((3, 2)), F((2, 2)), False, False, 1.0, 0.0)
    with pytest.raises(TypeError, match=r"\[gemm\] b has dtype float64, expected float32"):
        _C.gemm(F((2, 3)), F((3, 2), "<f8"), F((2, 2)), False, False, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\[gemm\] out must have shape \(2, 2\), got \(3, 2\)"):
        _C.gemm(F((2, 3)), F((3, 2)), F((3, 2)), False, False, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\[gemm\] out overlaps a"):  # every fake shares one pointer
        _C.gemm(F((2, 3)), F((3, 2)), F((2, 2)), False, False, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\[linear\] x has 3 features but w has 5"):
        _C.linear(F((2, 3)), F((4, 5)), None, F((2, 4)))
    with pytest.raises(ValueError, match=r"\[linear\] b must have shape \(4,\), got \(5,\)"):
        _C.linear(F((2, 3)), F((4, 3)), F((5,)), F((2, 4)))
    with pytest.raises(ValueError, match=r"\[linear_backward\] dy has 2 rows but x has 3"):
        _C.linear_backward(F((2, 4)), F((3, 3)), F((4, 3)), F((3, 3)), F((4, 3)), None)
    with pytest.raises(ValueError, match=r"\[linear_backward\] w must have shape \(4, 3\), got \(5, 3\)"):
        _C.linear_backward(F((2, 4)), F((2, 3)), F((5, 3)), F((2, 3)), F((4, 3)), None)
    with pytest.raises(ValueError, match=r"\[linear_backward\] dx and dw are written and must not overlap"):
        _C.linear_backward(F((2, 4)), F((2, 3)), F((4, 3)), F((2, 3)), F((4, 3)), F((4,)))


# -- CUDA: the kernels on CuPy arrays against the CPU kernels and the reference -------

# Past the tiles (128 and 64), not multiples of them, odd leading dimensions
# (scalar loads), k == 1 and k < 8, and a grid of more row tiles than gridDim.y.
GPU_SHAPES = SHAPES + [(128, 128, 8), (129, 127, 9), (64, 64, 64), (65, 63, 7), (257, 130, 300), (1, 300, 1000),
                       (513, 5, 64), (300, 200, 1), (1000, 1000, 40)]


def gpu_gemm(a, b, c0, trans_a, trans_b, alpha, beta, tf32=False):
    out = to_gpu(c0)
    got = ops.gemm(to_gpu(a), to_gpu(b), trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out,
                   tf32=tf32)
    assert got is out
    return to_cpu(out)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_gpu_gemm_matches_cpu_and_reference(dtype, trans_a, trans_b):
    for a, b, c0, alpha, beta, name in gemm_cases(rng(21), GPU_SHAPES, trans_a, trans_b, dtype):
        got = gpu_gemm(a, b, c0, trans_a, trans_b, alpha, beta)
        bound = gemm_bound(a, b, trans_a, trans_b, alpha, beta, c0, dtype)
        assert_within(got, ref.gemm(a, b, c0, trans_a, trans_b, alpha, beta), bound, "gpu " + name)
        cpu = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=c0.copy())
        assert_within(got, cpu.astype(np.float64), 2 * bound, "gpu vs cpu " + name)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_gemm_unaligned_views_and_many_row_tiles(dtype):
    import cupy
    gen = rng(22)
    for trans_a, trans_b in [(False, False), (True, True)]:
        m, n, k = 37, 44, 36  # even ld, but the base one element past an aligned address
        a, b = operands(gen, m, n, k, trans_a, trans_b, dtype)
        ga, gb = cupy.zeros(a.size + 1, dtype), cupy.zeros(b.size + 1, dtype)
        ga[1:] = to_gpu(a.ravel())
        gb[1:] = to_gpu(b.ravel())
        got = ops.gemm(ga[1:].reshape(a.shape), gb[1:].reshape(b.shape), trans_a=trans_a, trans_b=trans_b)
        assert_within(to_cpu(got), ref.gemm(a, b, None, trans_a, trans_b),
                      gemm_bound(a, b, trans_a, trans_b, 1.0, 0.0, None, dtype), "unaligned")
    # Strided and transposed CuPy views are copied by ops.gemm.
    a, b2 = operands(gen, 30, 40, 10, False, False, dtype)
    b = b2[:, ::2]
    got = ops.gemm(to_gpu(a.T.copy()).T, to_gpu(b2)[:, ::2])
    assert_within(to_cpu(got), ref.gemm(a, b), gemm_bound(a, b, False, False, 1.0, 0.0, None, dtype), "views")
    m = 65535 * 128 + 100  # more row tiles than gridDim.y holds: the kernel loops over them
    a, b = gen.standard_normal((m, 3)).astype(dtype), gen.standard_normal((3, 2)).astype(dtype)
    got = to_cpu(ops.gemm(to_gpu(a), to_gpu(b)))
    assert_within(got, ref.gemm(a, b), gemm_bound(a, b, False, False, 1.0, 0.0, None, dtype), "tall")


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_gemm_special_cases(dtype):
    import cupy
    gen = rng(23)
    a, b = operands(gen, 37, 45, 19, False, False, dtype)
    out = cupy.full((37, 45), np.nan, dtype)  # beta == 0: out is write-only
    ops.gemm(to_gpu(a), to_gpu(b), out=out)
    assert_within(to_cpu(out), ref.gemm(a, b), gemm_bound(a, b, False, False, 1.0, 0.0, None, dtype))
    out = cupy.ones((6, 7), dtype)  # alpha == 0 reads neither a nor b
    ops.gemm(cupy.full((6, 5), np.nan, dtype), cupy.ones((5, 7), dtype), alpha=0.0, beta=2.0, out=out)
    np.testing.assert_array_equal(to_cpu(out), np.full((6, 7), 2.0))
    for m, n, k in [(0, 5, 3), (4, 0, 3), (0, 0, 0), (4, 5, 0), (1, 1, 0)]:
        ga, gb = cupy.ones((m, k), dtype), cupy.ones((k, n), dtype)
        np.testing.assert_array_equal(to_cpu(ops.gemm(ga, gb)), np.zeros((m, n)))
        c = cupy.full((m, n), 3.0, dtype)
        ops.gemm(ga, gb, alpha=2.0, beta=0.5, out=c)
        np.testing.assert_array_equal(to_cpu(c), np.full((m, n), 1.5 if k == 0 else 1.5 + 2.0 * k))
    a, b = operands(gen, 200, 150, 333, True, False, dtype)  # the same bits on every run
    first = gpu_gemm(a, b, np.zeros((200, 150), dtype), True, False, 1.0, 0.0)
    np.testing.assert_array_equal(gpu_gemm(a, b, np.zeros((200, 150), dtype), True, False, 1.0, 0.0), first)
    buf = cupy.ones(12, dtype)
    with pytest.raises(ValueError, match=r"\[gemm\] out overlaps a"):
        ops.gemm(buf[:6].reshape(2, 3), cupy.ones((3, 2), dtype), out=buf[4:8].reshape(2, 2))


@requires_gpu
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_gpu_gemm_tf32(trans_a, trans_b):
    """TF32 rounds each input to 11 significant bits (relative error 2^-11), so each
    product is off by at most about 2^-10 of its magnitude, beyond the float32 sum's."""
    gen = rng(24)
    for m, n, k in [(1, 1, 1), (15, 33, 17), (129, 127, 9), (257, 130, 300), (300, 200, 1)]:
        a, b = operands(gen, m, n, k, trans_a, trans_b, np.float32)
        c0 = gen.standard_normal((m, n)).astype(np.float32)
        got = gpu_gemm(a, b, c0, trans_a, trans_b, 1.5, -0.5, tf32=True)
        mag = 1.5 * (np.abs(op(a, trans_a)) @ np.abs(op(b, trans_b)))
        bound = gemm_bound(a, b, trans_a, trans_b, 1.5, -0.5, c0, np.float32) + 2.0 ** -9 * mag
        assert_within(got, ref.gemm(a, b, c0, trans_a, trans_b, 1.5, -0.5), bound, f"tf32 {(m, n, k)}")
    a, b = operands(gen, 64, 64, 64, False, False, np.float64)  # float64 ignores tf32: exact path
    assert_within(gpu_gemm(a, b, np.zeros((64, 64)), False, False, 1.0, 0.0, tf32=True), ref.gemm(a, b),
                  gemm_bound(a, b, False, False, 1.0, 0.0, None, np.float64))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", [(), (1,), (7,), (3, 5), (0,), (2, 0, 3)])
def test_gpu_linear_and_backward(dtype, lead):
    check_linear(dtype, lead, rng(25), [(1, 1), (13, 7), (40, 33), (5, 70), (130, 129)], gpu=True)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols", [(7000, 13), (3, 5000), (600, 1100), (1, 1)])
def test_gpu_bias_gradient_sums_rows_deterministically(dtype, rows, cols):
    gen = rng(26)
    dy = gen.standard_normal((rows, cols)).astype(dtype)
    args = (to_gpu(dy), to_gpu(np.zeros((rows, 1), dtype)), to_gpu(np.zeros((cols, 1), dtype)))
    db = to_cpu(ops.linear_backward(*args)[2])
    eps = np.finfo(dtype).eps
    assert_within(db, dy.astype(np.float64).sum(0), (rows + 2) * eps * np.abs(dy.astype(np.float64)).sum(0), "db")
    np.testing.assert_array_equal(to_cpu(ops.linear_backward(*args)[2]), db)
