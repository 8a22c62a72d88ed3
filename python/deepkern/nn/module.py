"""Parameter, Module and Sequential: the containers every layer builds on.

A Module computes `forward` and, from the output gradient, an explicit `backward`
that returns the input gradient and accumulates each Parameter's gradient into
`.grad` (None until the first backward, as torch). Modules cache what backward
needs during forward; there is no autograd tape, so a model is a tree of modules
whose backward calls run in the reverse order of their forwards.

Names follow torch: attributes holding a Parameter or a Module are registered, and
named_parameters() / state_dict() yield torch's dotted names ("0.weight",
"encoder.fc.bias"), so torch's `state_dict()` converted to numpy loads unchanged.
state_dict() returns copies: a snapshot taken during training stays a snapshot.
save()/load() store flat state dicts as .npz, read back with allow_pickle=False.

Devices: parameters, gradients and buffers are numpy arrays on the CPU or CuPy
arrays on a GPU, and every layer computes with the array module of its input.
Module.to("cuda") / .to("cpu") moves them all (see Module.to). state_dict()
always returns numpy arrays, so checkpoints do not depend on the device they were
written from, and load_state_dict() copies each value onto the device of the
array it replaces.
"""
from collections import OrderedDict, namedtuple

import os
import tempfile

import numpy as np

from .._array import array_module, canonical, device_of, is_device, is_gpu, to_device, to_host

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# How many times some Parameter's data has changed device. Optimizers compare it with
# the count at their last step and only then look for state left on another device,
# so a step pays nothing for moves that did not happen.
_device_moves = 0


def device_moves():
    return _device_moves


def _float_dtype(dtype, what):
    dt = np.dtype(dtype)
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"[{what}] dtype must be float32 or float64, got {dt}")
    return dt


