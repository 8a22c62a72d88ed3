"""deepkern.train: fit / evaluate / predict on small problems, History contents,
seeded reproducibility, every callback, checkpoint atomicity, resume equivalence.
(DataLoader and splits: tests/test_data.py.)"""
import os

import numpy as np
import pytest

from deepkern import data, nn, optim, train

EPOCHS = 12


def blobs(n=300, classes=3, dim=2, seed=0):
    """Gaussian blobs around well-separated centres: a problem an MLP must solve."""
    g = np.random.default_rng(seed)
    centres = 4.0 * np.eye(classes, dim) - 2.0
    y = g.integers(0, classes, n)
    return centres[y] + 0.5 * g.standard_normal((n, dim)), y


def classifier(dtype=np.float32, seed=0):
    g = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(2, 16, dtype=dtype, rng=g), nn.ReLU(), nn.Linear(16, 3, dtype=dtype, rng=g))


def run_fit(seed=0, **kw):
    X, y = blobs()
    model = classifier(seed=seed)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kw.setdefault("verbose", 0)
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), epochs=EPOCHS, batch_size=16, seed=seed, **kw)
    return model, hist, X, y


def test_fit_learns_a_separable_problem():
    model, hist, X, y = run_fit(validation=blobs(60, seed=1))
    assert len(hist) == EPOCHS
    assert set(hist.keys()) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time", "samples_per_s"}
    assert all(len(v) == EPOCHS for v in hist.history.values())
    assert hist["accuracy"][-1] >= 0.95 and hist["val_accuracy"][-1] >= 0.95
    assert hist["loss"][-1] < hist["loss"][0]
    assert all(t > 0 for t in hist["time"]) and all(s > 0 for s in hist["samples_per_s"])
    ev = train.evaluate(model, nn.CrossEntropyLoss(), blobs(60, seed=1), batch_size=7)
    assert ev["loss"] == pytest.approx(hist["val_loss"][-1], rel=1e-5)
    assert ev["accuracy"] == hist["val_accuracy"][-1]
    out = train.predict(model, X, batch_size=64)
    assert out.shape == (len(X), 3) and out.dtype == np.float32  # float64 X converted at the boundary
    assert (out.argmax(1) == y).mean() >= 0.95
    assert train.predict(model, X[:0]).shape == (0, 3)
    assert model.training  # predict and evaluate restore the mode


def test_validation_fraction_is_a_seeded_split():
    model, hist, X, y = run_fit(validation=0.25)
    (Xt, yt), (Xv, yv), _ = data.train_val_test_split(X, y, val_size=0.25, test_size=0, seed=0)
    assert len(Xv) == 75 and len(Xt) == 225
    assert train.evaluate(model, nn.CrossEntropyLoss(), (Xv, yv))["loss"] == pytest.approx(
        hist["val_loss"][-1], rel=1e-5)
    with pytest.raises(ValueError, match="fraction"):
        run_fit(validation=1.5)


def test_fit_is_reproducible_with_a_seed():
    _, h1, _, _ = run_fit(seed=3)
    _, h2, _, _ = run_fit(seed=3)
    _, h3, _, _ = run_fit(seed=4)
    assert h1["loss"] == h2["loss"] and h1["accuracy"] == h2["accuracy"]
    assert h1["loss"] != h3["loss"]


def test_fit_regression_and_float64(capsys):
    g = np.random.default_rng(5)
    X = g.standard_normal((200, 3))
    t = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    model = nn.Linear(3, 1, dtype=np.float64, rng=g)
    hist = train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.05), (X, t), epochs=15,
                     batch_size=10)
    assert "accuracy" not in hist and hist["loss"][-1] < 1e-3
    np.testing.assert_allclose(model.weight.data, [[1.0, -2.0, 0.5]], atol=0.02)
    out = capsys.readouterr().out
    assert out.count("epoch ") == 15 and "samples/s" in out


