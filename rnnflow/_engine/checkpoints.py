"""Checkpoints of [`rnnflow.train_seeds`][]: one file per finished chunk of seeds.

Each file records what computed it, in two parts, and a checksum of its content:

- the *run*: a hash of the traced computation of one seed (the jaxpr of loss, method,
  saves and stops, with every constant it closes over) and the lanes;
- the *chunk*: a hash of the chunk's initial parameters;
- the checksum of the arrays stored.

A file that cannot be read, was computed by another run or for other seeds (swapped with
another chunk's file), or whose content does not match its checksum (truncated,
overwritten), is reported once, with a warning naming it and why, and recomputed: the
result is the same as an uninterrupted run's. Files are written atomically, so a run
killed at any moment leaves complete files only.
"""

import hashlib
import re
import warnings
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from .files import atomic_write


def _hash_arrays(h, leaves) -> None:
    for x in leaves:
        x = np.asarray(x)
        h.update(f"{x.shape}{x.dtype}".encode())
        h.update(np.ascontiguousarray(x).tobytes())


def array_hash(tree) -> str:
    """A hash of the values, shapes and dtypes of the arrays in `tree`, and its structure."""
    leaves, treedef = jax.tree.flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    _hash_arrays(h, [x for x in leaves if eqx.is_array(x)])
    return h.hexdigest()


def computation_hash(fn, *args) -> str:
    """A hash of what `fn(*args)` computes: its jaxpr (printed without memory addresses)
    and the values of the constants it closes over. The same in every process that runs
    the same code on arguments of the same shapes."""
    closed = jax.make_jaxpr(fn)(*args)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", str(closed.jaxpr))
    h = hashlib.sha256(text.encode())
    _hash_arrays(h, [c for c in closed.consts if eqx.is_array(c) or np.isscalar(c)])
    return h.hexdigest()


class Checkpoints:
    """The chunk files of one run (identified by `run_hash`) in `folder`."""

    def __init__(self, folder, run_hash: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_hash = run_hash

    def path(self, i: int) -> Path:
        return self.folder / f"seeds-chunk-{i:05d}.npz"

    def load(self, i: int, chunk_hash: str, treedef):
        """The chunk's stored results, or `None` if it must be computed."""
        path = self.path(i)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                run, chunk, checksum = (str(data[k]) for k in ("run", "chunk", "checksum"))
                leaves = [data[f"leaf{j}"] for j in range(treedef.num_leaves)]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            return self._discard(path, f"it cannot be read ({type(e).__name__}: {e})")
        if run != self.run_hash:
            return self._discard(
                path, "it was computed by another run (another loss, method, saves, stop or lanes)"
            )
        if chunk != chunk_hash:
            return self._discard(path, "it holds other seeds than this chunk's")
        h = hashlib.sha256()
        _hash_arrays(h, leaves)
        if h.hexdigest() != checksum:
            return self._discard(path, "its content does not match its checksum")
        return jax.tree.unflatten(treedef, leaves)

    def store(self, i: int, chunk_hash: str, traj) -> None:
        leaves = [np.asarray(x) for x in jax.tree.leaves(traj)]
        h = hashlib.sha256()
        _hash_arrays(h, leaves)
        fields = {f"leaf{j}": x for j, x in enumerate(leaves)}
        meta = {"run": self.run_hash, "chunk": chunk_hash, "checksum": h.hexdigest()}
        meta = {k: np.asarray(v) for k, v in meta.items()}
        atomic_write(self.path(i), lambda f: np.savez(f, **meta, **fields))

    @staticmethod
    def _discard(path: Path, why: str) -> None:
        warnings.warn(f"checkpoint {path} is not used: {why}; recomputing it.", stacklevel=4)
        return None
