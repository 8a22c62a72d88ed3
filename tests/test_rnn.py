"""LSTM and GRU: the cell and sequence ops against the float64 reference
(tests/reference.py) and float64 finite differences, at odd sizes (H not a
multiple of the vector width, I = 1, B = 1, T = 1, empty batches); the modules
(LSTM, GRU, LSTMCell, GRUCell, Embedding) against torch with copied weights
(stacked layers, batch_first, bidirectional, initial states, unbatched input);
and bad arguments. CI runs this file under every DEEPKERN_ISA; the learning
demonstrations are tests/test_rnn_demos.py."""
import math

import numpy as np
import pytest

import reference as ref
from deepkern import nn, ops
from helpers import DTYPES, assert_close, assert_grad, randn, requires_gpu, rng, to_cpu, to_gpu, torch_or_skip

# (B, I, H): sizes of one and primes, H below, at and past the vector widths
# (8 and 16 lanes), an empty batch, and the benchmark's small cell.
CELL_SHAPES = [(1, 1, 1), (3, 5, 7), (4, 1, 17), (2, 8, 16), (5, 3, 33), (0, 3, 5), (64, 128, 256)]
# (T, B, I, H): one step, one row, one feature, no steps, no rows, a batch big
# enough that the recurrent weights are packed, and sizes whose recurrence is
# split over threads: by batch rows (B = 64, and B = 25 split 12 + 13) and by
# hidden units (B = 8: too few rows; H = 63 and 130: slices of whole cache
# lines and a partial last vector), for a sequence, one step (a cell: nothing
# packed) and a batch of one (w_hh streamed).
SEQ_SHAPES = [(1, 1, 1, 1), (1, 3, 5, 7), (5, 2, 1, 17), (4, 1, 3, 16), (7, 3, 4, 33), (0, 2, 3, 5),
              (3, 0, 2, 4), (6, 16, 24, 40), (5, 64, 7, 63), (5, 25, 7, 75), (5, 8, 7, 130), (1, 64, 7, 63),
              (3, 1, 5, 400)]


def weights(gen, gates, i, h, dtype, bias=True):
    k = 1 / math.sqrt(h)
    w = [gen.uniform(-k, k, s).astype(dtype) for s in ((gates * h, i), (gates * h, h))]
    b = [gen.uniform(-k, k, gates * h).astype(dtype) for _ in range(2)] if bias else [None, None]
    return w + b


def sum_scale(*sizes):
    """The absolute-error scale of sums of this many terms."""
    return 1 + math.sqrt(sum(sizes))


