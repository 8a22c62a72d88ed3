"""The crash barrage: hostile calls, each run in a child process, must end in a
clean Python exception (or a normal return where the call is legal) with the
process still alive afterwards, never a segfault, an abort or a hang.

Hostile means: sizes whose products overflow 64 bits or that no machine can
allocate (zero-stride views made with as_strided / broadcast_to, so they cost no
memory), negative or zero sizes, strides and kernel sizes, NaN/Inf values,
labels out of range, read-only, broadcast or misaligned outputs (and misaligned
inputs, which must be read correctly), mismatched optimizer
state, outputs aliasing inputs, the native module called directly without the
Python layer's checks, and absurd thread counts.

All calls run in one child; if it dies, the call it was in is recorded as the
crash and a new child goes on with the rest, so the barrage costs one process
start when nothing crashes. Each call is one test, so a report names it.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import deepkern

CLEAN = (TypeError, ValueError, MemoryError, OverflowError)
HOSTILE = {}  # name -> (ops needed, exception types allowed (None: may also return), word the message names)


def hostile(*needs, raises=CLEAN, names=None):
    def register(fn):
        HOSTILE[fn.__name__] = (needs, raises, names, fn)
        return fn
    return register


def huge(shape, dtype=np.float32):
    """A read-only view of one element with an enormous shape (zero strides)."""
    return as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * len(shape))


def f32(*shape):
    return np.ones(shape, np.float32)


def readonly(a):
    a.setflags(write=False)
    return a


def misaligned(a):
    """a's values in a C-contiguous view one byte into a buffer: not aligned for its dtype."""
    b = np.empty(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    b[...] = a
    return b


# -- threads ----------------------------------------------------------------------

@hostile(raises=(ValueError,), names="set_num_threads")
def set_num_threads_zero(ops):
    deepkern.set_num_threads(0)


@hostile(raises=(ValueError,), names="set_num_threads")
def set_num_threads_negative(ops):
    deepkern.set_num_threads(-3)


@hostile(raises=(TypeError, ValueError, OverflowError), names="set_num_threads")
def set_num_threads_beyond_int(ops):
    deepkern.set_num_threads(2**40)


@hostile("gemm", raises=None)
def a_thousand_threads_then_a_parallel_gemm(ops):
    old = deepkern.get_num_threads()
    try:
        deepkern.set_num_threads(1000)
        ops.gemm(f32(800, 800), f32(800, 800))
    finally:
        deepkern.set_num_threads(old)


# -- gemm and linear -----------------------------------------------------------

@hostile("gemm", raises=(MemoryError, ValueError))
def gemm_sizes_whose_product_overflows_int64(ops):
    ops.gemm(huge((2**21, 2**21)), huge((2**21, 2**21)))  # m * n * k = 2**63


@hostile("gemm", raises=(MemoryError, ValueError))
def gemm_inner_dimension_of_2_60(ops):
    ops.gemm(huge((1, 2**60)), huge((2**60, 1)))


@hostile("gemm", raises=(ValueError,), names="out")
def gemm_into_a_read_only_out(ops):
    ops.gemm(f32(3, 4), f32(4, 5), out=readonly(f32(3, 5)))


@hostile("gemm", raises=(ValueError,), names="out")
def gemm_into_a_misaligned_out(ops):
    ops.gemm(f32(3, 4), f32(4, 5), out=misaligned(f32(3, 5)))


@hostile("gemm", raises=(ValueError,), names="out")
def gemm_into_a_broadcast_out(ops):
    ops.gemm(f32(3, 4), f32(4, 5), out=np.broadcast_to(np.float32(0), (3, 5)))


@hostile("gemm", raises=(ValueError,), names="out")
def gemm_into_a_huge_broadcast_out(ops):
    ops.gemm(huge((2**20, 4)), huge((4, 2**20)), out=huge((2**20, 2**20)))


@hostile("gemm", raises=None)
def gemm_into_out_aliasing_both_inputs(ops):
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    expect = a @ a
    ops.gemm(a, a, out=a)
    assert np.allclose(a, expect), "gemm with out aliasing its inputs must compute from the old values"


@hostile("gemm", raises=None)
def gemm_of_nan_and_inf(ops):
    ops.gemm(np.full((5, 7), np.nan, np.float32), np.full((7, 3), np.inf, np.float32))


@hostile("gemm", raises=(TypeError,), names="a")
def gemm_of_object_arrays(ops):
    ops.gemm(np.array([[1, None]], dtype=object), f32(2, 2))


@hostile("gemm", raises=(ValueError, TypeError))
def native_gemm_with_a_3d_out(ops):
    deepkern._C.gemm(f32(2, 2), f32(2, 2), f32(2, 2, 1), False, False, 1.0, 0.0)


@hostile("gemm", raises=(TypeError,))
def native_gemm_with_none(ops):
    deepkern._C.gemm(None, f32(2, 2), f32(2, 2), False, False, 1.0, 0.0)


@hostile("linear", raises=(MemoryError, ValueError))
def linear_of_a_2_40_row_broadcast(ops):
    ops.linear(huge((2**40, 4)), f32(3, 4))


@hostile("linear", raises=(ValueError,), names="w")
def linear_with_a_3d_weight(ops):
    ops.linear(f32(2, 4), f32(3, 4, 1))


@hostile("linear", raises=(ValueError,), names="y")
def native_linear_into_a_too_small_y(ops):
    deepkern._C.linear(f32(8, 4), f32(3, 4), None, f32(8, 2))


@hostile("linear", raises=(ValueError,), names="b")
def native_linear_with_a_short_bias(ops):
    deepkern._C.linear(f32(8, 4), f32(3, 4), f32(2), f32(8, 3))


@hostile("linear_backward", raises=(ValueError,), names="db")
def native_linear_backward_with_a_short_db(ops):
    deepkern._C.linear_backward(f32(8, 3), f32(8, 4), f32(3, 4), f32(8, 4), f32(3, 4), f32(2))


@hostile("linear_backward", raises=(ValueError,))
def native_linear_backward_with_overlapping_outputs(ops):
    buf = f32(3 * 4 + 3)
    deepkern._C.linear_backward(f32(8, 3), f32(8, 4), f32(3, 4), f32(8, 4), buf[:12].reshape(3, 4), buf[9:12])


# -- optimizer steps ------------------------------------------------------------

@hostile("sgd_step", raises=(ValueError,), names="params[0]")
def sgd_step_on_a_read_only_param(ops):
    ops.sgd_step([readonly(f32(10))], [f32(10)], lr=0.1)


@hostile("sgd_step", raises=(ValueError,), names="momentum_buffers[0]")
def sgd_step_with_a_misaligned_momentum_buffer(ops):
    ops.sgd_step([f32(10)], [f32(10)], [misaligned(f32(10))], lr=0.1, momentum=0.9)


@hostile("sgd_step", raises=(ValueError,), names="momentum_buffers[1]")
def sgd_step_with_a_momentum_buffer_of_another_shape(ops):
    ops.sgd_step([f32(10), f32(4, 4)], [f32(10), f32(4, 4)], [f32(10), f32(16)], lr=0.1, momentum=0.9)


@hostile("sgd_step", raises=(TypeError,), names="momentum_buffers[0]")
def sgd_step_with_a_float64_buffer_for_a_float32_param(ops):
    ops.sgd_step([f32(10)], [f32(10)], [np.ones(10)], lr=0.1, momentum=0.9)


@hostile("sgd_step", raises=(ValueError,), names="momentum_buffers[0]")
def sgd_step_with_a_strided_momentum_buffer(ops):
    ops.sgd_step([f32(10)], [f32(10)], [f32(20)[::2]], lr=0.1, momentum=0.9)


@hostile("sgd_step", raises=(ValueError,), names="momentum_buffers")
def sgd_step_with_fewer_buffers_than_params(ops):
    ops.sgd_step([f32(10), f32(3)], [f32(10), f32(3)], [f32(10)], lr=0.1, momentum=0.9)


@hostile("sgd_step", raises=(ValueError, MemoryError), names=None)
def sgd_step_with_a_huge_broadcast_grad(ops):
    ops.sgd_step([f32(3)], [huge((2**40,))], lr=0.1)


@hostile("sgd_step", raises=None)
def sgd_step_with_nan_and_inf_hyperparameters(ops):
    ops.sgd_step([f32(100)], [f32(100)], [f32(100)], lr=math.inf, momentum=0.9, dampening=math.nan)


@hostile("sgd_step", raises=None)
def sgd_step_with_the_same_param_twice(ops):
    p = f32(100_000)
    ops.sgd_step([p, p], [f32(100_000), f32(100_000)], lr=0.1)


@hostile("sgd_step", raises=(ValueError,))
def native_sgd_step_with_momentum_and_no_buffers(ops):
    deepkern._C.sgd_step([f32(10)], [f32(10)], [], 0.1, 0.9, 0.0, 0.0, False, False, False)


@hostile("sgd_step", raises=None)
def native_sgd_step_nesterov_without_momentum(ops):
    deepkern._C.sgd_step([f32(10)], [f32(10)], [], 0.1, 0.0, 0.5, 0.0, True, False, True)


@hostile("sgd_step", raises=(ValueError, TypeError), names="params")
def native_sgd_step_with_more_params_than_grads(ops):
    deepkern._C.sgd_step([f32(10), f32(2)], [f32(10)], [], 0.1, 0.0, 0.0, 0.0, False, False, False)


@hostile("adam_step", raises=(ValueError,), names="step")
def adam_step_zero(ops):
    ops.adam_step([f32(10)], [f32(10)], [f32(10)], [f32(10)], lr=0.1, step=0)


@hostile("adam_step", raises=(ValueError,), names="exp_avg_sqs[0]")
def adam_step_with_one_array_as_both_moments(ops):
    m = f32(10)
    ops.adam_step([f32(10)], [f32(10)], [m], [m], lr=0.1, step=1)


@hostile("adam_step", raises=(ValueError, OverflowError, TypeError), names="step")
def adam_step_2_63(ops):
    ops.adam_step([f32(10)], [f32(10)], [f32(10)], [f32(10)], lr=0.1, step=2**63)


@hostile("adam_step", raises=(ValueError,), names="max_exp_avg_sqs")
def amsgrad_without_its_max_buffers(ops):
    ops.adam_step([f32(10)], [f32(10)], [f32(10)], [f32(10)], lr=0.1, step=1, amsgrad=True)


@hostile("nadam_step", raises=None)
def nadam_step_with_a_zero_mu_product(ops):
    ops.nadam_step([f32(10)], [f32(10)], [f32(10)], [f32(10)], mu_product=0.0, step=1)


@hostile("grad_norm", raises=(MemoryError, ValueError))
def grad_norm_of_a_huge_broadcast(ops):
    ops.grad_norm([huge((2**40,))])


@hostile("all_finite", raises=(MemoryError, ValueError))
def all_finite_of_a_huge_broadcast(ops):
    ops.all_finite([huge((2**40,))])


@hostile("clip_grad_norm_", raises=(ValueError,), names="grads[0]")
def clip_grad_norm_of_a_read_only_grad(ops):
    ops.clip_grad_norm_([readonly(f32(10))], 0.5)


@hostile("clip_grad_norm_", raises=None)
def clip_grad_norm_of_inf_grads(ops):
    ops.clip_grad_norm_([np.full(10, np.inf, np.float32), np.full(3, np.nan)], 0.5)


# -- activations and losses ----------------------------------------------------

@hostile("cross_entropy", raises=(ValueError,), names="labels")
def cross_entropy_with_a_label_equal_to_the_class_count(ops):
    ops.cross_entropy(f32(4, 3), np.array([0, 1, 3, 2]))


@hostile("cross_entropy", raises=(ValueError,), names="labels")
def cross_entropy_with_a_negative_label(ops):
    ops.cross_entropy(f32(4, 3), np.array([0, -1, 2, 2]))


@hostile("cross_entropy", raises=(ValueError,), names="labels")
def cross_entropy_with_int64_extreme_labels(ops):
    ops.cross_entropy(f32(2, 3), np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max]))


