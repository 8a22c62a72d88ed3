"""Demonstrations of the recurrent layers learning, as tests (each well under 30 s
on two cores): the adding problem, which an LSTM learns and a plain tanh RNN
built from the same parts (ops.linear, ops.tanh and their backwards) does not in
the same budget, and sklearn's digits read row by row by an LSTM classifier.
Run once, with the best instruction set (tests/test_rnn.py checks the kernels
under every one), and on one thread: at these sizes (H = 32 and 64) a second
thread saves nothing, and on a machine whose cores are busy with other work an
OpenMP barrier waiting for a descheduled thread made a step ten times slower."""
import math
import time

import numpy as np
import pytest

import deepkern
from deepkern import nn, ops, optim
from helpers import rng


@pytest.fixture(autouse=True)
def one_thread():
    old = deepkern.get_num_threads()
    deepkern.set_num_threads(1)
    yield
    deepkern.set_num_threads(old)


def adding_batch(gen, batch, t=50):
    """The adding problem (Hochreiter & Schmidhuber 1997): channel 0 holds random values
    in [0, 1), channel 1 marks two of them (one in each half); the target is their sum.
    Always predicting the mean (1.0) scores MSE 1/6."""
    x = np.zeros((batch, t, 2), np.float32)
    x[:, :, 0] = gen.uniform(0, 1, (batch, t))
    rows = np.arange(batch)
    first, second = gen.integers(0, t // 2, batch), gen.integers(t // 2, t, batch)
    x[rows, first, 1] = x[rows, second, 1] = 1
    return x, (x[rows, first, 0] + x[rows, second, 0])[:, None]


class TanhRNN:
    """h_t = tanh(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh) built from the same parts:
    ops.linear / ops.tanh forward, their backwards through time, torch's initialisation."""

    def __init__(self, input_size, hidden_size, gen):
        k = 1 / math.sqrt(hidden_size)
        shapes = ((hidden_size, input_size), (hidden_size,), (hidden_size, hidden_size), (hidden_size,))
        self.params = [nn.Parameter(gen.uniform(-k, k, s).astype(np.float32)) for s in shapes]

    def __call__(self, x):  # x (B, T, I) -> the last hidden state (B, H)
        w_ih, b_ih, w_hh, b_hh = (p.data for p in self.params)
        h = np.zeros((x.shape[0], w_hh.shape[0]), np.float32)
        self.hs, self.xs = [h], [np.ascontiguousarray(x[:, t]) for t in range(x.shape[1])]
        for xt in self.xs:
            h = ops.tanh(ops.linear(xt, w_ih, b_ih) + ops.linear(h, w_hh, b_hh))
            self.hs.append(h)
        return h

    def backward(self, dh):
        w_ih, _, w_hh, _ = (p.data for p in self.params)
        grads = [np.zeros_like(p.data) for p in self.params]
        for t in reversed(range(len(self.xs))):
            da = ops.tanh_backward(dh, self.hs[t + 1])
            _, dw, db = ops.linear_backward(da, self.xs[t], w_ih)
            grads[0] += dw
            grads[1] += db
            dh, dw, db = ops.linear_backward(da, self.hs[t], w_hh)
            grads[2] += dw
            grads[3] += db
        for p, g in zip(self.params, grads):
            p.grad = g


class LastStep:
    """An nn.LSTM whose output is its last hidden state: (B, T, I) -> (B, H)."""

    def __init__(self, lstm):
        self.lstm = lstm
        self.params = list(lstm.parameters())

    def __call__(self, x):
        out, _ = self.lstm(x)
        self.shape = out.shape
        return out[:, -1]

    def backward(self, dh):
        dout = np.zeros(self.shape, np.float32)
        dout[:, -1] = dh
        self.lstm.backward(dout)


def train_adding(model, steps, seed, hidden=32, batch=64, lr=1e-2, target=0.01):
    """Adam on fresh batches; every 100 steps the MSE on a fixed validation set. Returns
    (validation MSE history, steps taken, seconds), stopping once below target."""
    gen = rng(seed)
    head = nn.Linear(hidden, 1, rng=gen)
    opt = optim.Adam(model.params + list(head.parameters()), lr=lr)
    loss = nn.MSELoss()
    xv, yv = adding_batch(rng(1000 + seed), 500)
    history, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        x, y = adding_batch(gen, batch)
        loss(head(model(x)), y)
        opt.zero_grad()
        model.backward(head.backward(loss.backward()))
        opt.step()
        if step % 100 == 0:
            history.append(float(np.mean((head(model(xv)) - yv) ** 2)))
            if history[-1] < target:
                break
    return history, step, time.perf_counter() - start


def test_lstm_learns_the_adding_problem_where_a_tanh_rnn_does_not():
    """T = 50, two channels. Measured (seed 0, 2 threads): the LSTM's validation MSE
    falls below 0.01 after about 800 Adam steps; the tanh RNN, given the same 1500
    steps and everything else equal, stays at the 1/6 of predicting the mean: its
    gradient through 25+ steps of tanh' W_hh vanishes, the LSTM's cell path does not."""
    budget = 1500
    lstm = LastStep(nn.LSTM(2, 32, batch_first=True, rng=rng(0)))
    history, steps, seconds = train_adding(lstm, budget, seed=0)
    print(f"LSTM: validation MSE {history[-1]:.4f} after {steps} steps ({seconds:.1f} s); history {history}")
    assert history[-1] < 0.01, f"the LSTM did not learn the adding problem in {budget} steps: {history}"
    rnn = TanhRNN(2, 32, rng(0))
    history, steps, seconds = train_adding(rnn, budget, seed=0)
    print(f"tanh RNN: validation MSE {history[-1]:.4f} after {steps} steps ({seconds:.1f} s); history {history}")
    assert min(history) > 0.05, f"the tanh RNN was expected to stay near MSE 1/6: {history}"


def test_lstm_reads_digits_row_by_row():
    """sklearn's 8x8 digits as 8 steps of 8 features, an LSTM(8, 64) and a linear head
    on its last hidden state: >= 90% test accuracy (measured: about 97% after 30 epochs)."""
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not installed")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # (N, 8 rows, 8 columns)
    y = digits.target
    order = rng(0).permutation(len(x))
    split = int(0.8 * len(x))
    (xtr, ytr), (xte, yte) = (x[order[:split]], y[order[:split]]), (x[order[split:]], y[order[split:]])
    gen = rng(1)
    lstm = LastStep(nn.LSTM(8, 64, batch_first=True, rng=gen))
    head = nn.Linear(64, 10, rng=gen)
    opt = optim.Adam(lstm.params + list(head.parameters()), lr=1e-2)
    loss = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(30):
        perm = gen.permutation(split)
        for k in range(0, split, 64):
            idx = perm[k:k + 64]
            loss(head(lstm(xtr[idx])), ytr[idx])
            opt.zero_grad()
            lstm.backward(head.backward(loss.backward()))
            opt.step()
    accuracy = float((head(lstm(xte)).argmax(axis=1) == yte).mean())
    seconds = time.perf_counter() - start
    print(f"digits, LSTM row by row: test accuracy {accuracy:.3f} after 30 epochs ({seconds:.1f} s)")
    assert accuracy >= 0.9