# -- cells against the reference ----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,i,h", CELL_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_matches_reference(b, i, h, bias, dtype):
    gen = rng(b * 1000 + i * 10 + h)
    x, h0, c0 = randn(gen, (b, i), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 4, i, h, dtype, bias)
    h1, c1, cache = ops.lstm_cell(x, h0, c0, *w)
    rh, rc = ref.lstm_cell(x, h0, c0, *w)
    s = sum_scale(i, h)
    assert_close(h1, rh, dtype, scale=s, name="h_new")
    assert_close(c1, rc, dtype, scale=s, name="c_new")
    dh, dc = randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    got = ops.lstm_cell_backward(dh, dc, cache)
    dx, dh0, dc0, dw_ih, dw_hh, db = ref.lstm_cell_backward(dh, dc, x, h0, c0, *w)
    for name, g, e, sc in (("dx", got[0], dx, 4 * h), ("dh", got[1], dh0, 4 * h), ("dc", got[2], dc0, 1),
                           ("dw_ih", got[3], dw_ih, b), ("dw_hh", got[4], dw_hh, b)):
        assert_close(g, e, dtype, scale=s * sum_scale(sc), name=name)
    for name, g in (("db_ih", got[5]), ("db_hh", got[6])):
        if bias:
            assert_close(g, db, dtype, scale=sum_scale(b), name=name)
        else:
            assert g is None, f"{name} must be None without biases"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,i,h", CELL_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_reference(b, i, h, bias, dtype):
    gen = rng(b * 1000 + i * 10 + h + 1)
    x, h0 = randn(gen, (b, i), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 3, i, h, dtype, bias)
    h1, cache = ops.gru_cell(x, h0, *w)
    s = sum_scale(i, h)
    assert_close(h1, ref.gru_cell(x, h0, *w), dtype, scale=s, name="h_new")
    dh = randn(gen, (b, h), dtype)
    got = ops.gru_cell_backward(dh, cache)
    want = ref.gru_cell_backward(dh, x, h0, *w)
    for name, g, e, sc in zip(("dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"), got, want,
                              (3 * h, 3 * h, b, b, b, b)):
        if name.startswith("db") and not bias:
            assert g is None, f"{name} must be None without biases"
        else:
            assert_close(g, e, dtype, scale=s * sum_scale(sc), name=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cells_take_none_for_states_and_gradients(dtype):
    """None states are zeros, None incoming gradients are zeros."""
    gen = rng(5)
    b, i, h = 3, 4, 6
    x, z = randn(gen, (b, i), dtype), np.zeros((b, h), dtype)
    w = weights(gen, 4, i, h, dtype)
    h1, c1, cache = ops.lstm_cell(x, None, None, *w)
    h2, c2, cache2 = ops.lstm_cell(x, z, z, *w)
    assert np.array_equal(h1, h2) and np.array_equal(c1, c2)
    dh = randn(gen, (b, h), dtype)
    for a, e in zip(ops.lstm_cell_backward(dh, None, cache), ops.lstm_cell_backward(dh, z, cache2)):
        assert np.array_equal(a, e)
    w = weights(gen, 3, i, h, dtype)
    g1, cache = ops.gru_cell(x, None, *w)
    g2, cache2 = ops.gru_cell(x, z, *w)
    assert np.array_equal(g1, g2)
    for a, e in zip(ops.gru_cell_backward(None, cache), ops.gru_cell_backward(z, cache2)):
        assert np.array_equal(a, e) and not a.any()


# -- sequences against the reference ------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,b,i,h", SEQ_SHAPES)
def test_lstm_sequence_matches_reference(t, b, i, h, dtype):
    gen = rng(t * 100 + b * 10 + h)
    x, h0, c0 = randn(gen, (t, b, i), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 4, i, h, dtype)
    y, hn, cn, cache = ops.lstm(x, h0, c0, *w)
    ry, rh, rc = ref.lstm(x, h0, c0, *w)
    s = sum_scale(i, h) * (1 + t)
    for name, g, e in (("y", y, ry), ("h_n", hn, rh), ("c_n", cn, rc)):
        assert_close(g, e, dtype, scale=s, name=name)
    dy, dhn, dcn = randn(gen, (t, b, h), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    got = ops.lstm_backward(dy, dhn, dcn, cache)
    want = ref.lstm_backward(dy, dhn, dcn, x, h0, c0, *w)
    s *= sum_scale(4 * h, t * b)
    for name, g, e in zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"), got, want + (want[-1],)):
        assert_close(g, e, dtype, scale=s, name=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,b,i,h", SEQ_SHAPES)
def test_gru_sequence_matches_reference(t, b, i, h, dtype):
    gen = rng(t * 100 + b * 10 + h + 7)
    x, h0 = randn(gen, (t, b, i), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 3, i, h, dtype)
    y, hn, cache = ops.gru(x, h0, *w)
    ry, rh = ref.gru(x, h0, *w)
    s = sum_scale(i, h) * (1 + t)
    assert_close(y, ry, dtype, scale=s, name="y")
    assert_close(hn, rh, dtype, scale=s, name="h_n")
    dy, dhn = randn(gen, (t, b, h), dtype), randn(gen, (b, h), dtype)
    got = ops.gru_backward(dy, dhn, cache)
    want = ref.gru_backward(dy, dhn, x, h0, *w)
    s *= sum_scale(3 * h, t * b)
    for name, g, e in zip(("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), got, want):
        assert_close(g, e, dtype, scale=s, name=name)


def test_a_sequence_is_its_cells_step_by_step():
    """ops.lstm over T steps is lstm_cell applied T times (same kernel, same rounding)."""
    gen = rng(8)
    t, b, i, h = 4, 3, 5, 9
    x, h0, c0 = randn(gen, (t, b, i), np.float64), randn(gen, (b, h), np.float64), randn(gen, (b, h), np.float64)
    w = weights(gen, 4, i, h, np.float64)
    y, hn, cn, _ = ops.lstm(x, h0, c0, *w)
    hh, cc = h0, c0
    for step in range(t):
        hh, cc, _ = ops.lstm_cell(x[step], hh, cc, *w)
        assert_close(y[step], hh, np.float64, name=f"y[{step}]")
    assert_close(cn, cc, np.float64, name="c_n")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("t,b,i,h", [(5, 13, 6, 19), (8, 32, 100, 100)])
def test_backward_is_the_same_whether_or_not_h0_lies_before_the_states(kind, with_h0, t, b, i, h):
    """ops.lstm / ops.gru keep h0 right before hs[0], so that dw_hh is one GEMM; a
    cache whose h0 lies elsewhere takes two. Same gradients (dw_hh up to the order
    of its sums), and the caller's h0 is neither moved nor changed; the second
    shape's weight gradients are split by rows over the threads."""
    gen = rng(21)
    gates = 4 if kind == "lstm" else 3
    x, h0, c0 = randn(gen, (t, b, i), np.float64), randn(gen, (b, h), np.float64), randn(gen, (b, h), np.float64)
    h0_before = h0.copy()
    w = weights(gen, gates, i, h, np.float64)
    dy, dhn, dcn = randn(gen, (t, b, h), np.float64), randn(gen, (b, h), np.float64), randn(gen, (b, h), np.float64)
    init = (h0, c0) if kind == "lstm" else (h0,)
    out = getattr(ops, kind)(x, *(init if with_h0 else (None,) * len(init)), *w)
    cache = out[-1]
    np.testing.assert_array_equal(h0, h0_before)
    np.testing.assert_array_equal(cache.h0, h0 if with_h0 else 0)
    address = lambda a: a.__array_interface__["data"][0]
    assert address(cache.h0) + cache.h0.nbytes == address(cache.hs), "h0 is not right before hs[0]"
    apart = ops.RnnCache(cache.op, cache.x, cache.h0.copy(), cache.c0, cache.w_ih, cache.w_hh, cache.hs, cache.cs,
                         cache.gates, cache.has_b_ih, cache.has_b_hh)
    grads = (dy, dhn, dcn) if kind == "lstm" else (dy, dhn)
    together, separate = (getattr(ops, kind + "_backward")(*grads, c) for c in (cache, apart))
    names = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")
    if kind == "gru":
        names = names[:2] + names[3:]
    for name, a, e in zip(names, together, separate):
        if name == "dw_hh":
            assert_close(a, e, np.float64, scale=sum_scale(t * b), name=name)
        else:
            np.testing.assert_array_equal(a, e, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,b,i,h", [(1, 3, 5, 7), (5, 2, 1, 17), (6, 16, 24, 40), (5, 64, 7, 63), (5, 8, 7, 130),
                                     (3, 1, 5, 400), (0, 2, 3, 5)])
def test_backward_without_state_grads_skips_only_them(t, b, i, h, dtype):
    """state_grads=False (a caller that passed no initial state): dh0 / dc0 come back
    None and every other gradient is bit-identical to the full backward's, for the
    sequences (split by rows, by units, a batch of one, one step) and the cells."""
    gen = rng(t * 100 + b * 10 + h + 3)
    x, h0, c0 = randn(gen, (t, b, i), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    dy, dhn, dcn = randn(gen, (t, b, h), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    w4, w3 = weights(gen, 4, i, h, dtype), weights(gen, 3, i, h, dtype)
    cache = ops.lstm(x, h0, c0, *w4)[-1]
    full, part = ops.lstm_backward(dy, dhn, dcn, cache), ops.lstm_backward(dy, dhn, dcn, cache, state_grads=False)
    assert part[1] is None and part[2] is None
    for k in (0, 3, 4, 5, 6):
        np.testing.assert_array_equal(part[k], full[k], err_msg=f"lstm result {k}")
    cache = ops.gru(x, h0, *w3)[-1]
    full, part = ops.gru_backward(dy, dhn, cache), ops.gru_backward(dy, dhn, cache, state_grads=False)
    assert part[1] is None
    for k in (0, 2, 3, 4, 5):
        np.testing.assert_array_equal(part[k], full[k], err_msg=f"gru result {k}")
    if t == 0:
        return
    cache = ops.lstm_cell(x[0], h0, c0, *w4)[-1]
    full, part = ops.lstm_cell_backward(dy[0], dcn, cache), ops.lstm_cell_backward(dy[0], dcn, cache, False)
    assert part[1] is None and part[2] is None
    for k in (0, 3, 4, 5, 6):
        np.testing.assert_array_equal(part[k], full[k], err_msg=f"lstm_cell result {k}")
    cache = ops.gru_cell(x[0], h0, *w3)[-1]
    full, part = ops.gru_cell_backward(dy[0], cache), ops.gru_cell_backward(dy[0], cache, state_grads=False)
    assert part[1] is None
    for k in (0, 2, 3, 4, 5):
        np.testing.assert_array_equal(part[k], full[k], err_msg=f"gru_cell result {k}")


def test_sequences_give_identical_results_for_any_thread_count():
    """The recurrence splits batch rows or hidden units over threads and each GEMM
    sums in a fixed order, so 1, 2 and 3 threads give the same bits (both kernels,
    a sequence split either way, one step and a batch of one, H not a multiple of
    the vector width, and (8, 32, 100, 100), whose products after the loop are
    split by rows over 2 and 3 threads: dx's 256, the weight gradients' 400). The
    bias gradients are column sums that the engine splits over threads: close,
    not equal."""
    import deepkern
    gen = rng(12)
    old = deepkern.get_num_threads()
    sums = {10, 11, 16, 17}  # db_ih, db_hh of lstm_backward, then of gru_backward
    try:
        for t, b, i, h in ((6, 64, 9, 63), (1, 64, 9, 63), (3, 1, 5, 400), (4, 48, 16, 97), (4, 12, 16, 130),
                           (8, 32, 100, 100)):
            x, h0, c0 = (randn(gen, s, np.float32) for s in ((t, b, i), (b, h), (b, h)))
            dy, dhn, dcn = (randn(gen, s, np.float32) for s in ((t, b, h), (b, h), (b, h)))
            w4, w3 = weights(gen, 4, i, h, np.float32), weights(gen, 3, i, h, np.float32)
            results = []
            for threads in (1, 2, 3):
                deepkern.set_num_threads(threads)
                y, hn, cn, cache = ops.lstm(x, h0, c0, *w4)
                g, gn, gcache = ops.gru(x, h0, *w3)
                results.append((y, hn, cn, g, gn) + ops.lstm_backward(dy, dhn, dcn, cache)
                               + ops.gru_backward(dy, dhn, gcache))
            for r in results[1:]:
                for k, (a, e) in enumerate(zip(results[0], r)):
                    if k in sums:
                        assert_close(a, e, np.float32, scale=sum_scale(t * b), name=f"result {k}")
                    else:
                        np.testing.assert_array_equal(a, e, err_msg=f"result {k}")
    finally:
        deepkern.set_num_threads(old)


# -- finite differences in float64 ----------------------------------------------------

def _check_fd(forward, backward, inputs, probes):
    """forward(*inputs) -> outputs; loss = sum(outputs * probes); backward(probes) -> grads of inputs."""
    def loss():
        return sum(float((o * p).sum()) for o, p in zip(forward(*inputs), probes))
    grads = backward(probes)
    for k, (x, g) in enumerate(zip(inputs, grads)):
        if x is not None:
            assert_grad(g, loss, x, rtol=1e-6, atol=1e-8, name=f"input {k}")


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_gradients_by_finite_differences(bias):
    gen = rng(11)
    b, i, h = 2, 3, 5
    inputs = [randn(gen, (b, i), np.float64), randn(gen, (b, h), np.float64), randn(gen, (b, h), np.float64)] + \
        weights(gen, 4, i, h, np.float64, bias)
    probes = [randn(gen, (b, h), np.float64) for _ in range(2)]
    state = {}

    def forward(*a):
        h1, c1, state["cache"] = ops.lstm_cell(*a)
        return h1, c1

    def backward(p):
        forward(*inputs)
        dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh = ops.lstm_cell_backward(p[0], p[1], state["cache"])
        return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh

    _check_fd(forward, backward, inputs, probes)


def test_gru_cell_gradients_by_finite_differences():
    gen = rng(12)
    b, i, h = 3, 2, 5
    inputs = [randn(gen, (b, i), np.float64), randn(gen, (b, h), np.float64)] + weights(gen, 3, i, h, np.float64)
    probes = [randn(gen, (b, h), np.float64)]
    state = {}

    def forward(*a):
        h1, state["cache"] = ops.gru_cell(*a)
        return (h1,)

    def backward(p):
        forward(*inputs)
        return ops.gru_cell_backward(p[0], state["cache"])

    _check_fd(forward, backward, inputs, probes)


@pytest.mark.parametrize("t", [1, 4])
def test_lstm_sequence_gradients_by_finite_differences(t):
    """Through several time steps: every input, every weight, both initial states."""
    gen = rng(13 + t)
    b, i, h = 2, 3, 4
    inputs = [randn(gen, (t, b, i), np.float64), randn(gen, (b, h), np.float64),
              randn(gen, (b, h), np.float64)] + weights(gen, 4, i, h, np.float64)
    probes = [randn(gen, (t, b, h), np.float64), randn(gen, (b, h), np.float64), randn(gen, (b, h), np.float64)]
    state = {}

    def forward(*a):
        y, hn, cn, state["cache"] = ops.lstm(*a)
        return y, hn, cn

    def backward(p):
        forward(*inputs)
        return ops.lstm_backward(p[0], p[1], p[2], state["cache"])

    _check_fd(forward, backward, inputs, probes)


@pytest.mark.parametrize("t", [1, 5])
def test_gru_sequence_gradients_by_finite_differences(t):
    gen = rng(17 + t)
    b, i, h = 2, 3, 5
    inputs = [randn(gen, (t, b, i), np.float64), randn(gen, (b, h), np.float64)] + weights(gen, 3, i, h, np.float64)
    probes = [randn(gen, (t, b, h), np.float64), randn(gen, (b, h), np.float64)]
    state = {}

    def forward(*a):
        y, hn, state["cache"] = ops.gru(*a)
        return y, hn

    def backward(p):
        forward(*inputs)
        return ops.gru_backward(p[0], p[1], state["cache"])

    _check_fd(forward, backward, inputs, probes)


# -- bad arguments --------------------------------------------------------------------

def _lstm_args(b=2, i=3, h=4, dtype=np.float32):
    gen = rng(0)
    return [randn(gen, (b, i), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)] + \
        weights(gen, 4, i, h, dtype)


@pytest.mark.parametrize("index,bad,message", [
    (1, np.zeros((2, 255), np.float32), r"\[lstm_cell\] h has 255 columns, w_hh expects 256"),
    (1, np.zeros((3, 256), np.float32), r"\[lstm_cell\] h has 3 rows, x has 2 \(the batch\)"),
    (2, np.zeros((2, 7), np.float32), r"\[lstm_cell\] c has 7 columns, w_hh expects 256"),
    (0, np.zeros((2, 5), np.float32), r"\[lstm_cell\] x has 5 features, w_ih expects 3"),
    (0, np.zeros((1, 2, 3), np.float32), r"\[lstm_cell\] x must be 2-D"),
    (3, np.zeros((1023, 3), np.float32), r"\[lstm_cell\] w_ih has 1023 rows, expected 4 \* hidden_size"),
    (4, np.zeros((1024, 255), np.float32), r"\[lstm_cell\] w_hh must be \(1024, 256\)"),
    (4, np.zeros((1020, 256), np.float32), r"\[lstm_cell\] w_hh has 1020 rows, w_ih has 1024"),
    (5, np.zeros(1023, np.float32), r"\[lstm_cell\] b_ih must have shape \(1024,\)"),
])
def test_lstm_cell_bad_shapes_name_the_argument(index, bad, message):
    args = _lstm_args(h=256)
    args[index] = bad
    with pytest.raises(ValueError, match=message):
        ops.lstm_cell(*args)


def test_rnn_ops_reject_bad_dtypes_sequences_and_caches():
    args = _lstm_args()
    args[4] = args[4].astype(np.float64)
    with pytest.raises(TypeError, match=r"\[lstm_cell\] w_hh has dtype float64, expected float32"):
        ops.lstm_cell(*args)
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"\[lstm\] x must be 3-D \(seq_len, batch, input_size\)"):
        ops.lstm(x, None, None, *_lstm_args()[3:])
    with pytest.raises(ValueError, match=r"\[gru\] h0 has 1 rows, x has 2"):
        ops.gru(np.zeros((5, 2, 3), np.float32), np.zeros((1, 4), np.float32), *weights(rng(0), 3, 3, 4, np.float32))
    _, _, cache = ops.lstm_cell(*_lstm_args())
    with pytest.raises(TypeError, match=r"\[gru_cell_backward\] cache must be the RnnCache that gru_cell returned"):
        ops.gru_cell_backward(None, cache)
    with pytest.raises(TypeError, match=r"\[lstm_backward\] cache must be"):
        ops.lstm_backward(None, None, None, (1, 2))
    with pytest.raises(ValueError, match=r"\[lstm_cell_backward\] dh_new must have shape \(2, 4\)"):
        ops.lstm_cell_backward(np.zeros((2, 5), np.float32), None, cache)


# -- modules against torch ------------------------------------------------------------

def _to_numpy_state(tm):
    return {k: v.detach().numpy() for k, v in tm.state_dict().items()}


MODULE_CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, batch_first=True),
    dict(num_layers=3, dropout=0.5),  # dropout is off in eval mode, as torch
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True, bias=False),
]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("cfg", MODULE_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_module_matches_torch(kind, cfg, dtype, with_state):
    torch = torch_or_skip()
    torch.manual_seed(0)
    i, h, t, b = 5, 17, 6, 3
    tm = getattr(torch.nn, kind)(i, h, **cfg).to(getattr(torch, np.dtype(dtype).name)).eval()
    m = getattr(nn, kind)(i, h, dtype=dtype, **cfg).eval()
    m.load_state_dict(_to_numpy_state(tm))
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    gen = rng(1)
    bf = cfg.get("batch_first", False)
    x = randn(gen, (b, t, i) if bf else (t, b, i), dtype)
    layers = cfg["num_layers"] * (2 if cfg.get("bidirectional") else 1)
    h0, c0 = randn(gen, (layers, b, h), dtype), randn(gen, (layers, b, h), dtype)
    state = ((h0, c0) if kind == "LSTM" else h0) if with_state else None
    out, final = m(x, state)
    tx = torch.tensor(x, requires_grad=True)
    th0, tc0 = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    tstate = ((th0, tc0) if kind == "LSTM" else th0) if with_state else None
    tout, tfinal = tm(tx, tstate)
    finals = final if kind == "LSTM" else (final,)
    tfinals = tfinal if kind == "LSTM" else (tfinal,)
    s = sum_scale(i, h) * (1 + t)
    assert_close(out, tout.detach().numpy(), dtype, scale=s, name="output")
    for f, tf in zip(finals, tfinals):
        assert_close(f, tf.detach().numpy(), dtype, scale=s, name="final state")
    dout = randn(gen, out.shape, dtype)
    dfin = [randn(gen, f.shape, dtype) for f in finals]
    res = m.backward(dout, tuple(dfin) if kind == "LSTM" else dfin[0])
    loss = (tout * torch.tensor(dout)).sum() + sum((tf * torch.tensor(d)).sum() for tf, d in zip(tfinals, dfin))
    loss.backward()
    dx, d0 = res if with_state else (res, None)
    s *= sum_scale(4 * h, t * b)
    assert_close(dx, tx.grad.numpy(), dtype, scale=s, name="dx")
    if with_state:
        d0 = d0 if kind == "LSTM" else (d0,)
        for d, tv in zip(d0, (th0, tc0)):
            assert_close(d, tv.grad.numpy(), dtype, scale=s, name="d initial state")
    tp = dict(tm.named_parameters())
    for n, p in m.named_parameters():
        assert_close(p.grad, tp[n].grad.numpy(), dtype, scale=s, name=f"{n}.grad")


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_module_unbatched_input_matches_batch_of_one(kind):
    torch = torch_or_skip()
    tm = getattr(torch.nn, kind)(3, 6, num_layers=2).double()
    m = getattr(nn, kind)(3, 6, num_layers=2, dtype=np.float64)
    m.load_state_dict(_to_numpy_state(tm))
    x = randn(rng(2), (5, 3), np.float64)
    out, final = m(x)
    tout, tfinal = tm(torch.tensor(x))
    assert out.shape == (5, 6)
    assert_close(out, tout.detach().numpy(), np.float64, name="output")
    finals = final if kind == "LSTM" else (final,)
    for f, tf in zip(finals, tfinal if kind == "LSTM" else (tfinal,)):
        assert f.shape == (2, 6)
        assert_close(f, tf.detach().numpy(), np.float64, name="final")
    dx = m.backward(np.ones((5, 6)))
    assert dx.shape == (5, 3)


def test_lstm_unbatched_with_state_and_half_a_final_state_gradient():
    """Unbatched states are (num_layers, H); d_state may give dh_n and leave dc_n None."""
    torch = torch_or_skip()
    tm = torch.nn.LSTM(3, 4, num_layers=2).double()
    m = nn.LSTM(3, 4, num_layers=2, dtype=np.float64)
    m.load_state_dict(_to_numpy_state(tm))
    gen = rng(9)
    x, h0, c0 = randn(gen, (5, 3), np.float64), randn(gen, (2, 4), np.float64), randn(gen, (2, 4), np.float64)
    out, (h, c) = m(x, (h0, c0))
    th0, tc0 = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    tout, (th, tc) = tm(torch.tensor(x), (th0, tc0))
    assert_close(out, tout.detach().numpy(), np.float64, name="output")
    assert_close(c, tc.detach().numpy(), np.float64, name="c_n")
    dx, (dh0, dc0) = m.backward(np.ones((5, 4)), (np.ones((2, 4)), None))
    (tout.sum() + th.sum()).backward()
    assert dh0.shape == (2, 4) and dc0.shape == (2, 4)
    assert_close(dh0, th0.grad.numpy(), np.float64, name="dh0")
    assert_close(dc0, tc0.grad.numpy(), np.float64, name="dc0")


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_modules_match_torch(kind, batched, dtype):
    torch = torch_or_skip()
    torch.manual_seed(1)
    i, h, b = 7, 19, 4
    tm = getattr(torch.nn, kind)(i, h).to(getattr(torch, np.dtype(dtype).name))
    m = getattr(nn, kind)(i, h, dtype=dtype)
    m.load_state_dict(_to_numpy_state(tm))
    gen = rng(3)
    lead = (b,) if batched else ()
    x, h0, c0 = randn(gen, lead + (i,), dtype), randn(gen, lead + (h,), dtype), randn(gen, lead + (h,), dtype)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if kind == "LSTMCell":
        (h1, c1), (th1, tc1) = m(x, (h0, c0)), tm(tx, (th, tc))
        outs, touts = (h1, c1), (th1, tc1)
    else:
        outs, touts = (m(x, h0),), (tm(tx, th),)
    s = sum_scale(i, h)
    for o, to in zip(outs, touts):
        assert_close(o, to.detach().numpy(), dtype, scale=s, name="output")
    douts = [randn(gen, o.shape, dtype) for o in outs]
    sum((to * torch.tensor(d)).sum() for to, d in zip(touts, douts)).backward()
    dx, dstate = m.backward(*douts)
    assert_close(dx, tx.grad.numpy(), dtype, scale=s * sum_scale(4 * h), name="dx")
    dstates = dstate if kind == "LSTMCell" else (dstate,)
    for d, tv in zip(dstates, (th, tc)):
        assert_close(d, tv.grad.numpy(), dtype, scale=s * sum_scale(4 * h), name="d state")
    tp = dict(tm.named_parameters())
    for n, p in m.named_parameters():
        assert_close(p.grad, tp[n].grad.numpy(), dtype, scale=s * sum_scale(b), name=f"{n}.grad")


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_cell_module_in_a_loop_backpropagates_through_time_like_the_layer(kind):
    """T forwards of a cell in training mode, then T backwards (latest first), give the
    layer's gradients: the cell keeps one cache per forward."""
    gen = rng(4)
    t, b, i, h = 5, 3, 4, 6
    layer = getattr(nn, kind)(i, h, dtype=np.float64, rng=gen)
    cell = getattr(nn, kind + "Cell")(i, h, dtype=np.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x, dy = randn(gen, (t, b, i), np.float64), randn(gen, (t, b, h), np.float64)
    out, _ = layer(x)
    dx = layer.backward(dy)
    state, outs = None, []
    for step in range(t):
        state = cell(x[step], state)
        outs.append(state[0] if kind == "LSTM" else state)
    assert_close(np.stack(outs), out, np.float64, name="outputs")
    dstate = None
    for step in reversed(range(t)):
        dh = dy[step] + (0 if dstate is None else (dstate[0] if kind == "LSTM" else dstate))
        if kind == "LSTM":
            res = cell.backward(dh, None if dstate is None else dstate[1])
        else:
            res = cell.backward(dh)
        dxs, dstate = res if step > 0 else (res, None)
        assert_close(dxs, dx[step], np.float64, scale=10, name=f"dx[{step}]")
    for n, p in cell.named_parameters():
        assert_close(p.grad, getattr(layer, n + "_l0").grad, np.float64, scale=10, name=n)
    with pytest.raises(RuntimeError, match="without a forward"):
        cell.backward(dy[0])


def test_dropout_between_layers_is_seeded_and_differentiated():
    """Training mode drops layer outputs (not the last layer's); the gradient matches
    finite differences with the same masks (the module's generator reseeded per call)."""
    gen = rng(6)
    m = nn.LSTM(3, 4, num_layers=2, dropout=0.4, dtype=np.float64, rng=gen)
    x = randn(gen, (4, 2, 3), np.float64)
    probe = randn(gen, (4, 2, 4), np.float64)

    def loss():
        m._dropout_rng = np.random.default_rng(99)
        return float((m(x)[0] * probe).sum())

    loss()
    m.zero_grad()
    dx = m.backward(probe)
    assert_grad(dx, loss, x, rtol=1e-6, atol=1e-8, name="dx with dropout")
    m.eval()
    assert np.array_equal(m(x)[0], m(x)[0])
    m.train()
    m._dropout_rng = np.random.default_rng(1)
    a = m(x)[0]
    assert not np.array_equal(a, m(x)[0]), "two training forwards drew the same mask"


def test_module_output_that_backward_reads_is_read_only():
    """A time-major output is the last layer's saved states: writing it in place would
    silently change the gradients, so it comes back read-only; copies stay writeable."""
    x = np.zeros((3, 2, 4), np.float32)
    out, (h, c) = nn.LSTM(4, 5)(x)
    assert not out.flags.writeable and h.flags.writeable and c.flags.writeable
    with pytest.raises(ValueError):
        out += 1
    assert nn.GRU(4, 5, batch_first=True)(x)[0].flags.writeable
    assert nn.GRU(4, 5, bidirectional=True)(x)[0].flags.writeable


def test_module_parameters_follow_torch_names_shapes_and_init():
    m = nn.LSTM(10, 20, num_layers=2, bidirectional=True, rng=rng(0))
    names = [n for n, _ in m.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse"]
    assert m.weight_ih_l1.shape == (80, 40) and m.weight_hh_l1_reverse.shape == (80, 20)
    bound = 1 / math.sqrt(20)
    for n, p in m.named_parameters():
        assert np.abs(p.data).max() <= bound, n
    assert nn.GRU(3, 5).weight_ih_l0.shape == (15, 3)
    e = nn.GRUCell(3, 5, bias=False)
    assert [n for n, _ in e.named_parameters()] == ["weight_ih", "weight_hh"]


def test_module_errors_are_clear():
    m = nn.LSTM(4, 6, num_layers=2)
    with pytest.raises(ValueError, match=r"\[LSTM\] input has 5 features \(last dimension\), expected input_size=4"):
        m(np.zeros((3, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[LSTM\] h0 must have shape \(2, 2, 6\)"):
        m(np.zeros((3, 2, 4), np.float32), (np.zeros((1, 2, 6), np.float32), np.zeros((2, 2, 6), np.float32)))
    with pytest.raises(TypeError, match=r"\[LSTM\] state must be a pair"):
        m(np.zeros((3, 2, 4), np.float32), np.zeros((2, 2, 6), np.float32))
    with pytest.raises(TypeError, match=r"\[LSTM\] input has dtype float64, the module's parameters are float32"):
        m(np.zeros((3, 2, 4)))
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        nn.GRU(4, 6).backward(np.zeros((3, 2, 6), np.float32))
    m(np.zeros((3, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"\[LSTM\] d_output must have the output's shape \(3, 2, 6\)"):
        m.backward(np.zeros((3, 2, 7), np.float32))
    with pytest.raises(ValueError, match=r"\[LSTM\] dc_n must have shape \(2, 2, 6\)"):
        m.backward(np.zeros((3, 2, 6), np.float32), (None, np.zeros((2, 6), np.float32)))
    with pytest.raises(ValueError, match=r"\[GRU\] hidden_size must be an integer >= 1"):
        nn.GRU(4, 0)
    with pytest.raises(ValueError, match=r"\[LSTM\] proj_size"):
        nn.LSTM(4, 6, proj_size=2)
    with pytest.raises(ValueError, match=r"\[LSTMCell\] h must have shape \(2, 6\)"):
        nn.LSTMCell(4, 6)(np.zeros((2, 4), np.float32), (np.zeros((3, 6), np.float32), np.zeros((2, 6), np.float32)))


# -- Embedding --------------------------------------------------------------------

@pytest.mark.parametrize("padding_idx", [None, 3, -1])
def test_embedding_matches_torch(padding_idx):
    torch = torch_or_skip()
    tm = torch.nn.Embedding(10, 5, padding_idx=padding_idx).double()
    m = nn.Embedding(10, 5, padding_idx=padding_idx, dtype=np.float64)
    m.load_state_dict(_to_numpy_state(tm))
    idx = np.array([[1, 3, 3], [9, 0, 3]])
    y = m(idx)
    ty = tm(torch.tensor(idx))
    assert_close(y, ty.detach().numpy(), np.float64, name="embedding")
    dy = randn(rng(7), y.shape, np.float64)
    assert m.backward(dy) is None
    (ty * torch.tensor(dy)).sum().backward()
    assert_close(m.weight.grad, tm.weight.grad.numpy(), np.float64, name="weight.grad")
    if padding_idx is not None:
        assert not m.weight.grad[padding_idx % 10].any()


def test_embedding_checks_indices():
    m = nn.Embedding(4, 2)
    assert m(np.zeros((0, 3), np.int64)).shape == (0, 3, 2)
    with pytest.raises(ValueError, match=r"\[Embedding\] index 4 is out of range for 4 embeddings"):
        m(np.array([0, 4]))
    with pytest.raises(ValueError, match=r"\[Embedding\] index -1 is out of range"):
        m(np.array([-1, 2]))
    with pytest.raises(TypeError, match=r"\[Embedding\] indices must be an integer array, got float32"):
        m(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"\[Embedding\] padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)


# -- the CUDA kernels ---------------------------------------------------------------
# The cells and sequences on CuPy arrays against the CPU op and the float64
# reference: hidden sizes off the warp size, a batch of one, one step, no bias,
# None for states and incoming gradients; the cache holds CuPy arrays.

# Fixed edge cases, then seeded random sizes.
GPU_CELL_SHAPES = [(1, 1, 1), (1, 5, 7), (3, 5, 33), (4, 1, 45), (2, 8, 100), (0, 3, 5), (64, 128, 257)] + \
    [tuple(int(v) for v in s) for s in rng(21).integers(1, 70, (3, 3))]
GPU_SEQ_SHAPES = [(1, 1, 1, 1), (1, 3, 5, 7), (5, 1, 1, 17), (7, 3, 4, 33), (4, 2, 6, 70), (0, 2, 3, 5),
                  (3, 0, 2, 4), (6, 16, 24, 40)] + \
    [tuple(int(v) for v in s) for s in rng(22).integers(1, 40, (3, 4))]


def _gpu_all(*arrays):
    return [to_gpu(a) for a in arrays]


def _check_gpu(got, cpu, want, names, dtype, scale):
    for name, g, c, e in zip(names, got, cpu, want):
        if c is None:
            assert g is None, f"{name} must be None"
            continue
        g = to_cpu(g)
        assert g.dtype == dtype and g.shape == c.shape, f"{name}: {g.dtype} {g.shape}"
        assert_close(g, c, dtype, scale=scale, name=f"{name} GPU vs CPU")
        assert_close(g, e, dtype, scale=scale, name=f"{name} GPU vs reference")


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,i,h", GPU_CELL_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gpu_lstm_cell_matches_cpu_and_reference(b, i, h, bias, dtype):
    import cupy
    gen = rng(b * 1000 + i * 10 + h + 3)
    x, h0, c0 = randn(gen, (b, i), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 4, i, h, dtype, bias)
    gx, gh0, gc0 = _gpu_all(x, h0, c0)
    gw = _gpu_all(*w)
    h1, c1, cache = ops.lstm_cell(gx, gh0, gc0, *gw)
    assert isinstance(cache.gates, cupy.ndarray) and isinstance(cache.cs, cupy.ndarray)
    ch1, cc1, ccache = ops.lstm_cell(x, h0, c0, *w)
    rh, rc = ref.lstm_cell(x, h0, c0, *w)
    s = sum_scale(i, h)
    _check_gpu((h1, c1), (ch1, cc1), (rh, rc), ("h_new", "c_new"), dtype, s)
    assert_close(to_cpu(cache.gates), ccache.gates, dtype, scale=s, name="gates GPU vs CPU")
    dh, dc = randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    got = ops.lstm_cell_backward(to_gpu(dh), to_gpu(dc), cache)
    cpu = ops.lstm_cell_backward(dh, dc, ccache)
    dx, dh0, dc0, dw_ih, dw_hh, db = ref.lstm_cell_backward(dh, dc, x, h0, c0, *w)
    want = (dx, dh0, dc0, dw_ih, dw_hh, db, db)
    _check_gpu(got, cpu, want, ("dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh"), dtype,
               s * sum_scale(4 * h, b))
    # None: zero states and a zero incoming gradient, as on the CPU
    h1, c1, cache = ops.lstm_cell(gx, None, None, *gw)
    ch1, cc1, ccache = ops.lstm_cell(x, None, None, *w)
    assert_close(to_cpu(h1), ch1, dtype, scale=s, name="h_new from None")
    got = ops.lstm_cell_backward(None, to_gpu(dc), cache)
    cpu = ops.lstm_cell_backward(None, dc, ccache)
    for name, g, c in zip(("dx", "dh", "dc", "dw_ih", "dw_hh"), got, cpu):
        assert_close(to_cpu(g), c, dtype, scale=s * sum_scale(4 * h, b), name=f"{name} from None")


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,i,h", GPU_CELL_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gpu_gru_cell_matches_cpu_and_reference(b, i, h, bias, dtype):
    import cupy
    gen = rng(b * 1000 + i * 10 + h + 5)
    x, h0 = randn(gen, (b, i), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 3, i, h, dtype, bias)
    gw = _gpu_all(*w)
    h1, cache = ops.gru_cell(to_gpu(x), to_gpu(h0), *gw)
    assert isinstance(cache.gates, cupy.ndarray)
    ch1, ccache = ops.gru_cell(x, h0, *w)
    s = sum_scale(i, h)
    _check_gpu((h1,), (ch1,), (ref.gru_cell(x, h0, *w),), ("h_new",), dtype, s)
    assert_close(to_cpu(cache.gates), ccache.gates, dtype, scale=s, name="saved GPU vs CPU")
    dh = randn(gen, (b, h), dtype)
    got = ops.gru_cell_backward(to_gpu(dh), cache)
    cpu = ops.gru_cell_backward(dh, ccache)
    want = ref.gru_cell_backward(dh, x, h0, *w)
    _check_gpu(got, cpu, want, ("dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"), dtype, s * sum_scale(3 * h, b))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,b,i,h", GPU_SEQ_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gpu_lstm_sequence_matches_cpu_and_reference(t, b, i, h, bias, dtype):
    gen = rng(t * 100 + b * 10 + h + 11)
    x, h0, c0 = randn(gen, (t, b, i), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 4, i, h, dtype, bias)
    y, hn, cn, cache = ops.lstm(*_gpu_all(x, h0, c0), *_gpu_all(*w))
    cy, chn, ccn, ccache = ops.lstm(x, h0, c0, *w)
    ry, rh, rc = ref.lstm(x, h0, c0, *w)
    s = sum_scale(i, h) * (1 + t)
    _check_gpu((y, hn, cn), (cy, chn, ccn), (ry, rh, rc), ("y", "h_n", "c_n"), dtype, s)
    dy, dhn, dcn = randn(gen, (t, b, h), dtype), randn(gen, (b, h), dtype), randn(gen, (b, h), dtype)
    got = ops.lstm_backward(*_gpu_all(dy, dhn, dcn), cache)
    cpu = ops.lstm_backward(dy, dhn, dcn, ccache)
    want = ref.lstm_backward(dy, dhn, dcn, x, h0, c0, *w)
    want = want + (want[-1],)
    _check_gpu(got, cpu, want, ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"), dtype,
               s * sum_scale(4 * h, t * b))
    # None for the incoming gradients: only dh_n flows back
    got = ops.lstm_backward(None, to_gpu(dhn), None, cache)
    cpu = ops.lstm_backward(None, dhn, None, ccache)
    for name, g, c in zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh"), got, cpu):
        assert_close(to_cpu(g), c, dtype, scale=s * sum_scale(4 * h, t * b), name=f"{name} from dh_n alone")


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,b,i,h", GPU_SEQ_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gpu_gru_sequence_matches_cpu_and_reference(t, b, i, h, bias, dtype):
    gen = rng(t * 100 + b * 10 + h + 13)
    x, h0 = randn(gen, (t, b, i), dtype), randn(gen, (b, h), dtype)
    w = weights(gen, 3, i, h, dtype, bias)
    y, hn, cache = ops.gru(to_gpu(x), to_gpu(h0), *_gpu_all(*w))
    cy, chn, ccache = ops.gru(x, h0, *w)
    ry, rh = ref.gru(x, h0, *w)
    s = sum_scale(i, h) * (1 + t)
    _check_gpu((y, hn), (cy, chn), (ry, rh), ("y", "h_n"), dtype, s)
    dy, dhn = randn(gen, (t, b, h), dtype), randn(gen, (b, h), dtype)
    got = ops.gru_backward(to_gpu(dy), to_gpu(dhn), cache)
    cpu = ops.gru_backward(dy, dhn, ccache)
    want = ref.gru_backward(dy, dhn, x, h0, *w)
    _check_gpu(got, cpu, want, ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), dtype, s * sum_scale(3 * h, t * b))
    y, hn, cache = ops.gru(to_gpu(x), None, *_gpu_all(*w))
    cy, chn, ccache = ops.gru(x, None, *w)
    assert_close(to_cpu(y), cy, dtype, scale=s, name="y from h0 None")
    got = ops.gru_backward(to_gpu(dy), None, cache)
    cpu = ops.gru_backward(dy, None, ccache)
    for name, g, c in zip(("dx", "dh0", "dw_ih", "dw_hh"), got, cpu):
        assert_close(to_cpu(g), c, dtype, scale=s * sum_scale(3 * h, t * b), name=f"{name} from dy alone")


@requires_gpu
def test_gpu_rnn_ops_check_their_arrays_like_the_cpu():
    x, h, c, w_ih, w_hh, b_ih, b_hh = _lstm_args()
    gx, gh, gc, gwi, gwh = _gpu_all(x, h, c, w_ih, w_hh)
    with pytest.raises(TypeError, match=r"\[lstm_cell\] h is not a CUDA array but x is"):
        ops.lstm_cell(gx, h, gc, gwi, gwh)
    with pytest.raises(ValueError, match=r"\[lstm_cell\] h has 3 columns, w_hh expects 4"):
        ops.lstm_cell(gx, to_gpu(np.zeros((2, 3), np.float32)), gc, gwi, gwh)
    with pytest.raises(TypeError, match=r"w_hh has dtype float64, expected float32"):
        ops.lstm_cell(gx, gh, gc, gwi, to_gpu(w_hh.astype(np.float64)))
    with pytest.raises(ValueError, match=r"\[gru\] x must be 3-D"):
        ops.gru(gx, None, *_gpu_all(*weights(rng(0), 3, 3, 4, np.float32)))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.lstm_cell(to_gpu(np.zeros((3, 2), np.float32)).T, gh, gc, gwi, gwh)


def test_cuda_rnn_arguments_are_checked_before_any_gpu_work():
    """Runs everywhere: interface-only arrays reach the binding's CUDA checks, which
    raise the CPU path's errors; arguments that pass them are then refused by the
    CUDA side as not device memory (or no GPU at all)."""
    from deepkern import _C
    from test_activation import FakeCudaArray

    addr = iter(range(0x10000, 0x10000000, 0x10000))

    def fake(shape, typestr="<f4"):
        a = FakeCudaArray(shape, typestr)
        a.__cuda_array_interface__["data"] = (next(addr), False)
        return a

    b, i, h = 2, 3, 4
    x, h0, c0, w_ih, w_hh = fake((b, i)), fake((b, h)), fake((b, h)), fake((4 * h, i)), fake((4 * h, h))
    outs = lambda: (fake((b, h)), fake((b, h)), fake((b, 4 * h)))  # noqa: E731
    if not _C.cuda_built:
        with pytest.raises(TypeError, match="built without CUDA"):
            _C.lstm_cell(x, h0, c0, w_ih, w_hh, None, None, *outs())
        return
    with pytest.raises(TypeError, match=r"\[lstm_cell\] h is not a CUDA array but x is"):
        _C.lstm_cell(x, np.zeros((b, h), np.float32), c0, w_ih, w_hh, None, None, *outs())
    with pytest.raises(ValueError, match=r"\[lstm_cell\] h has 3 columns, w_hh expects 4"):
        _C.lstm_cell(x, fake((b, 3)), c0, w_ih, w_hh, None, None, *outs())
    with pytest.raises(ValueError, match=r"\[lstm_cell\] w_ih has 15 rows, expected 4 \* hidden_size"):
        _C.lstm_cell(x, h0, c0, fake((15, i)), w_hh, None, None, *outs())
    with pytest.raises(TypeError, match=r"\[lstm_cell\] w_hh has dtype float64, expected float32"):
        _C.lstm_cell(x, h0, c0, w_ih, fake((4 * h, h), "<f8"), None, None, *outs())
    with pytest.raises(ValueError, match=r"\[lstm_cell\] b_ih must have shape \(16,\), got \(15,\)"):
        _C.lstm_cell(x, h0, c0, w_ih, w_hh, fake((15,)), None, *outs())
    ro = fake((b, h))
    ro.__cuda_array_interface__["data"] = (ro.__cuda_array_interface__["data"][0], True)
    with pytest.raises(ValueError, match=r"\[lstm_cell\] h_new is written in place and must be writeable"):
        _C.lstm_cell(x, h0, c0, w_ih, w_hh, None, None, ro, fake((b, h)), fake((b, 4 * h)))
    with pytest.raises(ValueError, match=r"\[gru\] x must be 3-D"):
        _C.gru(x, h0, fake((3 * h, i)), fake((3 * h, h)), None, None, fake((1, b, h)), fake((1, b, 4 * h)))
    with pytest.raises(ValueError, match=r"\[gru_backward\] saved must have shape \(5, 2, 16\)"):
        _C.gru_backward(None, None, fake((5, b, i)), h0, fake((3 * h, i)), fake((3 * h, h)), fake((5, b, h)),
                        fake((5, b, 12)), fake((5, b, i)), fake((b, h)), fake((3 * h, i)), fake((3 * h, h)), None,
                        None)
    # Checks passed: the CUDA side refuses host addresses (or finds no GPU).
    with pytest.raises((RuntimeError, ValueError), match=r"\[lstm"):
        _C.lstm_cell(x, h0, c0, w_ih, w_hh, None, None, *outs())