@hostile("cross_entropy", raises=(ValueError,), names="labels")
def cross_entropy_with_a_huge_uint64_label(ops):
    ops.cross_entropy(f32(2, 3), np.array([0, 2**64 - 1], dtype=np.uint64))


@hostile("cross_entropy", raises=(TypeError,), names="labels")
def cross_entropy_with_float_labels(ops):
    ops.cross_entropy(f32(2, 3), np.array([0.0, 1.0]))


@hostile("cross_entropy", raises=(ValueError,), names="labels")
def cross_entropy_with_fewer_labels_than_rows(ops):
    ops.cross_entropy(f32(4, 3), np.array([0, 1]))


@hostile("cross_entropy_backward", raises=(ValueError,), names="labels")
def cross_entropy_backward_with_a_label_out_of_range(ops):
    ops.cross_entropy_backward(f32(4, 3), np.array([0, 1, 7, 2]))


@hostile("cross_entropy", raises=None)
def cross_entropy_of_nan_and_inf_logits(ops):
    ops.cross_entropy(np.array([[np.nan, 0, 1], [np.inf, -np.inf, 0]], np.float32), np.array([0, 1]))


@hostile("cross_entropy", raises=(MemoryError, ValueError))
def cross_entropy_of_a_2_40_row_broadcast(ops):
    ops.cross_entropy(huge((2**40, 3)), huge((2**40,), np.int64))