def test_fit_bad_arguments():
    X, y = blobs(20)
    model = classifier()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="unknown metric"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), 1, 4, metrics=("f1",))
    with pytest.raises(ValueError, match="reduction"):
        train.fit(model, nn.CrossEntropyLoss("none"), opt, (X, y), 1, 4)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), 1, 0)
    with pytest.raises(ValueError, match="first dimension"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X, y[:5]), 1, 4)
    with pytest.raises(ValueError, match="empty"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X[:0], y[:0]), 1, 4)


def test_history_plot():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    _, hist, _, _ = run_fit(validation=0.2)
    ax = hist.plot()
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "val_loss"]


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    _, hist, _, _ = run_fit(validation=0.2)
    path = hist.plot(tmp_path / "curves.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to plot"):
        train.History().plot(tmp_path / "empty.png")


def test_per_batch_history():
    _, hist, X, _ = run_fit(validation=0.2)
    batches = -(-240 // 16)
    b = hist.batches
    assert set(b) == {"epoch", "loss", "accuracy", "lr", "time", "samples_per_s"}
    assert all(len(v) == EPOCHS * batches for v in b.values())
    assert b["epoch"] == [e for e in range(EPOCHS) for _ in range(batches)]
    assert all(lr == 0.1 for lr in b["lr"]) and hist["lr"] == [0.1] * EPOCHS
    sizes = np.array([16] * (batches - 1) + [240 - 16 * (batches - 1)])
    first = np.array(b["loss"][:batches])
    assert hist["loss"][0] == pytest.approx((first * sizes).sum() / 240, rel=1e-12)  # sample-weighted mean
    assert all(t > 0 for t in b["time"]) and all(s > 0 for s in b["samples_per_s"])


@pytest.mark.skipif(not hasattr(nn, "Dropout"), reason="deepkern.nn.Dropout is not in this build")
def test_fit_is_bit_identical_with_the_same_seed_and_threads():
    import deepkern
    old = deepkern.get_num_threads()
    try:
        runs = []
        for threads in (1, 1, 2, 2):
            deepkern.set_num_threads(threads)
            runs.append(resumable_run(epochs=3, tmp=None)[1])
        for a, b in (runs[:2], runs[2:]):
            assert a.batches["loss"] == b.batches["loss"] and a["val_loss"] == b["val_loss"]
    finally:
        deepkern.set_num_threads(old)


# -- callbacks ---------------------------------------------------------------------

class FakeState:
    def __init__(self, model):
        self.model, self.stop_training = model, False


def test_early_stopping_logic_and_restore():
    model = classifier()
    es = train.EarlyStopping(monitor="val_loss", patience=2, min_delta=0.01, restore_best_weights=True)
    st = FakeState(model)
    values = [1.0, 0.8, 0.795, 0.79, 0.9]  # 0.795 and 0.79 do not beat 0.8 by min_delta
    for epoch, v in enumerate(values):
        model[0].weight.data[...] = epoch
        es.on_epoch_end(st, epoch, {"val_loss": v})
        if st.stop_training:
            break
    assert epoch == 3 and es.best == 0.8 and es.best_epoch == 1 and es.stopped_epoch == 3
    es.on_train_end(st)
    assert np.all(model[0].weight.data == 1)
    acc = train.EarlyStopping(monitor="val_accuracy", patience=0)
    assert acc.mode == "max"
    acc.on_epoch_end(st, 0, {"val_accuracy": 0.5})
    st.stop_training = False
    acc.on_epoch_end(st, 1, {"val_accuracy": 0.6})
    assert not st.stop_training
    with pytest.raises(ValueError, match="monitor 'val_loss' is not among"):
        train.EarlyStopping().on_epoch_end(st, 0, {"loss": 1.0})
    with pytest.raises(ValueError, match="patience"):
        train.EarlyStopping(patience=-1)


def test_early_stopping_in_fit_restores_the_best_epoch():
    X, y = blobs()
    g = np.random.default_rng(9)
    val = (X[:60], g.integers(0, 3, 60))  # random labels: the validation loss soon gets worse
    model = classifier()
    es = train.EarlyStopping(patience=1, restore_best_weights=True)
    hist = train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9), (X, y),
                     epochs=30, batch_size=16, validation=val, callbacks=[es], verbose=0)
    assert len(hist) == es.stopped_epoch + 1 < 30 and es.stopped_epoch == es.best_epoch + es.patience
    assert train.evaluate(model, nn.CrossEntropyLoss(), val)["loss"] == pytest.approx(min(hist["val_loss"]),
                                                                                      rel=1e-6)


