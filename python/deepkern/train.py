"""The training loop: fit, evaluate, predict, and the History fit returns.

fit runs, per mini-batch: forward, loss, zero_grad, backward from the loss
gradient, optimizer step; it records per batch the loss, accuracy (argmax of 2-D
outputs against integer targets), learning rate, time and throughput, and per
epoch the sample-weighted means, the validation loss and accuracy, the lr, wall
time and samples/s. Data is converted once, at the boundary, to the dtype of the
model's parameters (and integer targets to int64), so no batch is cast inside
the loop. Shuffling, augmentation and the validation split are seeded: epoch e's
batches depend on (seed, e) only (see DataLoader), so the same seed and thread
count give the same losses run to run, and a run resumed from a checkpoint
(resume_from=) continues bit for bit as the uninterrupted one would have.

Devices: fit, evaluate and predict run where the model's parameters are, or on
`device=` ("cpu", "cuda", "cuda:N"), to which the model (and the loss's buffers)
are then moved first. Data may be numpy (host) or CuPy arrays: each batch is
gathered (and augmented) where the data lives and copied to the device once,
as one array per batch. Losses come to the host as one float per batch, and the
accuracy count as one integer, computed on the device.
"""
import numbers
import time

import numpy as np

from ._array import array_module, as_array, canonical, device_of, device_scope, to_device
from .callbacks import (Callback, CSVLogger, EarlyStopping, LRSchedulerCallback, ModelCheckpoint,  # noqa: F401
                        ProgressBar)
from .checkpoint import load_checkpoint, save_checkpoint
from .data import DataLoader, train_val_test_split
from .nn.module import Module

_METRICS = ("accuracy",)


class History:
    """What fit recorded. history[key] (also history.history[key]): one value per
    epoch for loss, accuracy, val_loss, val_accuracy, lr, time (seconds),
    samples_per_s. history.batches[key]: one value per batch for epoch, loss,
    accuracy, lr, time, samples_per_s."""

    def __init__(self):
        self.history = {}
        self.batches = {}

    def append(self, **values):
        for k, v in values.items():
            self.history.setdefault(k, []).append(v)

    def append_batch(self, **values):
        for k, v in values.items():
            self.batches.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def keys(self):
        return self.history.keys()

    def __len__(self):
        return len(self.history.get("loss", []))

    def __repr__(self):
        return f"History(epochs={len(self)}, keys={list(self.history)})"

    def state_dict(self):
        return {"history": self.history, "batches": self.batches}

    def load_state_dict(self, d):
        self.history = {k: list(v) for k, v in d["history"].items()}
        self.batches = {k: list(v) for k, v in d["batches"].items()}

    def plot(self, path=None, keys=None, ax=None):
        """With `path`: write a PNG with one panel per quantity (loss, then each
        metric; training and validation curves together) and return the path.
        Without: draw the curves named by `keys` (default loss and val_loss) on `ax`
        (default the current pyplot axes) and return it. Needs matplotlib."""
        try:
            import matplotlib  # noqa: F401
        except ImportError as e:
            raise ImportError("[History.plot] needs matplotlib: pip install deepkern[examples]") from e
        if path is None:
            import matplotlib.pyplot as plt
            ax = ax if ax is not None else plt.gca()
            self._draw(ax, keys if keys is not None else ("loss", "val_loss"))
            return ax
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        panels = [k for k in self.history if not k.startswith("val_") and k not in ("time", "samples_per_s", "lr")]
        if keys is not None:
            panels = [k for k in keys if k in self.history]
        if not panels:
            raise ValueError("[History.plot] nothing to plot: the history is empty")
        fig = Figure(figsize=(5 * len(panels), 4), layout="constrained")
        FigureCanvasAgg(fig)
        for i, key in enumerate(panels):
            a = fig.add_subplot(1, len(panels), i + 1)
            self._draw(a, [key, "val_" + key])
            a.set_title(key)
        fig.savefig(path, format="png", dpi=100)
        return path

    def _draw(self, ax, keys):
        for k in keys:
            if k in self.history:
                ax.plot(np.arange(1, len(self.history[k]) + 1), self.history[k], label=k)
        ax.set_xlabel("epoch")
        ax.legend()