@hostile("mse", raises=(ValueError,))
def mse_of_mismatched_shapes(ops):
    ops.mse(f32(4, 3), f32(3, 4))


@hostile("softmax", raises=(ValueError, TypeError, OverflowError), names="dim")
def softmax_over_a_dim_out_of_range(ops):
    ops.softmax(f32(4, 3), dim=2)


@hostile("softmax", raises=(ValueError, TypeError, OverflowError), names="dim")
def softmax_over_dim_minus_2_63(ops):
    ops.softmax(f32(4, 3), dim=-2**63)


@hostile("relu", raises=None)
def relu_of_a_huge_broadcast(ops):
    try:
        ops.relu(huge((2**40,)))
    except MemoryError:
        pass


# -- pooling, batch norm, convolution (DESIGN.md signatures) -----------------------

@hostile("max_pool2d", raises=(ValueError,), names="kernel_size")
def max_pool2d_with_kernel_size_zero(ops):
    ops.max_pool2d(f32(1, 1, 4, 4), 0)


@hostile("max_pool2d", raises=(ValueError,), names="stride")
def max_pool2d_with_a_negative_stride(ops):
    ops.max_pool2d(f32(1, 1, 4, 4), 2, stride=-1)


@hostile("max_pool2d", raises=(ValueError, OverflowError), names="padding")
def max_pool2d_with_padding_2_62(ops):
    ops.max_pool2d(f32(1, 1, 4, 4), 2**62, padding=2**62)


