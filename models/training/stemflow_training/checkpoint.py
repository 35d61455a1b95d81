"""Training checkpoints that cannot run code when loaded (unlike pickle).

One file per checkpoint, written with `numpy.savez`: every array of the state (parameters, Adam
moments, normalisation statistics, any numpy scalar) is a member named by its path in the state,
e.g. `params/steps/3/c1_w`, `m/steps/0/W_L`, `norm/mu`; member `__meta__` is the UTF-8 JSON of
everything else - the state's nested dicts, lists and tuples with their str / int / float /
bool / None leaves (step, cfg, hist, info) - in which each array appears as
{"__ndarray__": path} (or {"__npscalar__": path} for a numpy scalar) and each tuple as
{"__tuple__": [...]}, so that `read` rebuilds exactly the structure, key order, types, dtypes
and values that `write` was given (JAX arrays come back as numpy arrays).  Reading uses
`numpy.load(..., allow_pickle=False)` and `json.loads` only.
"""
import json
import os

import numpy as np

FORMAT = 'stemflow-training-checkpoint'
VERSION = 1
META = '__meta__'
_ARRAY, _SCALAR, _TUPLE = '__ndarray__', '__npscalar__', '__tuple__'
_RESERVED = (_ARRAY, _SCALAR, _TUPLE)


def _is_array(x):
    return isinstance(x, np.ndarray) or (hasattr(x, '__array__') and hasattr(x, 'shape') and hasattr(x, 'dtype'))


def flatten(state):
    """(arrays {path: ndarray}, JSON-able tree) of a state; raises on anything it cannot store
    exactly (object arrays, non-str dict keys, other Python objects)."""
    arrays = {}

    def put(path, a):
        key = '/'.join(path)
        if not key or key in (META, 'file', 'allow_pickle') or key in arrays:
            raise ValueError(f"checkpoint: array path {key!r} is empty, reserved or used twice")
        if a.dtype.hasobject:
            raise TypeError(f"checkpoint: {key} is an object array")
        arrays[key] = a
        return key

    def walk(x, path):
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if not isinstance(k, str) or k in _RESERVED:
                    raise TypeError(f"checkpoint: dict key {k!r} at {'/'.join(path) or '/'} is not storable")
                out[k] = walk(v, path + (k,))
            return out
        if isinstance(x, tuple):
            return {_TUPLE: [walk(v, path + (str(i),)) for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, path + (str(i),)) for i, v in enumerate(x)]
        if isinstance(x, np.generic):   # before the Python types: np.float64 is a float
            return {_SCALAR: put(path, np.asarray(x))}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if _is_array(x):
            return {_ARRAY: put(path, np.asarray(x))}
        raise TypeError(f"checkpoint: cannot store {type(x).__name__} at {'/'.join(path)}")

    return arrays, walk(state, ())


def unflatten(arrays, tree):
    """The state `flatten` was given, from its arrays and tree."""
    def walk(x):
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            if len(x) == 1 and _ARRAY in x:
                return arrays[x[_ARRAY]]
            if len(x) == 1 and _SCALAR in x:
                return arrays[x[_SCALAR]][()]
            if len(x) == 1 and _TUPLE in x:
                return tuple(walk(v) for v in x[_TUPLE])
            return {k: walk(v) for k, v in x.items()}
        return x
    return walk(tree)


def write(path, state):
    """Writes the state to `path` atomically (a temporary file beside it, then os.replace)."""
    arrays, tree = flatten(state)
    meta = json.dumps({'format': FORMAT, 'version': VERSION, 'state': tree}).encode('utf-8')
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:   # a file object: np.savez would append '.npz' to a name
        np.savez(f, allow_pickle=False, **{META: np.frombuffer(meta, dtype=np.uint8)}, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read(path):
    """The state written to `path` by `write`; never unpickles (a pickle fails with ValueError)."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            if META not in z.files:
                raise ValueError(f"no {META} member")
            meta = json.loads(z[META].tobytes().decode('utf-8'))
            if not isinstance(meta, dict) or meta.get('format') != FORMAT or meta.get('version') != VERSION:
                raise ValueError("unknown format or version")
            arrays = {k: z[k] for k in z.files if k != META}
        return unflatten(arrays, meta['state'])
    except Exception as e:
        raise ValueError(f"{path} is not a readable {FORMAT} (version {VERSION}): {e}; "
                         "delete it or pass --fresh to start over") from e