def _model_dtype(model):
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def _model_device(model):
    for p in model.parameters():
        return p.device
    return "cpu"


def _place(model, loss, device):
    """The device to run on, "cpu" or "cuda:N": `device`, with the model moved there
    when it is elsewhere, or (None) the model's. The loss's buffers (pos_weight,
    class weights) follow, since each op takes its arrays from one device."""
    if device is None:
        device = _model_device(model)
    else:
        device = canonical(device)
        if _model_device(model) != device:
            model.to(device)
    if isinstance(loss, Module) and any(device_of(b) != device for b in loss.buffers()):
        loss.to(device)
    return device


def _xy(data, dtype, op):
    """(X, y) converted once: X to the model's dtype, integer y to int64, both
    C-contiguous, on the device they came from (numpy or CuPy)."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"[{op}] data must be a pair (X, y), got {type(data).__name__}")
    X, y = as_array(data[0]), as_array(data[1])
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise ValueError(f"[{op}] X and y must share their first dimension, got shapes {X.shape} and {y.shape}")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"[{op}] X must be numeric, got {X.dtype}")
    X = array_module(X).ascontiguousarray(X, dtype=dtype)
    y = array_module(y).ascontiguousarray(y, dtype=np.int64 if y.dtype.kind in "iu" else dtype)
    return X, y


def _correct(out, y):
    """How many rows of out have their argmax at the label: counted on out's device,
    one integer to the host."""
    return int(array_module(out).count_nonzero(out.argmax(axis=1) == y))


def _positive_int(v, name, op):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"[{op}] {name} must be a positive integer, got {v!r}")
    return int(v)


def _check_loss(loss, op):
    if getattr(loss, "reduction", "mean") not in ("mean", "sum"):
        raise ValueError(f"[{op}] the loss must reduce to a scalar (reduction 'mean' or 'sum'), "
                         f"got {loss.reduction!r}")


def _is_classification(out, y):
    return out.ndim == 2 and y.ndim == 1 and y.dtype.kind in "iu"


def _run_epoch(model, loss, batches):
    """Evaluation pass: sum of per-sample losses, correct predictions (or None), samples seen."""
    total, correct, n = 0.0, 0, 0
    per_batch_sum = getattr(loss, "reduction", "mean") == "sum"
    for xb, yb in batches:
        out = model(xb)
        value = float(loss(out, yb))
        total += value if per_batch_sum else value * len(xb)
        if correct is not None and _is_classification(out, yb):
            correct += _correct(out, yb)
        else:
            correct = None
        n += len(xb)
    return total, correct, n


def evaluate(model, loss, data, batch_size=256, device=None):
    """Mean loss (and accuracy for classification) over data = (X, y), in eval mode.
    Returns {"loss": ..., "accuracy": ...}; NaN for an empty data set. device: see
    the module docstring (default: the model's)."""
    _check_loss(loss, "evaluate")
    X, y = _xy(data, _model_dtype(model), "evaluate")
    batch_size = _positive_int(batch_size, "batch_size", "evaluate")
    device = _place(model, loss, device)
    was_training = model.training
    model.eval()
    try:
        with device_scope(device):
            total, correct, n = _run_epoch(model, loss, DataLoader((X, y), batch_size, device=device))
    finally:
        model.train(was_training)
    if n == 0:
        return {"loss": float("nan"), "accuracy": float("nan")}
    result = {"loss": total / n}
    if correct is not None:
        result["accuracy"] = correct / n
    return result


def predict(model, X, batch_size=256, device=None):
    """model(X) in eval mode, batch by batch, concatenated: an array on the device the
    model ran on (device: see the module docstring; default the model's)."""
    X = as_array(X)
    X = array_module(X).ascontiguousarray(X, dtype=_model_dtype(model))
    batch_size = _positive_int(batch_size, "batch_size", "predict")
    device = _place(model, None, device)
    was_training = model.training
    model.eval()
    try:
        with device_scope(device):
            if len(X) == 0:
                return model(to_device(X, device))  # an empty batch gives the empty result of the right shape
            outs = [model(xb) for xb in DataLoader(X, batch_size, device=device)]
            return array_module(outs[0]).concatenate(outs)
    finally:
        model.train(was_training)


def _generators(model):
    """(name, Generator) of every numpy Generator a module holds (e.g. a dropout
    mask's source): a checkpoint saves their states so a resumed run draws the same."""
    for mname, m in model.named_modules():
        for attr, v in sorted(vars(m).items()):
            if isinstance(v, np.random.Generator):
                yield f"{mname}.{attr}" if mname else attr, v


class FitState:
    """What callbacks see of a running fit (see deepkern.callbacks)."""

    def __init__(self, model, loss, optimizer, history, callbacks, epochs, batches_per_epoch, initial_epoch):
        self.model, self.loss, self.optimizer, self.history = model, loss, optimizer, history
        self.callbacks, self.epochs, self.batches_per_epoch = callbacks, epochs, batches_per_epoch
        self.initial_epoch = initial_epoch
        self.epoch = initial_epoch  # epochs completed
        self.stop_training = False

    def checkpoint(self):
        """Everything a resumed fit needs, as a dict for deepkern.checkpoint."""
        per_class = {}
        for cb in self.callbacks:
            per_class.setdefault(type(cb).__name__, []).append(cb.state_dict())
        return {"epoch": self.epoch, "model": dict(self.model.state_dict()),
                "optimizer": self.optimizer.state_dict(), "callbacks": per_class,
                "history": self.history.state_dict(),
                "generators": {n: g.bit_generator.state for n, g in _generators(self.model)}}

    def save_checkpoint(self, path):
        save_checkpoint(path, self.checkpoint())

    def restore(self, ckpt):
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        seen = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            i = seen[name] = seen.get(name, -1) + 1
            saved = ckpt["callbacks"].get(name, [])
            if i < len(saved):
                cb.load_state_dict(saved[i])
        self.history.load_state_dict(ckpt["history"])
        gens = dict(_generators(self.model))
        for name, st in ckpt["generators"].items():
            if name in gens:
                gens[name].bit_generator.state = st
        self.epoch = self.initial_epoch = int(ckpt["epoch"])

    def call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)