@hostile("max_pool2d", raises=(ValueError, OverflowError), names="dilation")
def max_pool2d_with_dilation_2_62(ops):
    ops.max_pool2d(f32(1, 1, 4, 4), 3, dilation=2**62)


@hostile("max_pool2d_backward", raises=(ValueError,), names="indices")
def max_pool2d_backward_with_indices_out_of_range(ops):
    x = f32(1, 1, 4, 4)
    y, idx = ops.max_pool2d(x, 2)
    ops.max_pool2d_backward(np.ones_like(y), np.full_like(idx, 10**6), x.shape)


@hostile("avg_pool2d", raises=(ValueError, OverflowError), names="kernel_size")
def avg_pool2d_with_kernel_size_2_62(ops):
    ops.avg_pool2d(f32(1, 1, 4, 4), (2**62, 2**62))


@hostile("avg_pool2d", raises=(ValueError,), names="padding")
def avg_pool2d_with_negative_padding(ops):
    ops.avg_pool2d(f32(1, 1, 4, 4), 2, padding=-1)


@hostile("batch_norm", raises=(ValueError,), names="running_mean")
def batch_norm_with_a_read_only_running_mean(ops):
    ops.batch_norm(f32(4, 3), f32(3), f32(3), readonly(f32(3)), f32(3), True)


@hostile("batch_norm", raises=(ValueError,), names="running_mean")
def batch_norm_with_a_misaligned_running_mean(ops):
    ops.batch_norm(f32(4, 3), f32(3), f32(3), misaligned(f32(3)), f32(3), True)


