"""The fused optimizer kernels and the optimizers built on them.

- ops.<name>_step against the textbook formulas of reference.py (float64 references,
  several steps, many tensors of odd sizes in one call, every option);
- deepkern.optim.<Name> against torch.optim.<Name> (its default for-loop path) over 100
  steps for every option combination: relative error of the parameters' displacement
  (max |ours - torch| / max |torch - start|) and of every state array
  (max |ours - torch| / max |torch|) below 1e-5 in float32 and 1e-12 in float64;
- state_dict round trips continue bit-identically; the non-finite rule leaves every
  parameter and state untouched; one thread and two give the same bits;
- bad input raises before anything is written; gradient clipping and penalties.
"""
import itertools

import numpy as np
import pytest

import reference as ref
from deepkern import nn, ops, optim, set_num_threads, get_num_threads
from helpers import DTYPES, assert_close, randn, requires_gpu, rng, to_cpu, to_gpu, torch_or_skip

SHAPES = [(7, 13), (1,), (17,), (3, 5, 2), (129,), (16,)]
REL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def arrays(dtype, seed, shapes=SHAPES):
    g = rng(seed)
    return [randn(g, s, dtype) for s in shapes]


# -- ops against the textbook formulas -------------------------------------------------------

# name -> (ops call, reference step, state arrays, option sets)
def _adagrad(ps, gs, st, t, o):
    return ops.adagrad_step(ps, gs, st["sum"], step=t, **o)


def _adadelta(ps, gs, st, t, o):
    return ops.adadelta_step(ps, gs, st["square_avg"], st["acc_delta"], **o)


def _rmsprop(ps, gs, st, t, o):
    return ops.rmsprop_step(ps, gs, st["square_avg"], st["grad_avg"], st["buf"], **o)


def _adam(ps, gs, st, t, o):
    return ops.adam_step(ps, gs, st["m"], st["v"], st["vmax"], step=t, **o)


def _adamax(ps, gs, st, t, o):
    return ops.adamax_step(ps, gs, st["m"], st["u"], step=t, **o)


def _nadam(ps, gs, st, t, o):
    mu = st.setdefault("mu_product", [1.0])
    mu[0] *= ops.nadam_mu(o.get("beta1", 0.9), o.get("momentum_decay", 4e-3), t)
    return ops.nadam_step(ps, gs, st["m"], st["v"], step=t, mu_product=mu[0], **o)


KERNELS = {
    "adagrad": (_adagrad, ref.adagrad_step, ["sum"], [
        dict(lr=0.1), dict(lr=0.05, lr_decay=0.1, weight_decay=0.2, eps=1e-6, maximize=True)]),
    "adadelta": (_adadelta, ref.adadelta_step, ["square_avg", "acc_delta"], [
        dict(), dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True)]),
    "rmsprop": (_rmsprop, ref.rmsprop_step, ["square_avg", "grad_avg", "buf"], [
        dict(lr=0.01), dict(lr=0.01, alpha=0.9, centered=True),
        dict(lr=0.01, momentum=0.9, weight_decay=0.1, maximize=True),
        dict(lr=0.02, centered=True, momentum=0.5, eps=1e-4)]),
    "adam": (_adam, ref.adam_step, ["m", "v", "vmax"], [
        dict(lr=0.01), dict(lr=0.01, beta1=0.8, beta2=0.99, weight_decay=0.1, amsgrad=True),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        dict(lr=0.01, amsgrad=True, decoupled_weight_decay=True, weight_decay=0.3, eps=1e-3)]),
    "adamax": (_adamax, ref.adamax_step, ["m", "u"], [
        dict(lr=0.01), dict(lr=0.01, beta1=0.5, beta2=0.9, weight_decay=0.1, eps=1e-3, maximize=True)]),
    "nadam": (_nadam, ref.nadam_step, ["m", "v"], [
        dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, momentum_decay=0.01),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)]),
}
KERNEL_CASES = [(name, i) for name, (_, _, _, opts) in KERNELS.items() for i in range(len(opts))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,case", KERNEL_CASES)
def test_step_matches_textbook_formula(name, case, dtype):
    call, reference, names, options = KERNELS[name]
    o = options[case]
    ps = arrays(dtype, 1)
    st = {n: [np.zeros_like(p) for p in ps] for n in names}
    if name == "adagrad":
        st["sum"] = [np.full_like(p, 0.1) for p in ps]
    ref_p = [p.astype(np.float64) for p in ps]
    ref_s = [dict(G=0.1) if name == "adagrad" else {} for _ in ps]
    for t in range(1, 4):
        gs = arrays(dtype, 100 + t)
        assert call(ps, gs, st, t, o) is True
        for i, g in enumerate(gs):
            ref_p[i], ref_s[i] = reference(ref_p[i], g, ref_s[i], **o)
    for i, p in enumerate(ps):
        assert_close(p, ref_p[i], dtype, name=f"{name} param {i}")


def test_empty_lists_and_empty_tensors():
    assert ops.adam_step([], [], [], [], step=1) is True
    p, g = np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    assert ops.adam_step([p], [g], [p.copy()], [p.copy()], step=1, check_finite=True) is True
    assert ops.clip_grad_norm_([], 1.0) == 0.0
    assert ops.grad_norm([g]) == 0.0


# -- the optimizers against torch.optim over 100 steps ---------------------------------------

def _grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*axes.values())]