def _lr(optimizer):
    return float(optimizer.param_groups[0]["lr"])


def fit(model, loss, optimizer, train, epochs, batch_size, validation=None, shuffle=True, seed=0,
        verbose=1, metrics=("accuracy",), callbacks=(), scheduler=None, resume_from=None, transform=None,
        drop_last=False, device=None):
    """Train `model` on train = (X, y) for `epochs` epochs of mini-batches; returns a History.

    validation: None, (X, y), or a fraction in (0, 1) split off the training data at
    random (seeded) before training. callbacks: deepkern.callbacks objects.
    scheduler: a learning-rate scheduler stepped after every epoch (shorthand for
    LRSchedulerCallback(scheduler)). transform: an augmentation (xb, rng) -> xb
    applied to training batches. resume_from: a checkpoint written by
    ModelCheckpoint; training continues after its epoch up to `epochs` (the total),
    with the model, optimizer, scheduler, callbacks and history restored; pass the
    same data, seed and callbacks as the interrupted run. verbose: 1 prints a line
    per epoch (and a tqdm bar when stderr is a terminal), 0 nothing. device: where
    to train (see the module docstring; default the model's parameters' device); the
    optimizer's state follows the parameters on its next step (see deepkern.optim)."""
    unknown = [m for m in metrics if m not in _METRICS]
    if unknown:
        raise ValueError(f"[fit] unknown metric(s) {unknown}; available: {_METRICS}")
    _check_loss(loss, "fit")
    epochs = int(epochs) if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) else -1
    if epochs < 0:
        raise ValueError("[fit] epochs must be a non-negative integer")
    batch_size = _positive_int(batch_size, "batch_size", "fit")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"[fit] callbacks[{i}] is a {type(cb).__name__}, not a deepkern.callbacks.Callback")
    if scheduler is not None:
        callbacks.append(LRSchedulerCallback(scheduler))
    if verbose:
        callbacks.append(ProgressBar())
    callbacks.sort(key=lambda cb: cb.order)  # stable: the list's order within one rank
    dtype = _model_dtype(model)
    X, y = _xy(train, dtype, "fit")
    if isinstance(validation, numbers.Real) and not isinstance(validation, bool):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"[fit] a validation fraction must be in (0, 1), got {validation}")
        (X, y), val, _ = train_val_test_split(X, y, val_size=float(validation), test_size=0, seed=seed)
    elif validation is not None:
        val = _xy(validation, dtype, "fit")
    else:
        val = None
    if len(X) == 0:
        raise ValueError("[fit] the training set is empty")
    device = _place(model, loss, device)
    loader = DataLoader((X, y), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, transform=transform,
                        device=device)
    want_accuracy = "accuracy" in metrics
    per_batch_sum = getattr(loss, "reduction", "mean") == "sum"
    history = History()
    state = FitState(model, loss, optimizer, history, callbacks, epochs, len(loader), 0)
    if resume_from is not None:
        state.restore(load_checkpoint(resume_from))
    with device_scope(device):  # CuPy allocations in the layers land on the model's GPU
        state.call("on_train_begin")
        try:
            for epoch in range(state.initial_epoch, epochs):
                model.train()
                loader.set_epoch(epoch)
                state.call("on_epoch_begin", epoch)
                lr_epoch = _lr(optimizer)
                total, correct, n = 0.0, 0, 0
                t0 = t_batch = time.perf_counter()
                for b, (xb, yb) in enumerate(loader):
                    lr = _lr(optimizer)
                    out = model(xb)
                    value = float(loss(out, yb))
                    model.zero_grad()
                    model.backward(loss.backward())
                    optimizer.step()
                    size = len(xb)
                    mean = value / size if per_batch_sum else value
                    total += mean * size
                    n += size
                    now = time.perf_counter()
                    logs = {"loss": mean, "lr": lr, "size": size, "time": now - t_batch}
                    t_batch = now
                    if want_accuracy and correct is not None and _is_classification(out, yb):
                        right = _correct(out, yb)
                        correct += right
                        logs["accuracy"] = right / size
                    else:
                        correct = None
                    logs["samples_per_s"] = size / logs["time"] if logs["time"] > 0 else float("inf")
                    history.append_batch(epoch=epoch, **{k: v for k, v in logs.items() if k != "size"})
                    state.call("on_batch_end", b, logs)
                seconds = time.perf_counter() - t0
                row = {"loss": total / n}
                if want_accuracy and correct is not None:
                    row["accuracy"] = correct / n
                if val is not None:
                    ev = evaluate(model, loss, val, max(batch_size, 256), device=device)
                    row["val_loss"] = ev["loss"]
                    if want_accuracy and "accuracy" in ev:
                        row["val_accuracy"] = ev["accuracy"]
                row["lr"] = lr_epoch
                row["time"] = seconds
                row["samples_per_s"] = n / seconds if seconds > 0 else float("inf")
                history.append(**row)
                state.epoch = epoch + 1
                state.call("on_epoch_end", epoch, dict(row))
                if verbose:
                    shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                                      if k not in ("time", "samples_per_s", "lr"))
                    print(f"epoch {epoch + 1}/{epochs}  {shown}  lr {row['lr']:.3g}  {seconds:.2f}s  "
                          f"{row['samples_per_s']:.0f} samples/s", flush=True)
                if state.stop_training:
                    break
        finally:
            state.call("on_train_end")
    return history


def load_weights(model, path):
    """Load the model weights (and buffers) of a checkpoint written during fit."""
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


__all__ = ["fit", "evaluate", "predict", "History", "FitState", "load_weights", "save_checkpoint",
           "load_checkpoint", "Callback", "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "CSVLogger",
           "ProgressBar"]