@hostile("batch_norm", raises=None)
def batch_norm_of_misaligned_inputs(ops):
    x, w, b = misaligned(f32(4, 3, 5)), misaligned(f32(3)), misaligned(f32(3))
    y, mean, invstd = ops.batch_norm(x, w, b, None, None, True)
    ops.batch_norm_backward(misaligned(y), x, w, misaligned(mean), misaligned(invstd))


@hostile("batch_norm", raises=(ValueError,), names="running_var")
def batch_norm_with_a_short_running_var(ops):
    ops.batch_norm(f32(4, 3), f32(3), f32(3), f32(3), f32(2), True)


@hostile("batch_norm", raises=None)
def batch_norm_of_one_sample_per_channel(ops):
    try:
        ops.batch_norm(f32(1, 3), f32(3), f32(3), f32(3), f32(3), True)
    except ValueError:
        pass  # torch raises for a single value per channel in training mode


@hostile("conv2d", raises=(ValueError,), names="groups")
def conv2d_with_groups_zero(ops):
    ops.conv2d(f32(1, 4, 5, 5), f32(2, 4, 3, 3), groups=0)


@hostile("conv2d", raises=(ValueError, OverflowError), names="padding")
def conv2d_with_padding_2_62(ops):
    ops.conv2d(f32(1, 1, 5, 5), f32(1, 1, 3, 3), padding=2**62)


@hostile("conv2d", raises=(ValueError, OverflowError), names="stride")
def conv2d_with_stride_2_63(ops):
    ops.conv2d(f32(1, 1, 5, 5), f32(1, 1, 3, 3), stride=2**63)


@hostile("conv2d", raises=(ValueError,))
def conv2d_with_a_kernel_larger_than_the_input(ops):
    ops.conv2d(f32(1, 1, 2, 2), f32(1, 1, 3, 3))


# -- recurrent ------------------------------------------------------------------

@hostile("lstm", raises=(MemoryError, ValueError))
def lstm_over_2_36_steps_of_a_broadcast(ops):
    ops.lstm(huge((2**36, 2**20, 4)), None, None, f32(8, 4), f32(8, 2))


@hostile("lstm", raises=(MemoryError, ValueError))
def lstm_of_empty_arrays_whose_sizes_multiply_past_int64(ops):
    x = np.zeros((2**30, 2**30, 0), np.float32)  # no elements: T * B * 4H = 2**63 only counts
    deepkern._C.lstm(x, huge((2**30, 2)), huge((2**30, 2)), np.zeros((8, 0), np.float32), f32(8, 2), None, None,
                     f32(1), f32(1), f32(1))


@hostile("gru", raises=(ValueError,))
def gru_called_directly_with_outputs_of_the_wrong_shape(ops):
    deepkern._C.gru(f32(3, 2, 4), f32(2, 5), f32(15, 4), f32(15, 5), None, None, f32(3, 2, 5), f32(3, 2, 19))


@hostile("lstm_backward", raises=(ValueError,), names="gates")
def lstm_backward_called_directly_with_short_gates(ops):
    deepkern._C.lstm_backward(None, None, None, f32(3, 2, 4), f32(2, 5), f32(2, 5), f32(20, 4), f32(20, 5),
                              f32(3, 2, 5), f32(3, 2, 5), f32(3, 2, 19), f32(3, 2, 4), f32(2, 5), f32(2, 5),
                              f32(20, 4), f32(20, 5), None, None)


@hostile("lstm_cell", raises=(ValueError,), names="h_new")
def lstm_cell_called_directly_into_a_read_only_output(ops):
    deepkern._C.lstm_cell(f32(2, 4), f32(2, 5), f32(2, 5), f32(20, 4), f32(20, 5), None, None,
                          readonly(f32(2, 5)), f32(2, 5), f32(2, 20))


@hostile("gru_cell_backward", raises=(TypeError,), names="cache")
def gru_cell_backward_with_a_forged_cache(ops):
    ops.gru_cell_backward(f32(2, 5), {"x": f32(2, 4)})


@hostile("lstm", raises=None)
def lstm_of_nan_and_inf(ops):
    x = np.full((4, 2, 3), np.nan, np.float32)
    x[1] = np.inf
    y, h, c, cache = ops.lstm(x, None, None, f32(8, 3), f32(8, 2))
    ops.lstm_backward(y, h, c, cache)