class Parameter:
    """A trainable array: `.data` (C-contiguous float32/float64, updated in place by
    optimizers) and `.grad` (None, or an array of the same shape and dtype)."""

    def __init__(self, data):
        self.data = data
        self.grad = None

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        if not hasattr(value, "dtype") or not hasattr(value, "shape"):
            raise TypeError(f"[Parameter] data must be an array, got {type(value).__name__}")
        _float_dtype(value.dtype, "Parameter")
        old = self.__dict__.get("_data")
        if old is not None and (type(old) is not type(value) or
                                (not isinstance(value, np.ndarray) and device_of(old) != device_of(value))):
            global _device_moves
            _device_moves += 1
        # Optimizers write .data in place, which needs one contiguous block.
        self._data = value if value.flags.c_contiguous else array_module(value).ascontiguousarray(value)

    @property
    def device(self):
        """"cpu" or "cuda:N": where .data lives."""
        return device_of(self._data)

    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)

    def accumulate_grad(self, g):
        """grad += g (grad = g while grad is None, as torch's accumulation)."""
        if self.grad is None:
            self.grad = g
        else:
            self.grad += g

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class: subclasses call super().__init__(), assign Parameters / Modules as
    attributes, and implement forward(...) and backward(dy) -> dx."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration (torch's rules) -----------------------------------------

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if isinstance(value, (Parameter, Module)):
            if params is None:
                raise AttributeError(f"cannot assign '{name}' before Module.__init__() is called")
            for d in (self.__dict__, self._parameters, self._buffers, self._modules):
                d.pop(name, None)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(deepkern.nn.Parameter or None expected)")
            params[name] = None
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' "
                                "(deepkern.nn.Module or None expected)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            if value is not None and not hasattr(value, "shape"):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' (array or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter '{name}'")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name, array):
        """A non-trainable array saved in state_dict (e.g. running statistics)."""
        if array is not None and not hasattr(array, "shape"):
            raise TypeError(f"cannot register {type(array).__name__} as buffer '{name}'")
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module")
        self.__dict__.pop(name, None)
        self._modules[name] = module

    # -- traversal -------------------------------------------------------------

    def named_modules(self, prefix=""):
        seen = set()

        def walk(m, pre):
            if id(m) in seen:
                return
            seen.add(id(m))
            yield pre, m
            for n, child in m._modules.items():
                if child is not None:
                    yield from walk(child, f"{pre}.{n}" if pre else n)

        yield from walk(self, prefix)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for n, m in self._modules.items():
            if m is not None:
                yield n, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, recurse):
        seen = set()
        mods = self.named_modules() if recurse else [("", self)]
        for pre, m in mods:
            for n, v in getattr(m, store).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield (f"{pre}.{n}" if pre else n), v

    def named_parameters(self, recurse=True):
        yield from self._named_members("_parameters", recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse):
            yield p

    def named_buffers(self, recurse=True):
        yield from self._named_members("_buffers", recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse):
            yield b

    def apply(self, fn):
        """fn(m) for every submodule (children first) and self, as torch."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes, gradients, dtype -----------------------------------------------

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def to(self, *args, device=None, dtype=None):
        """Move parameters, gradients and buffers to a device ("cpu", "cuda", "cuda:N")
        and/or convert the floating-point ones to float32 or float64, in place on the
        module; returns self, as torch. Positional arguments are told apart by kind:
        m.to("cuda"), m.to(np.float64), m.to("cuda", np.float32). Parameter objects
        stay the same objects (optimizers keep working; their state follows on the
        next step, see deepkern.optim). Cached forward state is dropped, so run
        forward again before backward."""
        for a in args:
            if is_device(a):
                if device is not None:
                    raise TypeError(f"[Module.to] two devices given: {device!r} and {a!r}")
                device = a
            else:
                if dtype is not None:
                    raise TypeError(f"[Module.to] two dtypes given: {dtype!r} and {a!r}")
                dtype = a
        dt = None if dtype is None else _float_dtype(dtype, "Module.to")
        if device is not None:
            device = canonical(device)  # a bad name or a missing GPU raises before anything moves
        # id -> (array, its converted self): an array shared by two modules stays shared.
        # The array is kept alive, so no new array can take its id during the call.
        moved = {}

        def convert(a, is_float=True):
            if id(a) in moved:
                return moved[id(a)][1]
            out = a
            if dt is not None and is_float and out.dtype != dt:
                out = out.astype(dt)
            if device is not None:
                out = to_device(out, device)
            moved[id(a)] = (a, out)
            return out

        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = convert(p.data)
                    p.grad = None if p.grad is None else convert(p.grad)
            for n, b in m._buffers.items():
                if b is not None:
                    m._buffers[n] = convert(b, b.dtype.kind == "f")
            m._clear_cache()
        return self

    def _clear_cache(self):
        """Drop what forward saved for backward (layers with a cache override this)."""
        if "_cache" in self.__dict__:
            object.__setattr__(self, "_cache", None)

    def _saved(self):
        """What forward cached, or a clear error when backward comes first."""
        cache = self.__dict__.get("_cache")
        if cache is None:
            raise RuntimeError(f"[{type(self).__name__}] backward() called before forward()")
        return cache

    # -- state -----------------------------------------------------------------

    def _state_entries(self, prefix=""):
        """(name, array) in torch's state_dict order: own parameters, own buffers,
        then each child's, depth first."""
        for n, p in self._parameters.items():
            if p is not None:
                yield prefix + n, p.data
        for n, b in self._buffers.items():
            if b is not None:
                yield prefix + n, b
        for n, m in self._modules.items():
            if m is not None:
                yield from m._state_entries(prefix + n + ".")

    def state_dict(self):
        """OrderedDict name -> copy of each parameter and buffer as a numpy array
        (copied to the host from a GPU), torch's names."""
        return OrderedDict((n, to_host(a, copy=True)) for n, a in self._state_entries())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the existing parameters and buffers, after checking every
        name, shape and dtype (nothing is written unless all checks pass).
        Returns (missing_keys, unexpected_keys) as torch; strict=True raises on either."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"[load_state_dict] expected a mapping of name -> array, got {type(state_dict).__name__}")
        targets = OrderedDict(self._state_entries())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        problems, dtype_problems, pairs = [], [], []
        if strict and (missing or unexpected):
            if missing:
                problems.append(f"missing key(s): {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected key(s): {', '.join(unexpected)}")
        for name, target in targets.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if not (isinstance(value, np.ndarray) or is_gpu(value)):
                value = np.asarray(value)  # lists, torch CPU tensors
            if value.shape != target.shape:
                problems.append(f"{name} has shape {value.shape} in the state dict but {target.shape} in the model")
            elif value.dtype != target.dtype:
                dtype_problems.append(f"{name} has dtype {value.dtype} in the state dict but {target.dtype} in "
                                      "the model (convert one with .astype or Module.to)")
            else:
                pairs.append((target, value))
        if problems:
            raise ValueError("[load_state_dict] " + "; ".join(problems + dtype_problems))
        if dtype_problems:
            raise TypeError("[load_state_dict] " + "; ".join(dtype_problems))
        for target, value in pairs:
            # Copied onto the target's device: a numpy state dict loads into a GPU model.
            target[...] = to_device(value, device_of(target))
        return IncompatibleKeys(missing, unexpected)

    # -- calling ---------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward()")

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse. Children are named
    "0", "1", ... (or by the keys of an OrderedDict), as torch."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        try:
            return items[idx][1]
        except (IndexError, TypeError):
            raise IndexError(f"[Sequential] index {idx!r} out of range for {len(items)} modules") from None

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(list(self._modules.values())):
            dy = m.backward(dy)
        return dy


def save(state_dict, path):
    """Write a flat mapping name -> array (a Module's state_dict) to `path` as .npz.

    Written to a temporary file beside `path` and renamed over it, so a failure
    midway never leaves a truncated file where a good one stood."""
    arrays = OrderedDict()
    for k, v in state_dict.items():
        a = to_host(v)
        if a.dtype.hasobject:
            raise TypeError(f"[save] {k} is not a numeric array (got {type(v).__name__})")
        arrays[str(k)] = a
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: numpy must not append ".npz" to the name
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path):
    """Read a state dict written by save(); never unpickles."""
    with np.load(path, allow_pickle=False) as z:
        return OrderedDict((k, z[k]) for k in z.files)
