"""Callbacks for deepkern.train.fit: hooks called around epochs and batches.

Each hook receives the running fit's FitState (`state`: model, optimizer, loss,
history, epoch, epochs, stop_training, checkpoint()) and, at the end of a batch
or an epoch, the values logged for it (`logs`: loss, accuracy, val_loss,
val_accuracy, lr, time, samples_per_s). Callbacks run in the order of their
`order` attribute, then of the list: learning-rate schedules first (so the
epoch's logs show the lr the epoch used and the next epoch gets the new one),
then user callbacks and early stopping, then loggers, and checkpoints last, so a
checkpoint holds every other callback's updated state and a resumed run goes on
exactly where the saved one was. Callbacks with state (counters, the best value
so far) return it from state_dict(); fit saves it in checkpoints and restores it
on resume.
"""
import math
import os
import sys
import time


class Callback:
    order = 0

    def on_train_begin(self, state):
        pass

    def on_epoch_begin(self, state, epoch):
        pass

    def on_batch_end(self, state, batch, logs):
        pass

    def on_epoch_end(self, state, epoch, logs):
        pass

    def on_train_end(self, state):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state_dict):
        pass


def _mode(monitor, mode, op):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"[{op}] mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _monitored(logs, monitor, op):
    if monitor not in logs:
        raise ValueError(f"[{op}] monitor {monitor!r} is not among the logged values {sorted(logs)} "
                         "(val_* needs validation data)")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop once `monitor` has gone `patience` epochs without improving by more than
    min_delta (patience 0: at the first such epoch). restore_best_weights: at the end
    of training the model gets back the weights (and buffers) of its best epoch."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best_weights=False):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"[EarlyStopping] patience must be a non-negative integer, got {patience!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(float(min_delta))
        self.mode = _mode(monitor, mode, "EarlyStopping")
        self.restore_best_weights = bool(restore_best_weights)
        self.best, self.best_epoch, self.wait, self.stopped_epoch = None, None, 0, None
        self.best_weights = None

    def _improved(self, value):
        if self.best is None:
            return not math.isnan(value)
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, state, epoch, logs):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = state.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:  # Keras's rule: patience 2 stops after 2 epochs without gain
                self.stopped_epoch = epoch
                state.stop_training = True

    def on_train_end(self, state):
        if self.restore_best_weights and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, d):
        self.best, self.best_epoch, self.wait = d["best"], d["best_epoch"], d["wait"]
        self.stopped_epoch, self.best_weights = d["stopped_epoch"], d["best_weights"]


class ModelCheckpoint(Callback):
    """Save a resumable checkpoint (model, optimizer, scheduler and callback state,
    the epoch, the history) to `path` after every `every`-th epoch, or, with
    save_best_only, whenever `monitor` improves. `path` may hold format fields
    filled from the epoch's logs: "ckpt-{epoch:03d}-{val_loss:.3f}.npz". Each file
    is written to a temporary name and renamed (see deepkern.checkpoint)."""

    order = 100

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", every=1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"[ModelCheckpoint] every must be a positive integer, got {every!r}")
        self.path, self.monitor, self.save_best_only, self.every = os.fspath(path), monitor, save_best_only, every
        self.mode = _mode(monitor, mode, "ModelCheckpoint")
        self.best, self.last_path = None, None

    def on_epoch_end(self, state, epoch, logs):
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if not better:
                return
            self.best = value
        elif (epoch + 1) % self.every:
            return
        path = self.path.format(epoch=epoch + 1, **logs)
        self.last_path = path
        state.save_checkpoint(path)

    def state_dict(self):
        return {"best": self.best, "last_path": self.last_path}

    def load_state_dict(self, d):
        self.best, self.last_path = d["best"], d["last_path"]


