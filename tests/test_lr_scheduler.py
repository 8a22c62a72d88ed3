"""Learning-rate schedules against torch.optim.lr_scheduler (the same lr floats, epoch by
epoch, two param groups), their composition, state dicts, and bad arguments."""
import math
import warnings

import numpy as np
import pytest

from deepkern import nn, optim
from deepkern.optim import lr_scheduler as sched
from helpers import randn, rng, torch_or_skip

LRS = (0.1, 0.03)
EPOCHS = 30


def ours():
    ps = [nn.Parameter(np.zeros(3, np.float32)), nn.Parameter(np.zeros(2, np.float32))]
    return optim.SGD([{"params": ps[:1], "lr": LRS[0]}, {"params": ps[1:], "lr": LRS[1]}], lr=1.0)


def theirs():
    torch = torch_or_skip()
    ps = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    return torch.optim.SGD([{"params": ps[:1], "lr": LRS[0]}, {"params": ps[1:], "lr": LRS[1]}], lr=1.0)


def lrs(opt):
    return [g["lr"] for g in opt.param_groups]


# (our builder, torch's builder): each takes an optimizer and returns what to step.
CASES = {
    "StepLR": (lambda o: sched.StepLR(o, step_size=3, gamma=0.5),
               lambda o, T: T.StepLR(o, step_size=3, gamma=0.5)),
    "MultiStepLR": (lambda o: sched.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3),
                    lambda o, T: T.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3)),
    "ExponentialLR": (lambda o: sched.ExponentialLR(o, gamma=0.9), lambda o, T: T.ExponentialLR(o, gamma=0.9)),
    "CosineAnnealingLR": (lambda o: sched.CosineAnnealingLR(o, T_max=7, eta_min=0.001),
                          lambda o, T: T.CosineAnnealingLR(o, T_max=7, eta_min=0.001)),
    "LinearWarmup": (lambda o: sched.LinearWarmup(o, warmup_steps=4, start_factor=0.25),
                     lambda o, T: T.LinearLR(o, start_factor=0.25, total_iters=4)),
    "LinearWarmup-decay": (lambda o: sched.LinearWarmup(o, warmup_steps=6, start_factor=1.0, end_factor=0.1),
                           lambda o, T: T.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=6)),
    "warmup-then-cosine": (
        lambda o: sched.SequentialLR(o, [sched.LinearWarmup(o, 5, 0.1), sched.CosineAnnealingLR(o, T_max=20)], [5]),
        lambda o, T: T.SequentialLR(o, [T.LinearLR(o, 0.1, total_iters=5), T.CosineAnnealingLR(o, T_max=20)], [5])),
    "warmup-then-step-then-exp": (
        lambda o: sched.SequentialLR(o, [sched.LinearWarmup(o, 3), sched.StepLR(o, 4, 0.5),
                                         sched.ExponentialLR(o, 0.95)], [3, 12]),
        lambda o, T: T.SequentialLR(o, [T.LinearLR(o, total_iters=3), T.StepLR(o, 4, 0.5),
                                        T.ExponentialLR(o, 0.95)], [3, 12])),
    "warmup-chained-with-exp": (
        lambda o: sched.ChainedScheduler([sched.LinearWarmup(o, 5, 0.2), sched.ExponentialLR(o, 0.9)]),
        lambda o, T: T.ChainedScheduler([T.LinearLR(o, 0.2, total_iters=5), T.ExponentialLR(o, 0.9)])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_matches_torch(name):
    torch = torch_or_skip()
    mine, torch_build = CASES[name]
    o, t = ours(), theirs()
    s, ts = mine(o), torch_build(t, torch.optim.lr_scheduler)
    assert lrs(o) == lrs(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when its optimizer has not stepped
        for epoch in range(EPOCHS):
            o.step()
            t.step()
            s.step()
            ts.step()
            assert lrs(o) == pytest.approx(lrs(t), rel=1e-15, abs=0), f"epoch {epoch + 1}"
            assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-15, abs=0)


def test_two_schedulers_on_one_optimizer_compose_like_torch():
    torch = torch_or_skip()
    T = torch.optim.lr_scheduler
    o, t = ours(), theirs()
    mine = [sched.LinearWarmup(o, 4, 0.5), sched.StepLR(o, 3, 0.1)]
    their = [T.LinearLR(t, 0.5, total_iters=4), T.StepLR(t, 3, 0.1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(12):
            for s in mine + their:
                s.step()
            assert lrs(o) == pytest.approx(lrs(t), rel=1e-15, abs=0)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(mode="max", factor=0.5, patience=2), dict(threshold=0.1, threshold_mode="abs", cooldown=2, patience=1),
    dict(mode="max", threshold_mode="abs", min_lr=[0.05, 0.001], factor=0.3, patience=0),
    dict(factor=0.5, patience=1, eps=0.02),
])
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = torch_or_skip()
    o, t = ours(), theirs()
    s, ts = sched.ReduceLROnPlateau(o, **kwargs), torch.optim.lr_scheduler.ReduceLROnPlateau(t, **kwargs)
    metrics = rng(1).standard_normal(40).cumsum() * 0.1 + np.linspace(5, 0, 40) * (0 if kwargs else 1)
    for m in metrics:
        s.step(m)
        ts.step(float(m))
        assert lrs(o) == lrs(t)
        assert (s.num_bad_epochs, s.cooldown_counter, s.best) == (ts.num_bad_epochs, ts.cooldown_counter, ts.best)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "warmup-then-cosine", "warmup-chained-with-exp"])
