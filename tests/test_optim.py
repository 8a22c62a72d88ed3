"""deepkern.optim: SGD over several steps against reference.sgd_step (float64) and
torch.optim.SGD, param groups, params without grads, state dicts, bad arguments."""
import numpy as np
import pytest

import reference as ref
from deepkern import nn, optim
from helpers import DTYPES, assert_close, randn, rng, torch_or_skip

SHAPES = [(7, 13), (1,), (17,), (3, 5, 2), (33,)]
CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
    dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(lr=0.03, momentum=0.5, maximize=True),
    dict(lr=0.1, weight_decay=0.2, maximize=True),
]
STEPS = 4


def make_params(dtype, seed=0, shapes=SHAPES):
    g = rng(seed)
    return [nn.Parameter(randn(g, s, dtype)) for s in shapes]


def grads_for(step, params, seed=100):
    g = rng(seed + step)
    return [randn(g, p.shape, p.dtype) for p in params]


class RefSGD:
    """reference.sgd_step applied per param in float64, with torch's buffer rule."""

    def __init__(self, params, **cfg):
        self.params = [np.array(p.data, dtype=np.float64) for p in params]  # copies
        self.bufs = [None] * len(params)
        self.cfg = cfg

    def step(self, grads):
        for i, g in enumerate(grads):
            if g is None:
                continue
            self.params[i], buf = ref.sgd_step(self.params[i], g, self.bufs[i], **self.cfg)
            if self.cfg.get("momentum", 0.0):
                self.bufs[i] = buf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_matches_reference_over_steps(cfg, dtype):
    params = make_params(dtype)
    opt, r = optim.SGD(params, **cfg), RefSGD(params, **cfg)
    for step in range(STEPS):
        grads = grads_for(step, params)
        for p, g in zip(params, grads):
            p.grad = g
        assert opt.step() is True
        r.step(grads)
    for i, p in enumerate(params):
        assert p.dtype == dtype
        assert_close(p.data, r.params[i], dtype, scale=STEPS, name=f"param {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_matches_torch(cfg, dtype):
    torch = torch_or_skip()
    params = make_params(dtype, seed=1)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt, topt = optim.SGD(params, **cfg), torch.optim.SGD(tparams, **cfg)
    for step in range(STEPS):
        grads = grads_for(step, params, seed=200)
        for p, tp, g in zip(params, tparams, grads):
            p.grad, tp.grad = g, torch.tensor(g)
        opt.step()
        topt.step()
    for i, (p, tp) in enumerate(zip(params, tparams)):
        assert_close(p.data, tp.detach().numpy(), dtype, scale=STEPS, name=f"param {i}")


def test_param_groups_and_params_without_grad():
    dtype = np.float64
    a, b, c = make_params(dtype, seed=2, shapes=[(4, 3), (5,), (2, 2)])
    # group 1 inherits nesterov=True with momentum 0, where torch ignores nesterov
    groups = lambda x: [{"params": x[:2]}, {"params": x[2:], "lr": 0.5, "momentum": 0.0}]  # noqa: E731
    opt = optim.SGD(groups([a, b, c]), lr=0.1, momentum=0.9, nesterov=True)
    assert opt.param_groups[1]["nesterov"] is True and opt.param_groups[1]["lr"] == 0.5
    r = RefSGD([a, b], lr=0.1, momentum=0.9, nesterov=True)
    c_before = c.data.copy()
    history = []
    # step 0: b has no grad (skipped, no buffer); step 1: b's first grad creates its
    # buffer while a's continues, which needs one call per kind; c never has a grad.
    for step in range(3):
        grads = grads_for(step, [a, b, c], seed=300)
        grads = [grads[0], grads[1] if step > 0 else None, None]
        history.append(grads)
        for p, g in zip((a, b, c), grads):
            p.grad = g
        opt.step()
        r.step(grads[:2])
        if step == 0:
            assert b not in opt.state and "momentum_buffer" in opt.state[a]
    for i, p in enumerate((a, b)):
        assert_close(p.data, r.params[i], dtype, scale=3)
    assert np.array_equal(c.data, c_before) and c not in opt.state
    torch = torch_or_skip()
    ts = [torch.tensor(x.data, requires_grad=True) for x in make_params(dtype, seed=2, shapes=[(4, 3), (5,), (2, 2)])]
    topt = torch.optim.SGD(groups(ts), lr=0.1, momentum=0.9, nesterov=True)
    for grads in history:
        for t, g in zip(ts, grads):
            t.grad = None if g is None else torch.tensor(g)
        topt.step()
    for p, t in zip((a, b, c), ts):
        assert_close(p.data, t.detach().numpy(), dtype, scale=3)


def test_mixed_dtypes_in_one_group():
    p32, p64 = make_params(np.float32, 3, [(5,)])[0], make_params(np.float64, 4, [(6,)])[0]
    opt = optim.SGD([p32, p64], lr=0.1, momentum=0.9)
    r = RefSGD([p32, p64], lr=0.1, momentum=0.9)
    for step in range(2):
        grads = grads_for(step, [p32, p64])
        p32.grad, p64.grad = grads
        opt.step()
        r.step(grads)
    assert_close(p32.data, r.params[0], np.float32, scale=2)
    assert_close(p64.data, r.params[1], np.float64, scale=2)


@pytest.mark.parametrize("cfg", CONFIGS[1:4], ids=["momentum", "dampening", "nesterov"])
def test_state_dict_resume_is_bit_identical(cfg):
    g = rng(5)
    model = nn.Sequential(nn.Linear(6, 5, rng=g), nn.ReLU(), nn.Linear(5, 3, rng=g))
    opt = optim.SGD(model.parameters(), **cfg)
    x, labels = randn(g, (8, 6), np.float32), g.integers(0, 3, 8)
    loss = nn.CrossEntropyLoss()

    def train_step(m, o):
        loss(m(x), labels)
        m.zero_grad()
        m.backward(loss.backward())
        o.step()

    for _ in range(3):
        train_step(model, opt)
    msd, osd = model.state_dict(), opt.state_dict()
    assert sorted(osd["state"]) == [0, 1, 2, 3] and osd["param_groups"][0]["params"] == [0, 1, 2, 3]
    model2 = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt2 = optim.SGD(model2.parameters(), lr=1.0)
    model2.load_state_dict(msd)
    opt2.load_state_dict(osd)
    assert opt2.param_groups[0]["lr"] == cfg["lr"]
    for _ in range(3):
        train_step(model, opt)
        train_step(model2, opt2)
    for (n, p), p2 in zip(model.named_parameters(), model2.parameters()):
        assert np.array_equal(p.data, p2.data), n
    osd["state"][0]["momentum_buffer"][...] = 0  # the state dict holds copies
    assert opt.state[model[0].weight]["momentum_buffer"].any()


def test_load_state_dict_errors():
    params = make_params(np.float32, shapes=[(3,), (4,)])
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = opt.state_dict()
    other = optim.SGD(make_params(np.float32, shapes=[(3,)]), lr=0.1)
    with pytest.raises(ValueError, match="group 0 has 2 params in the state dict, 1 in the optimizer"):
        other.load_state_dict(sd)
    swapped = optim.SGD(make_params(np.float32, shapes=[(4,), (3,)]), lr=0.1)
    with pytest.raises(ValueError, match="has shape"):
        swapped.load_state_dict(sd)
    assert swapped.state == {}
    with pytest.raises(TypeError, match="dtype"):
        optim.SGD(make_params(np.float64, shapes=[(3,), (4,)]), lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="param groups"):
        optim.SGD([{"params": [nn.Parameter(np.zeros(3, np.float32))]},
                   {"params": [nn.Parameter(np.zeros(4, np.float32))]}], lr=0.1).load_state_dict(sd)


def test_bad_arguments_raise():
    p = make_params(np.float32, shapes=[(3,)])
    for kwargs, match in [(dict(lr=-0.1), "lr"), (dict(momentum=-1), "momentum"),
                          (dict(weight_decay=-1), "weight_decay"), (dict(lr=float("nan")), "lr"),
                          (dict(nesterov=True), "nesterov"), (dict(momentum=0.9, dampening=0.1, nesterov=True),
                                                              "nesterov")]:
        with pytest.raises(ValueError, match=match):
            optim.SGD(p, **kwargs)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter"):
        optim.SGD(p[0], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.zeros(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": p}, {"params": p}], lr=0.1)
    opt = optim.SGD(p, lr=0.1)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()


def _bad_grads_raise(opt, a, b):
    """A step with a grad of the wrong shape, then of the wrong dtype, raises (a, b: shapes (3,), (4,))."""
    a.grad, b.grad = np.ones(3, np.float32), np.ones(5, np.float32)
    with pytest.raises(ValueError, match=r"param 1 of group 0 has shape \(4,\) but its grad has \(5,\)"):
        opt.step()
    a.grad, b.grad = np.ones(3, np.float32), np.ones(4, np.float64)
    with pytest.raises(TypeError, match="param 1 of group 0 has dtype float32 but its grad has float64"):
        opt.step()


def test_bad_grads_raise_before_any_update():
    a, b = make_params(np.float32, shapes=[(3,), (4,)])
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    before = a.data.copy()
    _bad_grads_raise(opt, a, b)
    assert np.array_equal(a.data, before) and opt.state == {}


def test_zero_grad():
    p = make_params(np.float32, shapes=[(3,), (2,)])
    opt = optim.SGD(p, lr=0.1)
    for q in p:
        q.grad = np.ones_like(q.data)
    opt.zero_grad(set_to_none=False)
    assert all(q.grad is not None and not q.grad.any() for q in p)
    opt.zero_grad()
    assert all(q.grad is None for q in p)
    assert opt.step() is True  # nothing to update is not a skip


def _apply_change(change, opt, params, k):
    """One edit between steps that a cached step plan must notice (see StepPlan)."""
    if change == "grad_none":
        params[1].grad = None
    elif change == "new_data":
        params[0].data = params[0].data.copy()
    elif change == "state_array":
        st = opt.state[params[2]]
        name = next(n for n, v in st.items() if isinstance(v, np.ndarray))
        st[name] = st[name].copy()
    elif change == "state_dict":
        opt.load_state_dict(opt.state_dict())
    elif change == "layout":
        opt.param_groups[0][{"SGD": "momentum", "Adam": "amsgrad"}[type(opt).__name__]] = \
            {"SGD": 0.0, "Adam": True}[type(opt).__name__]
    elif change == "new_group":
        opt.add_param_group({"params": [params[-1]], "lr": 0.02})
    elif change == "group_params":
        opt.param_groups[0]["params"].pop()
    elif change == "lr":
        opt.param_groups[0]["lr"] *= 0.5
    elif change == "same_step_diverges":  # a param skips a step: its step count falls behind
        params[3].grad = None if k % 2 else params[3].grad


@pytest.mark.parametrize("name", ["SGD", "Adam"])
@pytest.mark.parametrize("change", ["grad_none", "new_data", "state_array", "state_dict", "layout", "new_group",
                                    "group_params", "lr", "same_step_diverges"])
def test_cached_step_plan_matches_a_fresh_plan_every_step(name, change):
    """A step reuses the last step's native calls while only the grads changed; after
    each kind of edit it must give the bits a step planned from scratch gives."""
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    runs = []
    for fresh in (False, True):
        params = make_params(np.float64, shapes=[(7, 3), (5,), (4, 2), (9,), (6,)])
        opt = getattr(optim, name)(params[:-1] if change == "new_group" else list(params), **kw)
        for k in range(6):
            for p, g in zip(params, grads_for(k, params)):
                p.grad = g
            if k == 3:
                _apply_change(change, opt, params, k)
            if change == "same_step_diverges" and k > 3:
                _apply_change(change, opt, params, k)
            if fresh:
                opt._plan = None
            assert opt.step() is True
        runs.append([p.data.copy() for g in opt.param_groups for p in g["params"]] +
                    [v for g in opt.param_groups for p in g["params"] for v in opt.state.get(p, {}).values()])
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)  # params, then state arrays and step counts


def test_cached_step_plan_still_checks_grads():
    a, b = make_params(np.float32, shapes=[(3,), (4,)])
    opt = optim.Adam([a, b], lr=0.1)
    a.grad, b.grad = np.ones(3, np.float32), np.ones(4, np.float32)
    assert opt.step() is True and opt._plan is not None
    before = [a.data.copy(), b.data.copy(), opt.state[a]["exp_avg"].copy()]
    _bad_grads_raise(opt, a, b)
    a.grad, b.grad = np.ones(3, np.float32), np.full(4, np.nan, np.float32)
    assert opt.step() is False and opt.skipped_steps == 1
    assert all(np.array_equal(x, y) for x, y in zip(before, [a.data, b.data, opt.state[a]["exp_avg"]]))
    assert opt.state[a]["step"] == 1