def test_lr_scheduler_callback_per_epoch_batch_and_plateau():
    from deepkern.optim import lr_scheduler as S
    X, y = blobs(64)
    model = classifier()
    opt = optim.SGD(model.parameters(), lr=0.1)
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), epochs=4, batch_size=16, verbose=0,
                     scheduler=S.StepLR(opt, step_size=2, gamma=0.5))
    assert hist["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    model = classifier()
    opt = optim.SGD(model.parameters(), lr=0.1)
    cb = train.LRSchedulerCallback(S.ExponentialLR(opt, gamma=0.9), interval="batch")
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), epochs=2, batch_size=16, verbose=0, callbacks=[cb])
    assert hist.batches["lr"] == pytest.approx([0.1 * 0.9 ** k for k in range(8)])
    opt = optim.SGD(model.parameters(), lr=0.1)
    cb = train.LRSchedulerCallback(S.ReduceLROnPlateau(opt, factor=0.5, patience=0), monitor="loss")
    st = FakeState(model)
    for epoch, v in enumerate([1.0, 1.0, 1.0]):
        cb.on_epoch_end(st, epoch, {"loss": v})
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    with pytest.raises(ValueError, match="interval"):
        train.LRSchedulerCallback(S.ExponentialLR(opt, gamma=0.9), interval="step")


def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    _, hist, _, _ = run_fit(validation=0.2, callbacks=[train.CSVLogger(path)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr,time,samples_per_s"
    assert len(lines) == EPOCHS + 1
    last = lines[-1].split(",")
    assert last[0] == str(EPOCHS) and float(last[1]) == hist["loss"][-1] and float(last[4]) == hist["val_accuracy"][-1]
    run_fit(callbacks=[train.CSVLogger(path, append=True)])
    assert len(path.read_text().splitlines()) == 2 * EPOCHS + 1


def test_progress_bar_only_on_a_terminal(capsys):
    pytest.importorskip("tqdm")
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    run_fit(verbose=1)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.count("epoch ") == EPOCHS  # not a terminal: lines, no bar
    run_fit(verbose=0)
    assert capsys.readouterr() == ("", "")
    term = Terminal()
    bar = train.ProgressBar(file=term)
    assert bar.active
    run_fit(verbose=0, callbacks=[bar])
    shown = term.getvalue()
    assert f"epoch {EPOCHS}/{EPOCHS}" in shown and "loss=" in shown and "acc=" in shown and "samples/s=" in shown
    assert not train.ProgressBar(file=io.StringIO()).active


# -- checkpoints and resuming --------------------------------------------------------

def test_checkpoint_round_trip_keeps_types(tmp_path):
    from collections import Counter
    state = {"a": np.arange(3, dtype=np.float32), 3: (1, 2.5, "x"), "c": Counter({5: 2}), "inf": float("inf"),
             "s": np.float32(0.1), "n": None, "b": True, "nested": [{"k": np.zeros((2, 0))}], "big": 2 ** 100}
    train.save_checkpoint(tmp_path / "c.npz", state)
    back = train.load_checkpoint(tmp_path / "c.npz")
    assert back[3] == (1, 2.5, "x") and back["c"] == Counter({5: 2}) and back["inf"] == float("inf")
    assert back["s"].dtype == np.float32 and back["s"] == np.float32(0.1) and back["big"] == 2 ** 100
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], state["a"])
    assert back["n"] is None and back["b"] is True and back["nested"][0]["k"].shape == (2, 0)
    with pytest.raises(TypeError, match="cannot store a object"):
        train.save_checkpoint(tmp_path / "d.npz", {"x": object()})