def test_state_dict_resume_continues_identically(name):
    build = CASES[name][0]
    o = ours()
    s = build(o)
    for _ in range(7):
        s.step()
    saved, saved_lrs = s.state_dict(), lrs(o)
    expected = []
    for _ in range(10):
        s.step()
        expected.append(lrs(o))
    o2 = ours()
    s2 = build(o2)
    s2.load_state_dict(saved)
    for g, lr in zip(o2.param_groups, saved_lrs):  # the optimizer's own state dict restores lrs
        g["lr"] = lr
    got = []
    for _ in range(10):
        s2.step()
        got.append(lrs(o2))
    assert got == expected


def test_plateau_state_dict_round_trip():
    o = ours()
    s = sched.ReduceLROnPlateau(o, patience=1, cooldown=1)
    for m in (3, 2, 2, 2, 2):
        s.step(m)
    s2 = sched.ReduceLROnPlateau(ours())
    s2.load_state_dict(s.state_dict())
    assert (s2.best, s2.num_bad_epochs, s2.cooldown_counter, s2.patience) == (2, s.num_bad_epochs,
                                                                              s.cooldown_counter, 1)


def test_schedule_drives_the_optimizer_like_torch():
    torch = torch_or_skip()
    g = rng(2)
    start = randn(g, (5, 4), np.float64)
    p, tp = nn.Parameter(start.copy()), torch.tensor(start.copy(), requires_grad=True)
    o, t = optim.Adam([p], lr=0.05), torch.optim.Adam([tp], lr=0.05, foreach=False)
    s = sched.SequentialLR(o, [sched.LinearWarmup(o, 3, 0.1), sched.CosineAnnealingLR(o, 10)], [3])
    ts = torch.optim.lr_scheduler.SequentialLR(
        t, [torch.optim.lr_scheduler.LinearLR(t, 0.1, total_iters=3),
            torch.optim.lr_scheduler.CosineAnnealingLR(t, 10)], [3])
    for _ in range(15):
        grad = randn(g, start.shape, np.float64)
        p.grad, tp.grad = grad, torch.from_numpy(grad.copy())
        o.step()
        t.step()
        s.step()
        ts.step()
    assert np.abs(p.data - tp.detach().numpy()).max() <= 1e-12 * np.abs(tp.detach().numpy() - start).max()


def test_cosine_closed_form_and_bad_arguments():
    o = ours()
    s = sched.CosineAnnealingLR(o, T_max=10, eta_min=0.0)
    for _ in range(5):
        s.step()
    assert lrs(o)[0] == pytest.approx(LRS[0] * (1 + math.cos(math.pi * 5 / 10)) / 2, rel=1e-14)
    with pytest.raises(TypeError, match="not a deepkern.optim.Optimizer"):
        sched.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="step_size"):
        sched.StepLR(ours(), step_size=0)
    with pytest.raises(ValueError, match="start_factor"):
        sched.LinearWarmup(ours(), 5, start_factor=0.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        sched.LinearWarmup(ours(), 0)
    with pytest.raises(ValueError, match="T_max"):
        sched.CosineAnnealingLR(ours(), T_max=0)
    with pytest.raises(ValueError, match="factor"):
        sched.ReduceLROnPlateau(ours(), factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        sched.ReduceLROnPlateau(ours(), mode="median")
    with pytest.raises(ValueError, match="min_lrs"):
        sched.ReduceLROnPlateau(ours(), min_lr=[0.1])
    o = ours()
    with pytest.raises(ValueError, match="milestones"):
        sched.SequentialLR(o, [sched.StepLR(o, 2), sched.StepLR(o, 3)], [])
    with pytest.raises(ValueError, match="another optimizer"):
        sched.ChainedScheduler([sched.StepLR(o, 2), sched.StepLR(ours(), 3)])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        sched.ChainedScheduler([sched.StepLR(o, 2), sched.ReduceLROnPlateau(o)])
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(ours(), 2, last_epoch=3)
