"""Recurrent layers: LSTM and GRU over whole sequences (stacked layers, optionally
bidirectional), LSTMCell and GRUCell (one step), and Embedding, with torch.nn's
arguments, parameter names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
..., "_reverse" for the backward direction), shapes, gate order (LSTM i, f, g, o;
GRU r, z, n) and initialisation (every weight and bias U(-1/sqrt(H), 1/sqrt(H))),
so torch's state_dict() converted to numpy loads and gives the same outputs.

LSTM / GRU run each layer and direction over the whole sequence in one native
call (ops.lstm / ops.gru: the input projection of all steps is one GEMM, then the
recurrence), and backward through time likewise (ops.lstm_backward /
ops.gru_backward); Python loops over layers only. Inputs are (T, B, I), (B, T, I)
with batch_first, or unbatched (T, I), as torch; states are (num_layers *
num_directions, B, H) (unbatched: without B).
  m(x, state=None) -> (output, h_n) for GRU, (output, (h_n, c_n)) for LSTM
  m.backward(d_output, d_state=None) -> dx, or (dx, d_initial_state) when the
      forward was given an initial state; d_state is the gradient of the final
      state (LSTM: (dh_n, dc_n), either may be None).
Where the output is the last layer's hidden states themselves (time-major, one
direction) it is returned read-only: backward reads them, so an in-place change
would silently change the gradients (torch raises in that case too).
Dropout between layers (training only) draws from a numpy Generator the module
owns, seeded from rng= or deepkern.manual_seed's generator at construction.
On a GPU (CuPy arrays) every layer works alike, the dropout masks drawn on the
host (so a seed drops the same elements on either device) and copied over; the
read-only guard on the output is numpy's alone (CuPy arrays have no such flag).

LSTMCell / GRUCell: one step, torch's names (weight_ih, weight_hh, bias_ih, bias_hh).
For backpropagation through time with a cell, a module in training mode keeps
the cache of every forward and each backward takes the latest (last in, first
out): T forwards, then T backwards from the last step to the first. In eval mode
only the last forward's cache is kept.
"""
import math

import numpy as np

from .. import ops
from .._array import array_module
from . import init
from .module import Module, Parameter, _float_dtype