# -- the child and the barrage --------------------------------------------------

def _child(names):
    """Runs in the child process: one line per call, then "alive"."""
    for name in names:
        fn = HOSTILE[name][3]
        print("start", name, flush=True)
        try:
            fn(deepkern.ops)
            out = "returned"
        except BaseException as e:  # noqa: B902 - the parent judges every kind
            out = f"{type(e).__name__} {str(e)}".replace("\n", " ")
        print("end", name, out, flush=True)
    print("alive", flush=True)


EXIT = "child process exit"


def _run_barrage(names, timeout=120):
    """{name: outcome}: the child's line, or "crash: ..." / "hang" for the call it died in."""
    results, todo = {}, list(names)
    code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import test_crash; " \
           "test_crash._child(sys.argv[1:])"
    while todo:
        try:
            p = subprocess.run([sys.executable, "-c", code] + todo, capture_output=True, text=True, timeout=timeout)
            out, err, rc = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out, err, rc = (e.stdout or b"").decode(), (e.stderr or b"").decode(), "timeout"
        current = None
        for line in out.splitlines():
            word, _, rest = line.partition(" ")
            if word == "start":
                current = rest
            elif word == "end":
                name, _, outcome = rest.partition(" ")
                results[name], current = outcome, None
        if "alive" in out.splitlines():  # all calls done; the exit must be clean too (LeakSanitizer runs there)
            if rc != 0:
                results[EXIT] = f"rc={rc}: {err[-3000:]}"
            break
        if current is None:  # died outside any call (at import)
            for name in todo:
                results.setdefault(name, f"crash outside the calls: rc={rc}: {err[-2000:]}")
            break
        results[current] = "hang" if rc == "timeout" else f"crash: rc={rc}: {err[-2000:]}"
        todo = todo[todo.index(current) + 1:]
    return results


def _available(name):
    needs = HOSTILE[name][0]
    return [n for n in needs if not hasattr(deepkern.ops, n)]


@pytest.fixture(scope="module")
def barrage():
    return _run_barrage([n for n in HOSTILE if not _available(n)])


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.skip(reason=f"deepkern.ops.{_available(n)[0]} does not exist yet")]
                 if _available(n) else []) for n in HOSTILE])
def test_hostile_call_ends_in_a_clean_exception_and_a_live_process(name, barrage):
    needs, raises, word, fn = HOSTILE[name]
    outcome = barrage[name]
    assert not outcome.startswith(("crash", "hang")), f"{name}: {outcome}"
    kind, _, message = outcome.partition(" ")
    if kind == "returned":
        assert raises is None, f"{name}: returned, expected one of {[e.__name__ for e in raises]}"
        return
    allowed = CLEAN if raises is None else raises
    assert kind in [e.__name__ for e in allowed], f"{name}: {outcome}"
    if kind in ("TypeError", "ValueError"):
        assert message.startswith("["), f"{name}: message does not name the op: {message}"
        if word:
            assert word in message, f"{name}: message does not name {word}: {message}"


def test_barrage_child_exits_cleanly(barrage):
    """After the last call the child exits with status 0 (under the sanitizer run, a leak
    found by LeakSanitizer at exit makes it nonzero)."""
    assert EXIT not in barrage, barrage.get(EXIT)


# -- checkpoints ----------------------------------------------------------------

@pytest.mark.skipif(not hasattr(deepkern, "save"), reason="deepkern.save does not exist yet")
def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """Checkpoints are atomic: a save interrupted while writing (disk full, a kill) must
    leave the previous file whole, so a resumed run finds the last good checkpoint."""
    path = tmp_path / "model.npz"
    good = {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3, np.float32)}
    deepkern.save(good, path)

    def torn_write(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", torn_write)
    monkeypatch.setattr(np, "savez_compressed", torn_write)
    with pytest.raises(OSError):
        deepkern.save({"w": np.zeros((2, 3))}, path)
    monkeypatch.undo()
    back = deepkern.load(path)
    assert set(back) == set(good) and all(np.array_equal(back[k], good[k]) for k in good), \
        "the previous checkpoint was destroyed by a failed save"
