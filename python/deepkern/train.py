"""The training loop: fit, evaluate, predict, and the History fit returns.

fit runs, per mini-batch: forward, loss, zero_grad, backward from the loss
gradient, optimizer step; per epoch it records the sample-weighted mean loss,
accuracy (argmax of 2-D outputs against integer targets), the validation loss and
accuracy, wall time and throughput. Data is converted once, at the boundary, to
the dtype of the model's parameters (and integer targets to int64), so no batch
is cast inside the loop. Shuffling and the validation split are seeded.
"""
import numbers
import time

import numpy as np

from .data import DataLoader, train_val_test_split

_METRICS = ("accuracy",)


class History:
    """Per-epoch metrics: history["loss"], ["accuracy"], ["val_loss"], ["val_accuracy"],
    ["time"] (seconds), ["samples_per_s"], each a list with one value per epoch."""

    def __init__(self):
        self.history = {}

    def append(self, **values):
        for k, v in values.items():
            self.history.setdefault(k, []).append(v)

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

    def plot(self, keys=("loss", "val_loss"), ax=None):
        """Plot the curves named by `keys` (those present) against the epoch; needs matplotlib."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("[History.plot] needs matplotlib: pip install deepkern[examples]") from e
        ax = ax if ax is not None else plt.gca()
        for k in keys:
            if k in self.history:
                ax.plot(np.arange(1, len(self.history[k]) + 1), self.history[k], label=k)
        ax.set_xlabel("epoch")
        ax.legend()
        return ax


def _model_dtype(model):
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def _xy(data, dtype, op):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"[{op}] data must be a pair (X, y), got {type(data).__name__}")
    X, y = np.asarray(data[0]), np.asarray(data[1])
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise ValueError(f"[{op}] X and y must share their first dimension, got shapes {X.shape} and {y.shape}")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"[{op}] X must be numeric, got {X.dtype}")
    X = np.ascontiguousarray(X, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=np.int64 if y.dtype.kind in "iu" else dtype)
    return X, y


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


def _run_epoch(model, loss, batches, optimizer=None):
    """Sum of per-sample losses, correct predictions (or None), samples seen."""
    total, correct, n = 0.0, 0, 0
    per_batch_sum = getattr(loss, "reduction", "mean") == "sum"
    for xb, yb in batches:
        out = model(xb)
        value = float(loss(out, yb))
        if optimizer is not None:
            model.zero_grad()
            model.backward(loss.backward())
            optimizer.step()
        total += value if per_batch_sum else value * len(xb)
        if correct is not None and _is_classification(out, yb):
            correct += int(np.count_nonzero(out.argmax(axis=1) == yb))
        else:
            correct = None
        n += len(xb)
    return total, correct, n


def evaluate(model, loss, data, batch_size=256):
    """Mean loss (and accuracy for classification) over data = (X, y), in eval mode.
    Returns {"loss": ..., "accuracy": ...}; NaN for an empty data set."""
    _check_loss(loss, "evaluate")
    X, y = _xy(data, _model_dtype(model), "evaluate")
    batch_size = _positive_int(batch_size, "batch_size", "evaluate")
    was_training = model.training
    model.eval()
    try:
        total, correct, n = _run_epoch(model, loss, DataLoader((X, y), batch_size))
    finally:
        model.train(was_training)
    if n == 0:
        return {"loss": float("nan"), "accuracy": float("nan")}
    result = {"loss": total / n}
    if correct is not None:
        result["accuracy"] = correct / n
    return result


def predict(model, X, batch_size=256):
    """model(X) in eval mode, batch by batch, concatenated."""
    X = np.ascontiguousarray(X, dtype=_model_dtype(model))
    batch_size = _positive_int(batch_size, "batch_size", "predict")
    was_training = model.training
    model.eval()
    try:
        if len(X) == 0:
            return model(X)  # an empty batch gives the empty result of the right shape
        return np.concatenate([model(xb) for xb in DataLoader(X, batch_size)])
    finally:
        model.train(was_training)


def fit(model, loss, optimizer, train, epochs, batch_size, validation=None, shuffle=True, seed=0,
        verbose=1, metrics=("accuracy",)):
    """Train `model` on train = (X, y) for `epochs` epochs of mini-batches.

    validation: (X, y), or a fraction in (0, 1) split off the training data at random
    (seeded) before training. Returns a History."""
    unknown = [m for m in metrics if m not in _METRICS]
    if unknown:
        raise ValueError(f"[fit] unknown metric(s) {unknown}; available: {_METRICS}")
    _check_loss(loss, "fit")
    epochs = int(epochs) if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) else -1
    if epochs < 0:
        raise ValueError("[fit] epochs must be a non-negative integer")
    batch_size = _positive_int(batch_size, "batch_size", "fit")
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
    loader = DataLoader((X, y), batch_size, shuffle=shuffle, seed=seed)
    want_accuracy = "accuracy" in metrics
    history = History()
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        total, correct, n = _run_epoch(model, loss, loader, optimizer)
        seconds = time.perf_counter() - t0
        row = {"loss": total / n}
        if want_accuracy and correct is not None:
            row["accuracy"] = correct / n
        if val is not None:
            ev = evaluate(model, loss, val, max(batch_size, 256))
            row["val_loss"] = ev["loss"]
            if want_accuracy and "accuracy" in ev:
                row["val_accuracy"] = ev["accuracy"]
        row["time"] = seconds
        row["samples_per_s"] = n / seconds if seconds > 0 else float("inf")
        history.append(**row)
        if verbose:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("time", "samples_per_s"))
            print(f"epoch {epoch + 1}/{epochs}  {shown}  {seconds:.2f}s  {row['samples_per_s']:.0f} samples/s",
                  flush=True)
    return history