def _count(value, name, op, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"[{op}] {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _array(x, name, op, dtype):
    if not (isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__")):
        raise TypeError(f"[{op}] {name} must be a numpy or CuPy array, got {type(x).__name__}")
    array_module(x)  # a CUDA array of another library: TypeError naming cupy.asarray
    if x.dtype != dtype:
        raise TypeError(f"[{op}] {name} has dtype {x.dtype}, the module's parameters are {dtype} "
                        "(convert one with .astype or Module.to)")
    return x


def _dropout_mask(rng, shape, p, dtype, xp):
    """The multiplier of inter-layer dropout: 0 for a dropped element, 1 / (1 - p) for a
    kept one (all zero when p == 1, as torch), in the array module xp. Forward and
    backward both multiply by it. The one place that draws random numbers, so a native
    dropout op can take over."""
    keep = rng.random(shape) >= p
    return xp.asarray(keep.astype(dtype) * dtype.type(0.0 if p >= 1.0 else 1.0 / (1.0 - p)))


class _RNNBase(Module):
    _gates = 0  # 4 (LSTM) or 3 (GRU)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=np.float32, rng=None):
        super().__init__()
        name = type(self).__name__
        self.input_size = _count(input_size, "input_size", name, 0)
        self.hidden_size = _count(hidden_size, "hidden_size", name, 1)
        self.num_layers = _count(num_layers, "num_layers", name, 1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)) \
                or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"[{name}] dropout must be a probability in [0, 1], got {dropout!r}")
        if proj_size != 0:
            raise ValueError(f"[{name}] proj_size (LSTM projections) is not supported, got {proj_size!r}")
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = float(dropout)
        dt = _float_dtype(dtype, name)
        G, H, D = self._gates, self.hidden_size, self.num_directions
        for layer in range(self.num_layers):
            for d in range(D):
                sfx = self._suffix(layer, d)
                fan_in = self.input_size if layer == 0 else H * D
                setattr(self, "weight_ih" + sfx, Parameter(np.empty((G * H, fan_in), dtype=dt)))
                setattr(self, "weight_hh" + sfx, Parameter(np.empty((G * H, H), dtype=dt)))
                if self.bias:
                    setattr(self, "bias_ih" + sfx, Parameter(np.empty(G * H, dtype=dt)))
                    setattr(self, "bias_hh" + sfx, Parameter(np.empty(G * H, dtype=dt)))
        self._cache = None
        self.reset_parameters(rng)
        self._dropout_rng = np.random.default_rng(init._rng(rng).integers(2**63))

    num_directions = property(lambda self: 2 if self.bidirectional else 1)

    @staticmethod
    def _suffix(layer, direction):
        return f"_l{layer}" + ("_reverse" if direction else "")

    def reset_parameters(self, rng=None):
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k, rng=rng)

    def _weights(self, layer, direction):
        """(w_ih, w_hh, b_ih, b_hh) of one layer and direction, biases None without bias."""
        sfx = self._suffix(layer, direction)
        get = (lambda n: getattr(self, n + sfx))
        if self.bias:
            return tuple(get(n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        return get("weight_ih"), get("weight_hh"), None, None

    def _states(self, state, batch, batched, what):
        """The initial state(s) (what="state": h0, c0) or the final states' gradients
        (what="d_state": dh_n, dc_n) as (L * D, B, H) arrays: () for None."""
        name = type(self).__name__
        if state is None:
            return ()
        lstm = self._gates == 4
        if lstm and not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError(f"[{name}] {what} must be a pair (h, c), got {type(state).__name__}")
        kinds = (("h0", "c0") if what == "state" else ("dh_n", "dc_n"))[:2 if lstm else 1]
        dt = self.weight_ih_l0.dtype
        want = (self.num_layers * self.num_directions,) + ((batch,) if batched else ()) + (self.hidden_size,)
        out = []
        for kind, s in zip(kinds, state if lstm else (state,)):
            s = _array(s, kind, name, dt)
            if s.shape != want:
                raise ValueError(f"[{name}] {kind} must have shape {want} (num_layers * num_directions, "
                                 f"{'batch, ' if batched else ''}hidden_size), got {s.shape}")
            # Contiguous, since each layer's slice s[i] goes to a kernel (the CUDA ones take no strided views).
            out.append(array_module(s).ascontiguousarray(s if batched else s[:, None, :]))
        return tuple(out)

    def forward(self, x, state=None):
        name = type(self).__name__
        x = _array(x, "input", name, self.weight_ih_l0.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"[{name}] expected a 3-D (batched) or 2-D (unbatched) input, got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"[{name}] input has {x.shape[-1]} features (last dimension), expected "
                             f"input_size={self.input_size}")
        batched = x.ndim == 3
        xp = array_module(x)
        seq = (x.swapaxes(0, 1) if self.batch_first else x) if batched else x[:, None, :]
        seq = xp.ascontiguousarray(seq)  # (T, B, I), read by every direction's forward and backward
        states = self._states(state, seq.shape[1], batched, "state")
        lstm, D, L = self._gates == 4, self.num_directions, self.num_layers
        caches, masks, finals = [], [], []
        for layer in range(L):
            outs = []
            for d in range(D):
                i = layer * D + d
                xin = seq if d == 0 else xp.ascontiguousarray(seq[::-1])
                init_state = tuple(s[i] for s in states) or (None,) * (2 if lstm else 1)
                w = tuple(None if p is None else p.data for p in self._weights(layer, d))
                if lstm:
                    y, h_n, c_n, cache = ops.lstm(xin, *init_state, *w)
                    finals.append((h_n, c_n))
                else:
                    y, h_n, cache = ops.gru(xin, *init_state, *w)
                    finals.append((h_n,))
                caches.append(cache)
                outs.append(y if d == 0 else y[::-1])
            seq = outs[0] if D == 1 else xp.concatenate(outs, axis=2)
            mask = None
            if self.training and self.dropout > 0 and layer < L - 1:
                mask = _dropout_mask(self._dropout_rng, seq.shape, self.dropout, seq.dtype, xp)
                seq = seq * mask
            masks.append(mask)
        out = (xp.ascontiguousarray(seq.swapaxes(0, 1)) if self.batch_first else seq) if batched else seq[:, 0, :]
        if xp is np and np.may_share_memory(out, caches[-1].hs):  # the last layer's states, which backward reads
            out = out.view()
            out.flags.writeable = False
        final = tuple(xp.stack([f[k] for f in finals]) for k in range(len(finals[0])))
        if not batched:
            final = tuple(f[:, 0, :] for f in final)
        self._cache = (caches, masks, batched, out.shape, bool(states))
        return out, (final if lstm else final[0])

    def backward(self, d_output, d_state=None):
        name = type(self).__name__
        caches, masks, batched, out_shape, had_state = self._saved()
        dt = self.weight_ih_l0.dtype
        dy = _array(d_output, "d_output", name, dt)
        if dy.shape != out_shape:
            raise ValueError(f"[{name}] d_output must have the output's shape {out_shape}, got {dy.shape}")
        xp = array_module(dy)
        dy = (dy.swapaxes(0, 1) if self.batch_first else dy) if batched else dy[:, None, :]
        lstm, D, H = self._gates == 4, self.num_directions, self.hidden_size
        if lstm and d_state is not None and isinstance(d_state, (tuple, list)) and len(d_state) == 2 \
                and (d_state[0] is None or d_state[1] is None):  # one of (dh_n, dc_n) may be None
            zero = xp.zeros((self.num_layers * D,) + ((dy.shape[1],) if batched else ()) + (H,), dtype=dt)
            d_state = tuple(zero if s is None else s for s in d_state)
        d_final = self._states(d_state, dy.shape[1], batched, "d_state")
        d_init = [None] * (self.num_layers * D)
        for layer in reversed(range(self.num_layers)):
            if masks[layer] is not None:
                dy = dy * masks[layer]
            dx = None
            for d in range(D):
                i = layer * D + d
                dyd = dy if D == 1 else dy[..., d * H:(d + 1) * H]
                # Contiguous: the CUDA kernels take no strided views (numpy's binding would copy anyway).
                dyd = xp.ascontiguousarray(dyd if d == 0 else dyd[::-1])
                finals = tuple(s[i] for s in d_final) or (None,) * (2 if lstm else 1)
                if lstm:
                    dxd, dh0, dc0, *grads = ops.lstm_backward(dyd, *finals, caches[i], had_state)
                    d_init[i] = (dh0, dc0)
                else:
                    dxd, dh0, *grads = ops.gru_backward(dyd, *finals, caches[i], had_state)
                    d_init[i] = (dh0,)
                for p, g in zip(self._weights(layer, d), grads):
                    if p is not None:
                        p.accumulate_grad(g)
                dxd = dxd if d == 0 else dxd[::-1]
                dx = dxd if dx is None else dx + dxd
            dy = dx
        dx = (xp.ascontiguousarray(dy.swapaxes(0, 1)) if self.batch_first else dy) if batched else dy[:, 0, :]
        if not had_state:
            return dx
        d0 = tuple(xp.stack([s[k] for s in d_init]) for k in range(len(d_init[0])))
        if not batched:
            d0 = tuple(s[:, 0, :] for s in d0)
        return dx, (d0 if lstm else d0[0])

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class LSTM(_RNNBase):
    """torch.nn.LSTM (no proj_size): m(x, (h0, c0)=None) -> (output, (h_n, c_n))."""
    _gates = 4


class GRU(_RNNBase):
    """torch.nn.GRU: m(x, h0=None) -> (output, h_n)."""
    _gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float32, rng=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         dtype, rng)


class _CellBase(Module):
    _gates = 0

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        name = type(self).__name__
        self.input_size = _count(input_size, "input_size", name, 0)
        self.hidden_size = _count(hidden_size, "hidden_size", name, 1)
        dt = _float_dtype(dtype, name)
        gh = self._gates * self.hidden_size
        self.weight_ih = Parameter(np.empty((gh, self.input_size), dtype=dt))
        self.weight_hh = Parameter(np.empty((gh, self.hidden_size), dtype=dt))
        self.bias_ih = Parameter(np.empty(gh, dtype=dt)) if bias else None
        self.bias_hh = Parameter(np.empty(gh, dtype=dt)) if bias else None
        self._cache = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k, rng=rng)

    def _params(self):
        return tuple(None if p is None else p.data for p in (self.weight_ih, self.weight_hh, self.bias_ih,
                                                              self.bias_hh))

    def _inputs(self, x, states):
        """x as (B, I) and each state as (B, H) or None; whether x was batched."""
        name = type(self).__name__
        dt = self.weight_ih.dtype
        x = _array(x, "input", name, dt)
        if x.ndim not in (1, 2):
            raise ValueError(f"[{name}] expected a 2-D (batched) or 1-D (unbatched) input, got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"[{name}] input has {x.shape[-1]} features, expected input_size={self.input_size}")
        batched = x.ndim == 2
        want = x.shape[:-1] + (self.hidden_size,)
        out = []
        for kind, s in states:
            if s is not None:
                s = _array(s, kind, name, dt)
                if s.shape != want:
                    raise ValueError(f"[{name}] {kind} must have shape {want}, got {s.shape}")
                s = s if batched else s[None]
            out.append(s)
        return (x if batched else x[None]), out, batched

    def _push(self, entry):
        """Keep a forward's cache: all of them in training (for BPTT), the last one in eval."""
        stack = self.__dict__.get("_cache")
        if self.training and isinstance(stack, list):
            stack.append(entry)
        else:
            self._cache = [entry]

    def _pop(self):
        stack = self.__dict__.get("_cache")
        if not stack:
            raise RuntimeError(f"[{type(self).__name__}] backward() called without a forward() to match")
        return stack.pop()

    def _grads(self, grads):
        for p, g in zip((self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh), grads):
            if p is not None:
                p.accumulate_grad(g)

    def _grad_in(self, g, kind, batched, b):
        name = type(self).__name__
        if g is None:
            return None
        g = _array(g, kind, name, self.weight_ih.dtype)
        want = ((b,) if batched else ()) + (self.hidden_size,)
        if g.shape != want:
            raise ValueError(f"[{name}] {kind} must have shape {want}, got {g.shape}")
        return g if batched else g[None]

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_ih is not None else ", bias=False")