TORCH_CASES = (
    [("Adam", o) for o in _grid(lr=[0.01], weight_decay=[0.0, 0.1], amsgrad=[False, True], maximize=[False, True])]
    + [("AdamW", o) for o in _grid(lr=[0.01], weight_decay=[0.0, 0.1], amsgrad=[False, True],
                                   maximize=[False, True])]
    + [("Adam", dict(lr=0.003, betas=(0.8, 0.95), eps=1e-6, decoupled_weight_decay=True, weight_decay=0.05))]
    + [("Adagrad", o) for o in _grid(lr=[0.1], lr_decay=[0.0, 0.01], weight_decay=[0.0, 0.1],
                                     initial_accumulator_value=[0.0, 0.1], maximize=[False, True])]
    + [("Adadelta", o) for o in _grid(lr=[1.0, 0.5], rho=[0.9], weight_decay=[0.0, 0.1], maximize=[False, True])]
    + [("RMSprop", o) for o in _grid(lr=[0.01], centered=[False, True], momentum=[0.0, 0.9],
                                     weight_decay=[0.0, 0.1], maximize=[False, True])]
    + [("RMSprop", dict(lr=0.003, alpha=0.9, eps=1e-6))]
    + [("Adamax", o) for o in _grid(lr=[0.01], weight_decay=[0.0, 0.1], maximize=[False, True])]
    + [("Adamax", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-4))]
    + [("NAdam", o) for o in _grid(lr=[0.01], weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
                                   momentum_decay=[4e-3, 2e-2], maximize=[False, True])]
)
STATE_NAMES = {"Adam": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
               "AdamW": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
               "Adagrad": ["sum"], "Adadelta": ["square_avg", "acc_delta"],
               "RMSprop": ["square_avg", "momentum_buffer", "grad_avg"], "Adamax": ["exp_avg", "exp_inf"],
               "NAdam": ["exp_avg", "exp_avg_sq"]}


@pytest.fixture
def torch_dtype():
    """Sets torch's default dtype for a test (torch keeps step counts and NAdam's
    mu_product in it) and restores it."""
    torch = torch_or_skip()
    old = torch.get_default_dtype()
    yield lambda dtype: torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    torch.set_default_dtype(old)


def rel_err(ours, theirs, start=None):
    """max |ours - theirs| relative to max |theirs - start| (the displacement) or max |theirs|."""
    theirs = np.asarray(theirs, np.float64)
    scale = np.abs(theirs - (0.0 if start is None else start)).max()
    return np.abs(np.asarray(ours, np.float64) - theirs).max() / max(scale, 1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,options", TORCH_CASES,
                         ids=[f"{n}-" + "-".join(f"{k}={v}" for k, v in o.items()) for n, o in TORCH_CASES])
def test_optimizer_matches_torch_over_100_steps(name, options, dtype, torch_dtype):
    import torch

    torch_dtype(dtype)
    start = arrays(dtype, 2)
    ours = [nn.Parameter(a.copy()) for a in start]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in start]
    opt = getattr(optim, name)(ours, **options)
    topt = getattr(torch.optim, name)(theirs, foreach=False, **options)
    g = rng(3)
    for _ in range(100):
        grads = [randn(g, a.shape, dtype) for a in start]
        for p, t, gr in zip(ours, theirs, grads):
            p.grad, t.grad = gr, torch.from_numpy(gr.copy())
        assert opt.step() is True
        topt.step()
    tol = REL[np.dtype(dtype)]
    for i, (p, t, a) in enumerate(zip(ours, theirs, start)):
        err = rel_err(p.data, t.detach().numpy(), a)
        assert err < tol, f"param {i}: relative error {err:.3g}"
        for key in STATE_NAMES[name]:
            if key in topt.state[t]:
                err = rel_err(opt.state[p][key], topt.state[t][key].numpy())
                assert err < tol, f"state {key} of param {i}: relative error {err:.3g}"
        assert opt.state[p]["step"] == int(topt.state[t]["step"])


def test_param_groups_with_own_hyperparameters_match_torch(torch_dtype):
    import torch

    torch_dtype(np.float64)
    start = arrays(np.float64, 4)
    ours = [nn.Parameter(a.copy()) for a in start]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in start]
    groups = lambda ps: [{"params": ps[:2], "lr": 0.05, "weight_decay": 0.1}, {"params": ps[2:4]},  # noqa: E731
                         {"params": ps[4:], "betas": (0.5, 0.9), "amsgrad": True}]
    opt, topt = optim.Adam(groups(ours), lr=0.01), torch.optim.Adam(groups(theirs), lr=0.01, foreach=False)
    g = rng(5)
    for step in range(20):
        for i, (p, t) in enumerate(zip(ours, theirs)):
            if i == 3 and step % 3 == 0:  # a param without a grad is skipped, its step count lags
                p.grad, t.grad = None, None
                continue
            gr = randn(g, p.shape, np.float64)
            p.grad, t.grad = gr, torch.from_numpy(gr.copy())
        opt.step()
        topt.step()
    for p, t, a in zip(ours, theirs, start):
        assert rel_err(p.data, t.detach().numpy(), a) < 1e-12
    assert opt.state[ours[3]]["step"] == int(topt.state[theirs[3]]["step"]) == 13