class LRSchedulerCallback(Callback):
    """Step a learning-rate scheduler after every epoch (interval="epoch") or every
    batch ("batch"). ReduceLROnPlateau steps on the logged `monitor`."""

    order = -100

    def __init__(self, scheduler, interval="epoch", monitor="val_loss"):
        if interval not in ("epoch", "batch"):
            raise ValueError(f"[LRSchedulerCallback] interval must be 'epoch' or 'batch', got {interval!r}")
        if not hasattr(scheduler, "step") or not hasattr(scheduler, "state_dict"):
            raise TypeError(f"[LRSchedulerCallback] expected a scheduler, got {type(scheduler).__name__}")
        self.scheduler, self.interval, self.monitor = scheduler, interval, monitor
        self._on_metric = type(scheduler).__name__ == "ReduceLROnPlateau"

    def _step(self, logs):
        if self._on_metric:
            self.scheduler.step(_monitored(logs, self.monitor, "LRSchedulerCallback"))
        else:
            self.scheduler.step()

    def on_batch_end(self, state, batch, logs):
        if self.interval == "batch":
            self._step(logs)

    def on_epoch_end(self, state, epoch, logs):
        if self.interval == "epoch":
            self._step(logs)

    def state_dict(self):
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, d):
        self.scheduler.load_state_dict(d["scheduler"])


class CSVLogger(Callback):
    """One CSV row per epoch: epoch, then every logged value. A resumed run (or
    append=True) appends to the existing file."""

    order = 50

    def __init__(self, path, separator=",", append=False):
        self.path, self.separator, self.append = os.fspath(path), separator, bool(append)
        self._file, self._keys = None, None

    def on_train_begin(self, state):
        append = (self.append or state.initial_epoch > 0) and os.path.isfile(self.path)
        if append:
            with open(self.path) as f:
                header = f.readline().rstrip("\n")
            self._keys = header.split(self.separator)[1:] if header else None
        self._file = open(self.path, "a" if append else "w", newline="")

    def on_epoch_end(self, state, epoch, logs):
        if self._keys is None:
            self._keys = list(logs)
            self._file.write(self.separator.join(["epoch"] + self._keys) + "\n")
        row = [str(epoch + 1)] + [repr(float(logs[k])) if k in logs else "" for k in self._keys]
        self._file.write(self.separator.join(row) + "\n")
        self._file.flush()

    def on_train_end(self, state):
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss, accuracy and samples/s. Silent
    when the output stream is not a terminal or tqdm is not installed; fit adds
    one when verbose >= 1."""

    order = 60

    def __init__(self, file=None):
        self.file = file if file is not None else sys.stderr
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        isatty = getattr(self.file, "isatty", None)
        self._tqdm = tqdm if tqdm is not None and isatty is not None and isatty() else None
        self._bar = None

    @property
    def active(self):
        return self._tqdm is not None

    def on_epoch_begin(self, state, epoch):
        if self._tqdm is None:
            return
        self._bar = self._tqdm(total=state.batches_per_epoch, desc=f"epoch {epoch + 1}/{state.epochs}",
                               file=self.file, leave=False, unit="batch", dynamic_ncols=True)
        self._sum, self._n, self._correct, self._t0 = 0.0, 0, 0, time.perf_counter()

    def on_batch_end(self, state, batch, logs):
        if self._bar is None:
            return
        size = logs["size"]
        self._sum += logs["loss"] * size
        self._n += size
        post = {"loss": f"{self._sum / self._n:.4f}"}
        if "accuracy" in logs:
            self._correct += logs["accuracy"] * size
            post["acc"] = f"{self._correct / self._n:.4f}"
        seconds = time.perf_counter() - self._t0
        if seconds > 0:
            post["samples/s"] = f"{self._n / seconds:.0f}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(1)

    def on_epoch_end(self, state, epoch, logs):
        if self._bar is not None:
            self._bar.refresh()  # the epoch's final postfix, whatever tqdm's rate limit skipped
            self._bar.close()
            self._bar = None

    def on_train_end(self, state):
        self.on_epoch_end(state, None, None)


__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "CSVLogger", "ProgressBar"]
