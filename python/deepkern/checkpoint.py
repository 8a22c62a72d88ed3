"""Training checkpoints as .npz files that load with allow_pickle=False.

A checkpoint is a nested structure of dicts, lists, tuples, numbers, strings and
numpy arrays (model and optimizer state dicts, scheduler counters, the epoch, the
history, callback state). save_checkpoint stores every array as its own npz entry
and the structure around them as one JSON document (the "__meta__" entry, a numpy
unicode scalar) in which each array is a reference {"__nd__": key}. Types JSON
lacks are tagged: tuples, dicts whose keys are not all strings (an optimizer's
state is keyed by parameter index), Counters (MultiStepLR's milestones), numpy
scalars (kept as 0-d arrays, so their dtype survives). Floats round-trip exactly
(Python's float repr), infinities and NaN included. GPU (CuPy) arrays are stored
as numpy arrays, so a checkpoint written on a GPU loads anywhere.

The file is written through deepkern.nn.save: to a temporary file beside the
target, fsynced, then renamed over it, so a crash mid-write leaves the previous
checkpoint intact.
"""
import json
from collections import Counter

import numpy as np

from ._array import to_host
from .nn.module import load as _load_npz
from .nn.module import save as _save_npz

FORMAT = 1


def _encode(obj, arrays, where):
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and not isinstance(obj, np.generic):
        return obj
    if hasattr(obj, "__cuda_array_interface__"):
        obj = to_host(obj)
    if isinstance(obj, (np.ndarray, np.generic)):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(obj)
        return {"__nd__": key, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, where) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays, where) for v in obj]
    if isinstance(obj, Counter):
        return {"__counter__": [[_encode(k, arrays, where), _encode(v, arrays, where)] for k, v in obj.items()]}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, arrays, where), _encode(v, arrays, where)] for k, v in obj.items()]}
    raise TypeError(f"[save_checkpoint] cannot store a {type(obj).__name__} (in {where}); a checkpoint holds "
                    "numbers, strings, lists, tuples, dicts and numpy arrays")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__nd__" in obj:
        a = arrays[obj["__nd__"]]
        return a[()] if obj.get("scalar") else a
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__counter__" in obj:
        return Counter({_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in obj["__counter__"]})
    if "__dict__" in obj:
        return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in obj["__dict__"]}
    raise ValueError(f"[load_checkpoint] unknown tag in the checkpoint's structure: {sorted(obj)}")


def _hashable(k):
    return tuple(k) if isinstance(k, list) else k


def save_checkpoint(path, state):
    """Write `state` (a dict) to `path` atomically (see the module docstring)."""
    if not isinstance(state, dict):
        raise TypeError(f"[save_checkpoint] state must be a dict, got {type(state).__name__}")
    arrays = {}
    meta = _encode({"format": FORMAT, "state": state}, arrays, "the checkpoint")
    arrays["__meta__"] = np.array(json.dumps(meta))
    _save_npz(arrays, path)


def load_checkpoint(path):
    """The state dict save_checkpoint wrote; never unpickles. A file that is not a
    deepkern checkpoint raises ValueError naming it."""
    try:
        arrays = _load_npz(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"[load_checkpoint] no such file: {path}") from None
    except (OSError, ValueError) as e:  # zip or npy damage, pickled content
        raise ValueError(f"[load_checkpoint] {path} is not a readable checkpoint ({e})") from None
    if "__meta__" not in arrays:
        raise ValueError(f"[load_checkpoint] {path} is an npz file but not a deepkern checkpoint (no __meta__)")
    try:
        meta = _decode(json.loads(str(arrays["__meta__"])), arrays)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"[load_checkpoint] {path}: damaged checkpoint structure ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"[load_checkpoint] {path}: unsupported checkpoint format {meta.get('format')!r}")
    return meta["state"]