def test_mixed_dtypes_in_one_group_match_separate_optimizers():
    a32, a64 = arrays(np.float32, 16, [(5, 3), (7,)]), arrays(np.float64, 17, [(4,), (2, 2)])
    mixed = [nn.Parameter(x.copy()) for x in a32 + a64]
    alone32, alone64 = [nn.Parameter(x.copy()) for x in a32], [nn.Parameter(x.copy()) for x in a64]
    opts = [optim.NAdam(mixed, lr=0.01), optim.NAdam(alone32, lr=0.01), optim.NAdam(alone64, lr=0.01)]
    g = rng(18)
    for _ in range(4):
        grads = [randn(g, p.shape, p.dtype) for p in mixed]
        for ps in (mixed, alone32 + alone64):
            for p, gr in zip(ps, grads):
                p.grad = gr.copy()
        assert all(o.step() for o in opts)
    for p, q in zip(mixed, alone32 + alone64):
        assert p.dtype == q.dtype and np.array_equal(p.data, q.data)


# -- state dicts, threads, the non-finite rule ------------------------------------------------

ALL = [("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01)), ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
       ("Adadelta", dict()), ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)), ("Adamax", dict()),
       ("NAdam", dict(weight_decay=0.01)), ("SGD", dict(lr=0.1, momentum=0.9))]


def _run(opt, params, steps, seed):
    g = rng(seed)
    for _ in range(steps):
        for p in params:
            p.grad = randn(g, p.shape, p.dtype)
        opt.step()


@pytest.mark.parametrize("name,options", ALL, ids=[n for n, _ in ALL])
def test_state_dict_resume_is_bit_identical(name, options):
    a = [nn.Parameter(x) for x in arrays(np.float32, 6)]
    opt = getattr(optim, name)(a, **options)
    _run(opt, a, 5, seed=7)
    saved, saved_params = opt.state_dict(), [p.data.copy() for p in a]
    _run(opt, a, 5, seed=8)
    b = [nn.Parameter(x) for x in saved_params]
    opt_b = getattr(optim, name)(b, **options)
    opt_b.load_state_dict(saved)
    _run(opt_b, b, 5, seed=8)
    for p, q in zip(a, b):
        assert np.array_equal(p.data, q.data)


@pytest.mark.parametrize("name,options", ALL, ids=[n for n, _ in ALL])
def test_one_thread_and_two_give_the_same_bits(name, options):
    shapes = [(40000,), (3,), (0,), (257, 129), (1,)]  # enough elements for two threads
    old = get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            set_num_threads(threads)
            ps = [nn.Parameter(x) for x in arrays(np.float32, 9, shapes)]
            _run(getattr(optim, name)(ps, **options), ps, 3, seed=10)
            results.append([p.data for p in ps])
    finally:
        set_num_threads(old)
    for x, y in zip(*results):
        assert np.array_equal(x, y)


def _snapshot(opt, params):
    return [p.data.copy() for p in params], {id(p): {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                                      for k, v in s.items()} for p, s in opt.state.items()}


@pytest.mark.parametrize("name,options", ALL, ids=[n for n, _ in ALL])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_grad_skips_the_whole_step(name, options, bad):
    ps = [nn.Parameter(x) for x in arrays(np.float32, 11)]
    opt = getattr(optim, name)([{"params": ps[:3]}, {"params": ps[3:]}], **options)
    _run(opt, ps, 2, seed=12)
    before_params, before_state = _snapshot(opt, ps)
    for p in ps:
        p.grad = np.ones_like(p.data)
    ps[-1].grad[-1] = bad  # the last element of the last group: the others would be updated first
    assert opt.step() is False
    assert opt.skipped_steps == 1
    after_params, after_state = _snapshot(opt, ps)
    for x, y in zip(before_params, after_params):
        assert np.array_equal(x, y)
    assert before_state.keys() == after_state.keys()
    for k in before_state:
        for name_, v in before_state[k].items():
            assert np.array_equal(v, after_state[k][name_]), name_
    ps[-1].grad[-1] = 0.0
    assert opt.step() is True


def test_nonfinite_first_step_creates_no_state_and_raise_and_ignore_modes():
    p = nn.Parameter(np.ones(5, np.float32))
    opt = optim.Adam([p])
    p.grad = np.array([1, 2, np.nan, 4, 5], np.float32)
    assert opt.step() is False and opt.state == {} and np.array_equal(p.data, np.ones(5, np.float32))
    strict = optim.Adam([p], nonfinite="raise")
    with pytest.raises(FloatingPointError, match=r"\[Adam\].*nothing was updated"):
        strict.step()
    assert strict.state == {}
    loose = optim.Adam([p], nonfinite="ignore")  # torch's behaviour: the NaN reaches the param
    assert loose.step() is True
    assert np.isnan(p.data[2]) and np.isfinite(p.data[[0, 1, 3, 4]]).all()
    with pytest.raises(ValueError, match="nonfinite"):
        optim.RMSprop([p], nonfinite="sometimes")