class LSTMCell(_CellBase):
    """torch.nn.LSTMCell: cell(x, (h, c)=None) -> (h_new, c_new);
    cell.backward(dh_new, dc_new=None) -> dx, or (dx, (dh, dc)) when a state was given."""
    _gates = 4

    def forward(self, x, hx=None):
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"[LSTMCell] hx must be a pair (h, c) or None, got {type(hx).__name__}")
        h, c = hx if hx is not None else (None, None)
        x, (h, c), batched = self._inputs(x, (("h", h), ("c", c)))
        h_new, c_new, cache = ops.lstm_cell(x, h, c, *self._params())
        self._push((cache, batched, hx is not None))
        return (h_new, c_new) if batched else (h_new[0], c_new[0])

    def backward(self, dh_new, dc_new=None):
        if isinstance(dh_new, (tuple, list)) and len(dh_new) == 2 and dc_new is None:
            dh_new, dc_new = dh_new
        cache, batched, had_state = self._pop()
        b = cache.x.shape[0]
        dh_new, dc_new = self._grad_in(dh_new, "dh_new", batched, b), self._grad_in(dc_new, "dc_new", batched, b)
        dx, dh, dc, *grads = ops.lstm_cell_backward(dh_new, dc_new, cache, had_state)
        self._grads(grads)
        if not batched:
            dx = dx[0]
        if not had_state:  # no state given: dh, dc were not computed (None)
            return dx
        return dx, ((dh, dc) if batched else (dh[0], dc[0]))


