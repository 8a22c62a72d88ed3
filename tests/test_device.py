"""Devices above the kernels: array_module / to_device, Module.to, optimizer state
that follows its parameters, device-independent state dicts and checkpoints, and
whole training runs on a GPU against the same runs on the CPU.

The CPU tests always run (on a machine without CUDA they also check the one-line
refusal of --device cuda). The GPU tests live in TestGpu* classes and skip, with
the reason, where there is no CUDA build, GPU or CuPy (see tests/helpers.py).
Their training runs use the same helper (`run`) that TestTrainingHarness checks
on the CPU, so a GPU failure is about the device, not the harness.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import deepkern as dk
from deepkern import models, nn, optim, train
from deepkern._array import array_module, canonical, device_of, parse_device, to_device
from helpers import requires_gpu, to_cpu, to_gpu

# -- data and training runs shared by the CPU and GPU tests ---------------------------


def digits(layout):
    """(X, y): scikit-learn's digits when it is installed, else a synthetic stand-in of
    the same shape (a template per class plus noise), so the GPU tests never skip for
    want of scikit-learn. layout: "flat" (N, 64), "image" (N, 1, 8, 8) or "rows"
    (N, 8, 8); standardised float32."""
    try:
        X, y = dk.data.load_digits(flatten=False)
    except ImportError:
        g = np.random.default_rng(0)
        y = g.integers(0, 10, 1797)
        X = np.clip(g.uniform(0, 16, (10, 64))[y] + g.normal(0, 4, (1797, 64)), 0, 16)
        X = X.astype(np.float32).reshape(-1, 1, 8, 8)
    X = dk.data.standardize(X, per="channel" if layout == "image" else "feature")
    return {"flat": X.reshape(len(X), 64), "image": X, "rows": X.reshape(len(X), 8, 8)}[layout], y


# name -> (model builder, data layout, optimizer, lr, epochs): an MLP with dropout
# (the counter-based masks are the same on both devices), a small CNN with batch
# norm, pooling and global pooling, an LSTM classifier.
RUNS = {
    "mlp": (lambda: models.mlp(64, 10, hidden=(64,), dropout=0.1, seed=0), "flat", optim.SGD, 0.05, 3),
    "cnn": (lambda: models.vgg_small(1, 10, widths=(8, 16), seed=0), "image", optim.Adam, 3e-3, 2),
    "lstm": (lambda: models.lstm_classifier(8, hidden_size=32, seed=0), "rows", optim.Adam, 1e-2, 2),
}


def run(name, device, data=None, epochs=None, **fit_kw):
    """Train RUNS[name] from its seed on `device`; (History, model)."""
    build, layout, opt_cls, lr, default_epochs = RUNS[name]
    X, y = digits(layout) if data is None else data
    dk.manual_seed(0)  # Dropout draws its seeds from the global generator
    model = build()
    extra = dict(momentum=0.9) if opt_cls is optim.SGD else {}
    opt = opt_cls(model.parameters(), lr=lr, **extra)
    h = train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), epochs=epochs or default_epochs, batch_size=64,
                  validation=0.2, seed=0, verbose=0, device=device, **fit_kw)
    return h, model


# -- CPU: always ----------------------------------------------------------------------


def test_array_module_is_numpy_for_host_data():
    had_cupy = "cupy" in sys.modules
    for x in (np.zeros(3, np.float32), [1.0, 2.0], 3.0, np.float64(1)):
        assert array_module(x) is np
        assert device_of(x) == "cpu"
    assert ("cupy" in sys.modules) == had_cupy, "array_module imported CuPy for host data"
    assert dk.array_module is array_module and dk.to_device is to_device


def test_device_names():
    assert parse_device("cpu") == ("cpu", None)
    assert parse_device("cuda") == ("cuda", None)
    assert parse_device("cuda:3") == ("cuda", 3)
    assert canonical("cpu") == "cpu"
    for bad in ("gpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "CUDA", "", None, 0):
        with pytest.raises(ValueError, match=r"\[device\] expected 'cpu', 'cuda' or 'cuda:N'"):
            parse_device(bad)


def test_to_device_cpu_copies_only_when_asked():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert to_device(a, "cpu") is a
    b = to_device(a.T, "cpu", copy=True)
    assert b.flags.c_contiguous and np.array_equal(b, a.T) and not np.shares_memory(a, b)
    assert isinstance(to_device([1, 2], "cpu"), np.ndarray)


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=np.random.default_rng(0)), nn.BatchNorm2d(4),
                         nn.ReLU(), nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(4, 3, rng=np.random.default_rng(1)))


def one_step(model, opt, x, y):
    loss = nn.CrossEntropyLoss()
    out = model(x)
    loss(out, y)
    model.zero_grad()
    model.backward(loss.backward())
    opt.step()


def test_module_to_cpu_is_a_no_op_round_trip():
    g = np.random.default_rng(0)
    x, y = g.standard_normal((8, 1, 5, 5)).astype(np.float32), g.integers(0, 3, 8)
    model = small_cnn()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    one_step(model, opt, x, y)
    before = {n: (p, p.data, p.grad) for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    assert model.to("cpu") is model
    assert model.to(device="cpu") is model
    for n, p in model.named_parameters():
        same = [a is b for a, b in zip((p, p.data, p.grad), before[n])]
        assert same == [True] * 3, n  # the same objects: nothing copied
        assert p.device == "cpu"
    assert all(b is buffers[n] for n, b in model.named_buffers())
    one_step(model, opt, x, y)  # forward again after the move; the optimizer carries on
    model.to("cpu", np.float64)
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in model.parameters())
    assert model[1].running_mean.dtype == np.float64 and model[1].num_batches_tracked.dtype == np.int64
    model.to(dtype="float32", device="cpu")
    assert all(p.dtype == np.float32 for p in model.parameters())
    with pytest.raises(TypeError, match="two devices"):
        model.to("cpu", "cuda")
    with pytest.raises(TypeError, match="two dtypes"):
        model.to(np.float32, np.float64)


def test_state_dicts_are_numpy():
    g = np.random.default_rng(0)
    x, y = g.standard_normal((8, 1, 5, 5)).astype(np.float32), g.integers(0, 3, 8)
    model = small_cnn()
    opt = optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    one_step(model, opt, x, y)
    for name, a in model.state_dict().items():
        assert type(a) is np.ndarray, name
    state = opt.state_dict()["state"]
    assert state and all(type(v) is np.ndarray for s in state.values() for k, v in s.items() if k != "step")
    # Copies: stepping again leaves a snapshot alone.
    snap = opt.state_dict()["state"][0]["exp_avg"]
    kept = snap.copy()
    one_step(model, opt, x, y)
    assert np.array_equal(snap, kept) and not np.array_equal(opt.state_dict()["state"][0]["exp_avg"], kept)


def test_fit_on_cpu_explicitly_matches_the_default():
    X, y = digits("flat")
    X, y = X[:400], y[:400]
    h1, m1 = run("mlp", None, data=(X, y), epochs=2)
    h2, m2 = run("mlp", "cpu", data=(X, y), epochs=2)
    assert h1.batches["loss"] == h2.batches["loss"]
    assert isinstance(train.predict(m2, X[:10], device="cpu"), np.ndarray)
    assert train.evaluate(m1, nn.CrossEntropyLoss(), (X, y)) == \
        train.evaluate(m2, nn.CrossEntropyLoss(), (X, y), device="cpu")


class TestTrainingHarness:
    """The helper the GPU tests compare devices with gives the same curve twice on the CPU."""

    def test_mlp_run_is_reproducible(self):
        (h1, _), (h2, _) = run("mlp", "cpu", epochs=1), run("mlp", "cpu", epochs=1)
        assert h1.batches["loss"] == h2.batches["loss"] and h1["val_accuracy"][-1] > 0.5


@pytest.mark.skipif(dk.cuda.unavailable_reason() is None, reason="CUDA is available here: nothing to refuse")
class TestWithoutCuda:
    """Where CUDA cannot be used, asking for it fails at once, saying what is missing."""

    def test_cli_device_cuda_is_one_line(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(dk.__path__[0]),
                                                                         os.environ.get("PYTHONPATH")])))
        r = subprocess.run([sys.executable, "-m", "deepkern", "train", "--device", "cuda", "--epochs", "1"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1, r
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("deepkern train: --device cuda: CUDA is not available: ")
        assert dk.cuda.unavailable_reason() in r.stderr
        assert r.stdout == ""  # refused before loading data or building the model

    def test_reason_names_each_missing_piece(self):
        reason = dk.cuda.unavailable_reason()
        if not dk.cuda.is_built():
            assert "built without CUDA" in reason
        elif dk.cuda.device_count() == 0:
            assert "no CUDA GPU was found" in reason
        try:
            import cupy  # noqa: F401
        except ImportError:
            assert "CuPy is not installed" in reason

    def test_library_calls_refuse_cuda(self):
        model = small_cnn()
        for call in (lambda: to_device(np.zeros(2), "cuda"), lambda: model.to("cuda"),
                     lambda: dk.data.DataLoader(np.zeros((4, 2)), 2, device="cuda:0"),
                     lambda: train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters()),
                                       (np.zeros((4, 1, 5, 5)), np.zeros(4, np.int64)), 1, 2, verbose=0,
                                       device="cuda")):
            with pytest.raises(RuntimeError, match=r"CUDA is not available: "):
                call()
        assert all(p.device == "cpu" for p in model.parameters())  # a refused move moves nothing


# -- GPU --------------------------------------------------------------------------------


def assert_curves_close(h_gpu, h_cpu, what):
    """The same run on two devices: the first batches (weights still equal, only summation
    order differs) within 2e-3, then the epoch means within 3% as rounding differences grow
    through training, and the final validation accuracy within 3 points."""
    g, c = np.array(h_gpu.batches["loss"]), np.array(h_cpu.batches["loss"])
    assert g.shape == c.shape, what
    np.testing.assert_allclose(g[:3], c[:3], rtol=2e-3, err_msg=f"{what}: first batches")
    np.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], rtol=3e-2, err_msg=f"{what}: epoch losses")
    assert abs(h_gpu["val_accuracy"][-1] - h_cpu["val_accuracy"][-1]) <= 0.03, what


@requires_gpu
class TestGpuTraining:
    @pytest.mark.parametrize("name", sorted(RUNS))
    def test_gpu_run_matches_cpu(self, name):
        h_cpu, m_cpu = run(name, "cpu")
        h_gpu, m_gpu = run(name, "cuda")
        assert all(p.device.startswith("cuda:") for p in m_gpu.parameters())
        assert_curves_close(h_gpu, h_cpu, name)
        assert h_gpu["val_accuracy"][-1] > 0.5, h_gpu["val_accuracy"]

    def test_gpu_data_gives_the_run_of_host_data(self):
        X, y = digits("flat")
        h_host, _ = run("mlp", "cuda", data=(X, y), epochs=1)
        h_dev, _ = run("mlp", "cuda", data=(to_gpu(X), to_gpu(y)), epochs=1)
        np.testing.assert_allclose(h_dev.batches["loss"], h_host.batches["loss"], rtol=1e-5)

    def test_gpu_predict_and_evaluate(self):
        X, y = digits("image")
        _, model = run("cnn", "cuda", epochs=1)
        out = train.predict(model, X[:100])
        assert device_of(out).startswith("cuda:") and out.shape == (100, 10)
        ev_gpu = train.evaluate(model, nn.CrossEntropyLoss(), (X, y))
        model.to("cpu")
        np.testing.assert_allclose(to_cpu(out), train.predict(model, X[:100]), rtol=1e-4, atol=1e-5)
        ev_cpu = train.evaluate(model, nn.CrossEntropyLoss(), (X, y))
        assert ev_gpu["loss"] == pytest.approx(ev_cpu["loss"], rel=1e-4)
        assert abs(ev_gpu["accuracy"] - ev_cpu["accuracy"]) <= 2 / len(X)

    def test_gpu_checkpoint_resume_and_load_on_cpu(self, tmp_path):
        ck = str(tmp_path / "ck.npz")
        h_all, m_all = run("cnn", "cuda", epochs=3)
        run("cnn", "cuda", epochs=2, callbacks=[dk.callbacks.ModelCheckpoint(ck)])
        h_res, m_res = run("cnn", "cuda", epochs=3, resume_from=ck)
        # Loose enough for kernels that sum in a varying order, far below what a wrong resume gives.
        np.testing.assert_allclose(h_res["loss"], h_all["loss"], rtol=1e-4)
        for (n, a), b in zip(m_res.state_dict().items(), m_all.state_dict().values()):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=n)
        cpu_model = RUNS["cnn"][0]()
        train.load_weights(cpu_model, ck)  # written from a GPU, read on the CPU
        assert all(type(a) is np.ndarray for a in cpu_model.state_dict().values())

    def test_gpu_cli_train(self, capsys):
        pytest.importorskip("sklearn", reason="scikit-learn (deepkern[examples]) is not installed")
        from deepkern import cli
        assert cli.main(["train", "--device", "cuda", "--epochs", "5", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "device cuda:" in out
        assert float(out.split("test accuracy ")[1].split()[0]) >= 0.9, out


@requires_gpu
class TestGpuMoves:
    def test_gpu_module_round_trip(self):
        model = models.vgg_small(1, 10, widths=(8, 16), seed=0)
        X, y = digits("image")
        one_step(model, optim.SGD(model.parameters(), lr=0.1), X[:32], y[:32])  # grads and running stats
        ref = model.state_dict()
        grads = {n: p.grad.copy() for n, p in model.named_parameters()}
        params = list(model.parameters())
        assert model.to("cuda") is model
        assert list(model.parameters()) == params  # the same Parameter objects
        for n, p in model.named_parameters():
            assert array_module(p.data) is not np and array_module(p.grad) is not np, n
            assert p.device == device_of(p.grad) == canonical("cuda")
        for n, b in model.named_buffers():
            assert device_of(b).startswith("cuda:"), n
        sd = model.state_dict()
        assert all(type(a) is np.ndarray for a in sd.values())
        for n in ref:
            assert np.array_equal(sd[n], ref[n]), n  # copies both ways are exact
        model.to("cpu")
        for n, p in model.named_parameters():
            assert type(p.data) is np.ndarray and np.array_equal(p.grad, grads[n]), n

    def test_gpu_load_state_dict_copies_to_the_device(self):
        cpu_model, gpu_model = small_cnn(), small_cnn()
        for p in cpu_model.parameters():
            p.data[...] += 0.5  # differ from gpu_model's initialisation
        gpu_model.to("cuda")
        gpu_model.load_state_dict(cpu_model.state_dict())
        x = np.random.default_rng(0).standard_normal((4, 1, 5, 5)).astype(np.float32)
        cpu_model.eval()
        gpu_model.eval()
        np.testing.assert_allclose(to_cpu(gpu_model(to_gpu(x))), cpu_model(x), rtol=1e-5, atol=1e-6)
        assert all(device_of(p.data).startswith("cuda:") for p in gpu_model.parameters())

    @pytest.mark.parametrize("opt_name", ["SGD", "Adam", "RMSprop"])
    def test_gpu_optimizer_state_follows_the_parameters(self, opt_name):
        X, y = digits("flat")
        kw = {"SGD": dict(lr=0.05, momentum=0.9), "Adam": dict(lr=1e-2),
              "RMSprop": dict(lr=1e-3, momentum=0.9)}[opt_name]
        runs = {}
        for moved in (False, True):
            model = models.mlp(64, 10, hidden=(32,), seed=0)
            opt = getattr(optim, opt_name)(model.parameters(), **kw)
            for step in range(6):
                if moved and step == 2:
                    model.to("cuda")
                if moved and step == 4:
                    model.to("cpu")
                xb, yb = X[32 * step:32 * (step + 1)], y[32 * step:32 * (step + 1)]
                one_step(model, opt, to_device(xb, model[0].weight.device), to_device(yb, model[0].weight.device))
                if moved and step in (2, 3):
                    arrays = [v for s in opt.state.values() for v in s.values() if hasattr(v, "shape")]
                    assert arrays and all(device_of(a).startswith("cuda:") for a in arrays), step
            assert all(type(v) is np.ndarray for s in opt.state.values() for v in s.values() if hasattr(v, "shape"))
            runs[moved] = model.state_dict()
        for n in runs[False]:
            np.testing.assert_allclose(runs[True][n], runs[False][n], rtol=1e-4, atol=1e-6, err_msg=n)

    def test_gpu_rnn_layers_match_cpu(self):
        """The strided paths: batch_first, two layers, both directions, dropout between layers,
        an initial state; forward and backward against the same module on the CPU."""
        g = np.random.default_rng(0)
        x = g.standard_normal((3, 5, 4)).astype(np.float32)
        h0, c0 = (g.standard_normal((4, 3, 6)).astype(np.float32) for _ in range(2))
        dy = g.standard_normal((3, 5, 12)).astype(np.float32)
        mods = [nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True, dropout=0.3,
                        rng=np.random.default_rng(1)) for _ in range(2)]
        mods[1].to("cuda")
        out_c, (hn_c, cn_c) = mods[0](x, (h0, c0))
        out_g, (hn_g, cn_g) = mods[1](to_gpu(x), (to_gpu(h0), to_gpu(c0)))
        for a, b in ((out_g, out_c), (hn_g, hn_c), (cn_g, cn_c)):
            np.testing.assert_allclose(to_cpu(a), b, rtol=1e-4, atol=1e-5)
        dx_c, (dh_c, dc_c) = mods[0].backward(dy)
        dx_g, (dh_g, dc_g) = mods[1].backward(to_gpu(dy))
        for a, b in ((dx_g, dx_c), (dh_g, dh_c), (dc_g, dc_c)):
            np.testing.assert_allclose(to_cpu(a), b, rtol=1e-4, atol=1e-5)
        for (n, p_c), p_g in zip(mods[0].named_parameters(), mods[1].parameters()):
            np.testing.assert_allclose(to_cpu(p_g.grad), p_c.grad, rtol=1e-4, atol=1e-5, err_msg=n)

    def test_gpu_embedding_clip_and_penalties(self):
        emb = [nn.Embedding(10, 4, padding_idx=0, rng=np.random.default_rng(0)) for _ in range(2)]
        emb[1].to("cuda")
        idx = np.array([[1, 2, 2], [0, 9, 1]])
        dy = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
        np.testing.assert_array_equal(to_cpu(emb[1](idx)), emb[0](idx))  # host indices go to the GPU
        emb[0].backward(dy)
        emb[1].backward(to_gpu(dy))
        np.testing.assert_allclose(to_cpu(emb[1].weight.grad), emb[0].weight.grad, rtol=1e-6)
        norms = [optim.clip_grad_norm_(e.parameters(), 0.5) for e in emb]
        assert norms[1] == pytest.approx(norms[0], rel=1e-5)
        np.testing.assert_allclose(to_cpu(emb[1].weight.grad), emb[0].weight.grad, rtol=1e-5, atol=1e-7)
        for penalty in (optim.l1_penalty, optim.l2_penalty):
            assert penalty(emb[1].parameters(), 0.1) == pytest.approx(penalty(emb[0].parameters(), 0.1), rel=1e-5)

    def test_gpu_loader_and_augmentation(self):
        X = np.random.default_rng(0).standard_normal((10, 2, 6, 6)).astype(np.float32)
        aug = dk.data.Compose([dk.data.RandomCrop(6, padding=1), dk.data.RandomHorizontalFlip(),
                               dk.data.GaussianNoise(0.1)])
        host = dk.data.DataLoader(X, 4, shuffle=True, seed=3, transform=aug)
        moved = dk.data.DataLoader(X, 4, shuffle=True, seed=3, transform=aug, device="cuda")
        on_gpu = dk.data.DataLoader(to_gpu(X), 4, shuffle=True, seed=3, transform=aug)
        for a, b, c in zip(host, moved, on_gpu):
            assert device_of(b).startswith("cuda:") and device_of(c).startswith("cuda:")
            np.testing.assert_array_equal(to_cpu(b), a)
            np.testing.assert_allclose(to_cpu(c), a, rtol=1e-6, atol=1e-6)