@pytest.mark.parametrize("step", ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam"])
def test_ops_check_finite_writes_nothing(step):
    n = 70001  # two threads, the bad element in the second thread's half
    p, g = np.ones(n, np.float64), np.full(n, 0.5)
    g[-3] = np.inf
    states = [np.full(n, 0.25) for _ in range(3)]
    call = {"sgd": lambda c: ops.sgd_step([p], [g], [states[0]], lr=0.1, momentum=0.9, check_finite=c),
            "adagrad": lambda c: ops.adagrad_step([p], [g], [states[0]], step=1, check_finite=c),
            "adadelta": lambda c: ops.adadelta_step([p], [g], [states[0]], [states[1]], check_finite=c),
            "rmsprop": lambda c: ops.rmsprop_step([p], [g], [states[0]], [states[1]], [states[2]], momentum=0.5,
                                                  centered=True, check_finite=c),
            "adam": lambda c: ops.adam_step([p], [g], [states[0]], [states[1]], [states[2]], step=1, amsgrad=True,
                                            check_finite=c),
            "adamax": lambda c: ops.adamax_step([p], [g], [states[0]], [states[1]], step=1, check_finite=c),
            "nadam": lambda c: ops.nadam_step([p], [g], [states[0]], [states[1]], step=1, mu_product=0.45,
                                              check_finite=c)}[step]
    assert call(True) is False
    assert (p == 1).all() and all((s == 0.25).all() for s in states)
    assert call(False) is True and not np.isfinite(p).all()


def test_all_finite():
    a = [np.zeros(100, np.float32), np.ones((3, 3)), np.zeros(0)]
    assert ops.all_finite(a)
    for bad in (np.nan, np.inf, -np.inf):
        for i, j in ((0, 0), (0, 99), (1, (2, 2))):
            b = [x.copy() for x in a]
            b[i][j] = bad
            assert not ops.all_finite(b)
    assert ops.all_finite([np.full(5, np.finfo(np.float32).max, np.float32)])


# -- bad input ------------------------------------------------------------------------------------------

def test_bad_arrays_raise_before_anything_is_written():
    p = [np.ones(5, np.float32), np.ones((2, 3), np.float32)]
    g = [np.ones(5, np.float32), np.ones((2, 3), np.float32)]
    m = [np.zeros(5, np.float32), np.zeros((2, 3), np.float32)]
    v = [np.zeros(5, np.float32), np.zeros((2, 3), np.float32)]

    def adam(**changes):
        args = dict(params=p, grads=g, exp_avgs=m, exp_avg_sqs=v)
        args.update(changes)
        ops.adam_step(args["params"], args["grads"], args["exp_avgs"], args["exp_avg_sqs"], step=1)

    with pytest.raises(ValueError, match=r"\[adam_step\] grads\[1\] has shape \(3, 2\) but params\[1\] has \(2, 3\)"):
        adam(grads=[g[0], np.ones((3, 2), np.float32)])
    with pytest.raises(ValueError, match=r"exp_avgs\[0\] has shape"):
        adam(exp_avgs=[np.zeros(4, np.float32), m[1]])
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float64, expected float32"):
        adam(grads=[np.ones(5), g[1]])
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[1\] has dtype float64"):
        adam(exp_avg_sqs=[v[0], np.zeros((2, 3))])
    with pytest.raises(TypeError, match="float32 or float64"):
        adam(params=[np.ones(5, np.int32), p[1]])
    with pytest.raises(ValueError, match=r"exp_avgs\[1\] is written in place and must be C-contiguous"):
        adam(exp_avgs=[m[0], np.zeros((3, 2), np.float32).T])
    ro = np.zeros(5, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="must be writeable"):
        adam(exp_avg_sqs=[ro, v[1]])
    with pytest.raises(ValueError, match="got 1 exp_avgs for 2 params"):
        adam(exp_avgs=[m[0]])
    with pytest.raises(ValueError, match="got 2 params but 1 grads"):
        adam(grads=[g[0]])
    with pytest.raises(ValueError, match="share memory"):
        adam(exp_avgs=[m[0], v[1]])
    with pytest.raises(ValueError, match="share memory"):
        adam(grads=[p[0], g[1]])
    with pytest.raises(ValueError, match="share memory"):
        adam(params=[p[0], p[0]], grads=[g[0], g[0]], exp_avgs=[m[0], np.zeros(5, np.float32)],
             exp_avg_sqs=[v[0], np.zeros(5, np.float32)])  # the same param twice
    with pytest.raises(TypeError, match="must be a numpy array"):
        adam(params=[[1.0] * 5, p[1]])
    with pytest.raises(ValueError, match="step counts from 1"):
        ops.adam_step(p, g, m, v, step=0)
    with pytest.raises(ValueError, match="max_exp_avg_sqs are needed"):
        ops.adam_step(p, g, m, v, step=1, amsgrad=True)
    # nothing was written by any of the failed calls
    assert all((x == 1).all() for x in p) and all((x == 0).all() for x in m + v)
    # a strided grad is only read: it is copied, and the step works
    ops.adam_step([p[1]], [np.ones((3, 2), np.float32).T], [m[1]], [v[1]], step=1)
    assert (p[1] < 1).all()


@pytest.mark.parametrize("name,bad", [
    ("Adam", dict(lr=-1.0)), ("Adam", dict(betas=(1.0, 0.999))), ("Adam", dict(betas=(0.9, -0.1))),
    ("Adam", dict(eps=-1e-8)), ("Adam", dict(weight_decay=-0.1)), ("Adam", dict(betas=0.9)),
    ("AdamW", dict(lr=float("nan"))), ("Adamax", dict(betas=(0.9, 1.5))), ("NAdam", dict(momentum_decay=-1.0)),
    ("Adagrad", dict(lr_decay=-0.1)), ("Adagrad", dict(initial_accumulator_value=-1.0)),
    ("Adadelta", dict(rho=1.5)), ("RMSprop", dict(alpha=-0.5)), ("RMSprop", dict(momentum=-0.9)),
    ("RMSprop", dict(lr="fast")),
])
def test_bad_hyperparameters_raise(name, bad):
    p = nn.Parameter(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=rf"\[{name}\]"):
        getattr(optim, name)([p], **bad)
    opt = getattr(optim, name)([p])
    opt.param_groups[0].update(bad)  # an edited group is checked again at the next step
    p.grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=rf"\[{name}\]"):
        opt.step()
    assert (p.data == 1).all()