def test_load_checkpoint_refuses_pickles_and_foreign_files(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train.load_checkpoint(tmp_path / "obj.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a deepkern checkpoint"):
        train.load_checkpoint(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train.load_checkpoint(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        train.load_checkpoint(tmp_path / "none.npz")


def test_model_checkpoint_every_epoch_best_only_and_formats(tmp_path):
    X, y = blobs()
    _, hist, _, _ = run_fit(validation=0.2, callbacks=[
        train.ModelCheckpoint(tmp_path / "e{epoch:02d}.npz", every=4),
        train.ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy", save_best_only=True)])
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "e04.npz", "e08.npz", "e12.npz"]
    best = train.load_checkpoint(tmp_path / "best.npz")
    accs = hist["val_accuracy"]
    assert best["epoch"] == accs.index(max(accs)) + 1
    model = classifier(seed=5)
    train.load_weights(model, tmp_path / "e12.npz")
    ck = train.load_checkpoint(tmp_path / "e12.npz")
    assert np.array_equal(model[0].weight.data, ck["model"]["0.weight"]) and ck["epoch"] == 12
    assert len(ck["history"]["history"]["loss"]) == 12


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A crash during the write (exception mid-savez) or before the rename (the process
    killed: os.replace never runs) leaves the previous checkpoint whole."""
    path = tmp_path / "ck.npz"
    model, _, _, _ = run_fit(callbacks=[train.ModelCheckpoint(path)])
    good = path.read_bytes()

    def crash_mid_write(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        run_fit(callbacks=[train.ModelCheckpoint(path)])
    monkeypatch.undo()
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["ck.npz"]  # temp file removed

    def killed(src, dst):
        raise SystemExit("killed before the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(SystemExit):
        run_fit(seed=1, callbacks=[train.ModelCheckpoint(path)])
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert train.load_checkpoint(path)["epoch"] == EPOCHS


def resumable_run(epochs, tmp, resume_from=None, init_seed=0):
    """A run with every kind of state: Adam moments, a StepLR schedule, BatchNorm
    running statistics, Dropout's generator, augmentation, a validation split,
    early-stopping counters; checkpoints every epoch when tmp is given."""
    from deepkern.optim import lr_scheduler as S
    X, y = blobs(200)
    g = np.random.default_rng(init_seed)
    model = nn.Sequential(nn.Linear(2, 16, rng=g), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Dropout(0.2, rng=np.random.default_rng(init_seed + 100)), nn.Linear(16, 3, rng=g))
    opt = optim.Adam(model.parameters(), lr=0.01)
    sched = S.StepLR(opt, step_size=2, gamma=0.5)
    cbs = [train.EarlyStopping(patience=50, restore_best_weights=True)]
    if tmp is not None:
        cbs.append(train.ModelCheckpoint(os.path.join(tmp, "ck{epoch}.npz")))
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), epochs=epochs, batch_size=32, validation=0.2,
                     seed=11, verbose=0, callbacks=cbs, scheduler=sched, resume_from=resume_from,
                     transform=data.GaussianNoise(0.05))
    return model, hist, opt


@pytest.mark.skipif(not hasattr(nn, "Dropout"), reason="deepkern.nn.Dropout is not in this build")
def test_resume_continues_bit_identically(tmp_path):
    model, hist, opt = resumable_run(6, str(tmp_path))
    model2, hist2, opt2 = resumable_run(6, None, resume_from=tmp_path / "ck3.npz", init_seed=42)
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert np.array_equal(a, b), n
    assert hist2["loss"] == hist["loss"] and hist2["val_loss"] == hist["val_loss"] and hist2["lr"] == hist["lr"]
    assert hist2.batches["loss"] == hist.batches["loss"]
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(np.array_equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"]) for i in s1)
    # nothing left to do: a checkpoint of the last epoch returns its history untouched
    _, hist3, _ = resumable_run(6, None, resume_from=tmp_path / "ck6.npz")
    assert hist3["loss"] == hist["loss"]