class GRUCell(_CellBase):
    """torch.nn.GRUCell: cell(x, h=None) -> h_new; cell.backward(dh_new) -> dx, or
    (dx, dh) when a state was given."""
    _gates = 3

    def forward(self, x, hx=None):
        x, (h,), batched = self._inputs(x, (("h", hx),))
        h_new, cache = ops.gru_cell(x, h, *self._params())
        self._push((cache, batched, hx is not None))
        return h_new if batched else h_new[0]

    def backward(self, dh_new):
        cache, batched, had_state = self._pop()
        dh_new = self._grad_in(dh_new, "dh_new", batched, cache.x.shape[0])
        dx, dh, *grads = ops.gru_cell_backward(dh_new, cache, had_state)
        self._grads(grads)
        if not batched:
            dx = dx[0]
        if not had_state:  # no state given: dh was not computed (None)
            return dx
        return dx, (dh if batched else dh[0])


class Embedding(Module):
    """torch.nn.Embedding: a lookup table weight (num_embeddings, embedding_dim), N(0, 1)
    initialised, the padding_idx row zero and never updated. forward(indices) ->
    weight[indices] (indices: any integer array, each in [0, num_embeddings), copied to
    the weight's device when they are elsewhere); backward(dy) adds dy's rows into
    weight.grad at their indices and returns None (indices have no gradient)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32, rng=None):
        super().__init__()
        self.num_embeddings = _count(num_embeddings, "num_embeddings", "Embedding", 1)
        self.embedding_dim = _count(embedding_dim, "embedding_dim", "Embedding", 0)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
                    or not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"[Embedding] padding_idx must be an integer in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        dt = _float_dtype(dtype, "Embedding")
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype=dt))
        self._cache = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        init.normal_(self.weight, 0.0, 1.0, rng=rng)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, indices):
        xp = array_module(self.weight.data)
        indices = xp.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"[Embedding] indices must be an integer array, got {indices.dtype}")
        if indices.size:
            lo, hi = int(indices.min()), int(indices.max())
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise ValueError(f"[Embedding] index {bad} is out of range for {self.num_embeddings} embeddings "
                                 f"(indices must be in [0, {self.num_embeddings}))")
        self._cache = indices
        return xp.take(self.weight.data, indices, axis=0)

    def backward(self, dy):
        indices = self._saved()
        want = indices.shape + (self.embedding_dim,)
        dy = _array(dy, "dy", "Embedding", self.weight.dtype)
        if dy.shape != want:
            raise ValueError(f"[Embedding] dy must have shape {want} (the output's), got {dy.shape}")
        xp = array_module(self.weight.data)
        g = xp.zeros(self.weight.shape, dtype=self.weight.dtype)
        xp.add.at(g, indices.reshape(-1), dy.reshape(-1, self.embedding_dim))  # repeated indices add up
        if self.padding_idx is not None:
            g[self.padding_idx] = 0
        self.weight.accumulate_grad(g)
        return None

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