def test_ops_reject_bad_hyperparameters():
    p, g, s = [np.ones(3)], [np.ones(3)], [np.zeros(3)]
    with pytest.raises(ValueError, match=r"\[adam_step\] lr must be >= 0"):
        ops.adam_step(p, g, s, [np.zeros(3)], lr=-0.1, step=1)
    with pytest.raises(ValueError, match=r"\[adamax_step\] betas\[1\] must be in \[0, 1\)"):
        ops.adamax_step(p, g, s, [np.zeros(3)], beta2=1.0, step=1)
    with pytest.raises(ValueError, match=r"\[adadelta_step\] rho"):
        ops.adadelta_step(p, g, s, [np.zeros(3)], rho=2.0)
    with pytest.raises(ValueError, match=r"\[rmsprop_step\] grad_avgs are needed"):
        ops.rmsprop_step(p, g, s, centered=True)
    assert (p[0] == 1).all()


# -- gradient clipping and penalties ---------------------------------------------------------

NORMS = [2.0, 1.0, np.inf, -np.inf, 0.0, 3.5, 0.5]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_grad_norm_matches_reference_and_torch(norm_type, dtype):
    grads = arrays(dtype, 13, SHAPES + [(5000,)])
    if norm_type == 0:
        grads[1][0] = grads[-1][7] = 0.0  # the 0-"norm" counts the non-zeros
    expected = ref.grad_norm(grads, norm_type)
    assert ops.grad_norm(grads, norm_type) == pytest.approx(expected, rel=1e-12)
    if norm_type == 0:  # counts non-zeros: not a norm to clip by (torch counts non-zero tensors)
        with pytest.raises(ValueError, match="not a norm"):
            ops.clip_grad_norm_(grads, 1.0, norm_type)
        return
    max_norm = expected / 3
    params = [nn.Parameter(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    total = optim.clip_grad_norm_(params, max_norm, norm_type)
    assert total == pytest.approx(expected, rel=1e-12)  # float64 accumulation, even for float32
    coef = max_norm / (expected + 1e-6)
    for p, g in zip(params, grads):
        assert_close(p.grad, g.astype(np.float64) * coef, dtype)
    before = [p.grad.copy() for p in params]  # below max_norm: unchanged
    optim.clip_grad_norm_(params, 1.5 * ops.grad_norm(before, norm_type), norm_type)
    assert all(np.array_equal(a, p.grad) for a, p in zip(before, params))
    torch = pytest.importorskip("torch")
    ts = [torch.zeros(g.shape, dtype=torch.float64 if dtype == np.float64 else torch.float32) for g in grads]
    for t, g in zip(ts, grads):
        t.grad = torch.from_numpy(g.copy())
    t_total = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type, foreach=False)
    assert float(t_total) == pytest.approx(expected, rel=1e-5 if dtype == np.float32 else 1e-12)
    for t, p in zip(ts, params):
        assert_close(p.grad, t.grad.numpy(), dtype)


def test_clip_grad_norm_nonfinite_and_mixed_dtypes():
    torch = torch_or_skip()
    for bad in (np.nan, np.inf):
        g = [np.ones(10, np.float32), np.arange(7, dtype=np.float32)]
        g[1][3] = bad
        tg = [torch.zeros(10), torch.zeros(7)]
        for t, x in zip(tg, g):
            t.grad = torch.from_numpy(x.copy())
        keep = [x.copy() for x in g]
        with pytest.raises(RuntimeError, match="non-finite"):
            ops.clip_grad_norm_(g, 1.0, error_if_nonfinite=True)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(keep, g))  # nothing scaled
        total = ops.clip_grad_norm_(g, 1.0)
        t_total = torch.nn.utils.clip_grad_norm_(tg, 1.0, foreach=False)
        assert np.isnan(total) == np.isnan(float(t_total)) and np.isinf(total) == np.isinf(float(t_total))
        for x, t in zip(g, tg):
            assert np.array_equal(x, t.grad.numpy(), equal_nan=True)
    mixed = [np.full(4, 3.0, np.float32), np.full(4, 4.0)]
    total = ops.clip_grad_norm_(mixed, 5.0)
    assert total == pytest.approx(10.0)
    assert_close(mixed[0], np.full(4, 3.0 * 5 / (10 + 1e-6)), np.float32)
    assert_close(mixed[1], np.full(4, 4.0 * 5 / (10 + 1e-6)), np.float64)


def test_clip_grad_value_and_parameters_without_grads():
    torch = torch_or_skip()
    g = arrays(np.float32, 14)
    g[0][0, 0] = np.nan
    ps = [nn.Parameter(np.zeros_like(x)) for x in g] + [nn.Parameter(np.zeros(3, np.float32))]
    for p, x in zip(ps, g):
        p.grad = x.copy()
    ts = [torch.zeros(x.shape) for x in g]
    for t, x in zip(ts, g):
        t.grad = torch.from_numpy(x.copy())
    optim.clip_grad_value_(ps, 0.5)  # the last param has no grad: skipped, as torch
    torch.nn.utils.clip_grad_value_(ts, 0.5, foreach=False)
    for p, t in zip(ps, ts):
        assert np.array_equal(p.grad, t.grad.numpy(), equal_nan=True)
    assert ps[-1].grad is None
    strided = nn.Parameter(np.zeros((3, 4), np.float32))
    strided.grad = np.full((4, 3), 2.0, np.float32).T  # a view: replaced by a contiguous copy
    assert optim.clip_grad_norm_(strided, 1.0) == pytest.approx(np.sqrt(12 * 4.0))
    assert strided.grad.flags.c_contiguous and np.allclose(np.linalg.norm(strided.grad), 1.0, atol=1e-6)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_penalties_value_and_gradient(penalty):
    fn = optim.l1_penalty if penalty == "l1" else optim.l2_penalty
    data = arrays(np.float64, 15, [(4, 3), (5,)])
    ps = [nn.Parameter(x) for x in data]
    ps[0].grad = np.ones((4, 3))
    value = fn(ps, 0.3)
    flat = np.concatenate([x.ravel() for x in data])
    assert value == pytest.approx(0.3 * np.abs(flat).sum() if penalty == "l1" else 0.15 * (flat ** 2).sum(),
                                  rel=1e-12)
    for i, p in enumerate(ps):  # the analytic gradient of the value, added to what .grad held
        num = np.zeros_like(p.data)
        for j in np.ndindex(p.shape):
            keep = p.data[j]
            p.data[j] = keep + 1e-6
            hi = fn([nn.Parameter(q.data.copy()) for q in ps], 0.3)
            p.data[j] = keep - 1e-6
            lo = fn([nn.Parameter(q.data.copy()) for q in ps], 0.3)
            p.data[j] = keep
            num[j] = (hi - lo) / 2e-6
        assert_close(p.grad - (1.0 if i == 0 else 0.0), num, np.float32)
    with pytest.raises(ValueError, match="weight"):
        fn(ps, -1.0)


# -- the CUDA kernels ------------------------------------------------------------------------
# The same steps on CuPy arrays, in one launch over every tensor: against the CPU
# kernel (the same per-element formula, core/optim_math.h) and the float64
# textbook formula, over many small tensors and one that spans several of the
# launch's 65536-element chunks, and the non-finite rule.

# 60 small tensors of seeded random shapes, then one over three chunks and a bit.
GPU_SHAPES = SHAPES + [tuple(int(d) for d in s) for s in rng(5).integers(1, 40, (60, 2))] + [(3 * 65536 + 17,)]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,case", KERNEL_CASES)
def test_gpu_step_matches_cpu_and_textbook_formula(name, case, dtype):
    call, reference, names, options = KERNELS[name]
    o = options[case]
    ps = arrays(dtype, 1, GPU_SHAPES)
    st = {n: [np.full_like(p, 0.1 if n == "sum" else 0.0) for p in ps] for n in names}
    gps = [to_gpu(p) for p in ps]
    gst = {n: [to_gpu(a) for a in arrs] for n, arrs in st.items()}
    ref_p = [p.astype(np.float64) for p in ps]
    ref_s = [dict(G=0.1) if name == "adagrad" else {} for _ in ps]
    for t in range(1, 4):
        gs = arrays(dtype, 100 + t, GPU_SHAPES)
        assert call(ps, gs, st, t, o) is True
        assert call(gps, [to_gpu(g) for g in gs], gst, t, o) is True
        for i, g in enumerate(gs):
            ref_p[i], ref_s[i] = reference(ref_p[i], g, ref_s[i], **o)
    for i, (p, gp) in enumerate(zip(ps, gps)):
        assert gp.dtype == dtype
        assert_close(to_cpu(gp), p, dtype, name=f"{name} GPU param {i} vs CPU")
        assert_close(to_cpu(gp), ref_p[i], dtype, name=f"{name} GPU param {i} vs reference")
    for n in names:
        for i, (a, ga) in enumerate(zip(st[n], gst[n])):
            assert_close(to_cpu(ga), a, dtype, name=f"{name} GPU state {n}[{i}] vs CPU")


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=0.1),
                                     dict(momentum=0.5, dampening=0.3, maximize=True)])
def test_gpu_sgd_matches_cpu_and_reference(options, dtype):
    ps = arrays(dtype, 2, GPU_SHAPES)
    bufs = [np.zeros_like(p) for p in ps]
    gps, gbufs = [to_gpu(p) for p in ps], [to_gpu(b) for b in bufs]
    ref_p, ref_b = [p.astype(np.float64) for p in ps], [None] * len(ps)
    momentum = options.get("momentum", 0.0)
    for t in range(1, 4):
        gs = arrays(dtype, 200 + t, GPU_SHAPES)
        assert ops.sgd_step(ps, gs, bufs, lr=0.1, first_step=t == 1, **options) is True
        assert ops.sgd_step(gps, [to_gpu(g) for g in gs], gbufs, lr=0.1, first_step=t == 1, **options) is True
        for i, g in enumerate(gs):
            ref_p[i], ref_b[i] = ref.sgd_step(ref_p[i], g, ref_b[i], 0.1, **options)
    for i in range(len(ps)):
        assert_close(to_cpu(gps[i]), ps[i], dtype, name=f"sgd GPU param {i} vs CPU")
        assert_close(to_cpu(gps[i]), ref_p[i], dtype, name=f"sgd GPU param {i} vs reference")
        if momentum:
            assert_close(to_cpu(gbufs[i]), bufs[i], dtype, name=f"sgd GPU buffer {i} vs CPU")


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam"])
@pytest.mark.parametrize("where", ["small", "large"])
def test_gpu_check_finite_writes_nothing(step, where, dtype):
    shapes = [(5, 7)] * 50 + [(3 * 65536 + 17,)]
    ps = [to_gpu(np.ones(s, dtype)) for s in shapes]
    gs = [np.full(s, 0.5, dtype) for s in shapes]
    (gs[17] if where == "small" else gs[-1]).reshape(-1)[-3] = np.inf  # the last chunk of the large one
    gs = [to_gpu(g) for g in gs]
    states = [[to_gpu(np.full(s, 0.25, dtype)) for s in shapes] for _ in range(3)]
    call = {"sgd": lambda c: ops.sgd_step(ps, gs, states[0], lr=0.1, momentum=0.9, check_finite=c),
            "adagrad": lambda c: ops.adagrad_step(ps, gs, states[0], step=1, check_finite=c),
            "adadelta": lambda c: ops.adadelta_step(ps, gs, states[0], states[1], check_finite=c),
            "rmsprop": lambda c: ops.rmsprop_step(ps, gs, states[0], states[1], states[2], momentum=0.5,
                                                  centered=True, check_finite=c),
            "adam": lambda c: ops.adam_step(ps, gs, states[0], states[1], states[2], step=1, amsgrad=True,
                                            check_finite=c),
            "adamax": lambda c: ops.adamax_step(ps, gs, states[0], states[1], step=1, check_finite=c),
            "nadam": lambda c: ops.nadam_step(ps, gs, states[0], states[1], step=1, mu_product=0.45,
                                              check_finite=c)}[step]
    assert call(True) is False
    assert all((to_cpu(p) == 1).all() for p in ps)
    assert all((to_cpu(s) == 0.25).all() for st in states for s in st)
    assert call(True) is False  # the same answer again: the flag starts clear on every call
    assert call(False) is True and not all(np.isfinite(to_cpu(p)).all() for p in ps)


@requires_gpu
def test_gpu_all_finite_clip_and_empty_lists():
    a = [np.zeros(100, np.float32), np.ones((3, 3), np.float32), np.zeros(0, np.float32),
         np.ones(2 * 65536 + 5, np.float32)]
    assert ops.all_finite([to_gpu(x) for x in a])
    for bad in (np.nan, np.inf, -np.inf):
        for i, j in ((0, 0), (0, 99), (1, (2, 2)), (3, 2 * 65536 + 4)):
            b = [x.copy() for x in a]
            b[i][j] = bad
            assert not ops.all_finite([to_gpu(x) for x in b])
    p, g = to_gpu(np.zeros((0, 3), np.float32)), to_gpu(np.zeros((0, 3), np.float32))
    assert ops.adam_step([p], [g], [to_gpu(np.zeros((0, 3), np.float32))], [to_gpu(np.zeros((0, 3), np.float32))],
                         step=1, check_finite=True) is True
    grads = [to_gpu(np.linspace(-3, 3, 50).astype(np.float32))]
    ops.clip_grad_value_(grads, 1.5)
    assert_close(to_cpu(grads[0]), np.clip(np.linspace(-3, 3, 50), -1.5, 1.5).astype(np.float32), np.float32)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS)
def test_gpu_clip_grad_norm_matches_cpu_and_is_deterministic(norm_type, dtype):
    grads = arrays(dtype, 13, GPU_SHAPES)
    if norm_type == 0:
        grads[1][0] = grads[-1][7] = 0.0
    expected = ref.grad_norm(grads, norm_type)
    g_gpu = [to_gpu(g) for g in grads]
    first = ops.grad_norm(g_gpu, norm_type)
    assert first == pytest.approx(expected, rel=1e-10)  # float64 sums over 2e5 terms, in another order
    assert ops.grad_norm(g_gpu, norm_type) == first  # a fixed reduction order: the same bits
    if norm_type == 0:
        return
    max_norm = expected / 3
    cpu = [g.copy() for g in grads]
    total_cpu = ops.clip_grad_norm_(cpu, max_norm, norm_type)
    total_gpu = ops.clip_grad_norm_(g_gpu, max_norm, norm_type)
    assert total_gpu == pytest.approx(total_cpu, rel=1e-10)
    for a, b in zip(g_gpu, cpu):
        assert_close(to_cpu(a), b, dtype)
    if norm_type != 2.0:
        return
    for bad in (np.nan, np.inf):
        g = [to_gpu(np.ones(10, dtype)), to_gpu(np.arange(70000, dtype=dtype))]
        g[1][3] = bad
        keep = [to_cpu(x) for x in g]
        with pytest.raises(RuntimeError, match="non-finite"):
            ops.clip_grad_norm_(g, 1.0, error_if_nonfinite=True)
        assert all(np.array_equal(a, to_cpu(b), equal_nan=True) for a, b in zip(keep, g))
        c = [to_cpu(x) for x in g]
        assert np.isnan(ops.clip_grad_norm_(g, 1.0)) == np.isnan(ops.clip_grad_norm_(c, 1.0))
        for a, b in zip(g, c):
            assert np.array_equal(to_cpu(a), b, equal_nan=True)


@requires_gpu
def test_gpu_steps_check_their_arrays_like_the_cpu():
    ps = [to_gpu(np.ones(4, np.float32)), to_gpu(np.ones(3, np.float32))]
    gs = [to_gpu(np.ones(4, np.float32)), to_gpu(np.ones(3, np.float32))]
    m = [to_gpu(np.zeros(4, np.float32)), to_gpu(np.zeros(3, np.float32))]
    v = [to_gpu(np.zeros(4, np.float32)), to_gpu(np.zeros(3, np.float32))]
    with pytest.raises(ValueError, match=r"\[adam_step\] got 2 params but 1 grads"):
        ops.adam_step(ps, gs[:1], m, v, step=1)
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(4,\) but params\[1\] has \(3,\)"):
        ops.adam_step(ps, [gs[0], gs[0]], m, v, step=1)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float64, expected float32"):
        ops.adam_step(ps, [to_gpu(np.ones(4)), gs[1]], m, v, step=1)
    with pytest.raises(TypeError, match=r"grads\[1\] is not a CUDA array but params\[0\] is"):
        ops.adam_step(ps, [gs[0], np.ones(3, np.float32)], m, v, step=1)
    with pytest.raises(ValueError, match="share memory"):
        ops.adam_step(ps, gs, m, m, step=1)
    with pytest.raises(ValueError, match=r"exp_avgs\[0\] must be a C-contiguous"):
        ops.adam_step(ps, gs, [to_gpu(np.zeros(8, np.float32))[::2], m[1]], v, step=1)
    assert all((to_cpu(p) == 1).all() for p in ps)  # nothing was written


def _fake(shape, typestr="<f4", address=0x1000, readonly=False):
    from test_activation import FakeCudaArray
    a = FakeCudaArray(shape, typestr)
    a.__cuda_array_interface__["data"] = (address, readonly)
    return a


def test_cuda_lists_are_checked_before_any_gpu_work():
    """Runs everywhere: interface-only arrays reach the binding's CUDA checks, which
    must raise the CPU path's errors before any GPU call; pointers that pass them
    are then refused by the CUDA side as not device memory (or no GPU at all)."""
    from deepkern import _C
    addr = iter(range(0x10000, 0x10000000, 0x1000))
    lists = lambda *shapes: [_fake(s, address=next(addr)) for s in shapes]  # noqa: E731
    ps, gs, m, v = lists((4,), (3,)), lists((4,), (3,)), lists((4,), (3,)), lists((4,), (3,))
    if not _C.cuda_built:
        with pytest.raises(TypeError, match="built without CUDA"):
            ops.adam_step(ps, gs, m, v, step=1)
        return
    with pytest.raises(ValueError, match=r"\[adam_step\] got 2 params but 1 grads"):
        ops.adam_step(ps, gs[:1], m, v, step=1)
    with pytest.raises(ValueError, match=r"\[adam_step\] got 1 exp_avgs for 2 params"):
        ops.adam_step(ps, gs, m[:1], v, step=1)
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(4,\) but params\[1\] has \(3,\)"):
        ops.adam_step(ps, [gs[0], gs[0]], m, v, step=1)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float64, expected float32"):
        ops.adam_step(ps, [_fake((4,), "<f8", next(addr)), gs[1]], m, v, step=1)
    with pytest.raises(TypeError, match=r"grads\[1\] is not a CUDA array but params\[0\] is"):
        ops.adam_step(ps, [gs[0], np.ones(3, np.float32)], m, v, step=1)
    with pytest.raises(ValueError, match=r"exp_avgs\[1\] is written in place and must be writeable"):
        ops.adam_step(ps, gs, [m[0], _fake((3,), address=next(addr), readonly=True)], v, step=1)
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[\d\] and exp_avgs\[\d\] share memory"):
        ops.adam_step(ps, gs, m, m, step=1)
    with pytest.raises(ValueError, match=r"params\[1\] and params\[0\] share memory"):
        ops.sgd_step([_fake((4,), address=0x5000), _fake((3,), address=0x5008)], gs, lr=0.1)
    with pytest.raises(TypeError, match=r"arrays\[0\] must be float32 or float64, got a CUDA array of typestr"):
        _C.all_finite([_fake((4,), "<i4")])
    # Checks passed: the CUDA side refuses host addresses (or finds no GPU), writing nothing.
    with pytest.raises((RuntimeError, ValueError), match=r"\[adam_step\]"):
        ops.adam_step(ps, gs, m, v, step=1, check_finite=True)
    with pytest.raises((RuntimeError, ValueError), match=r"\[clip_grad_norm\]"):
        _C.clip_grad_norm(gs, -1.0, 2.0, True)
