"""Checkpoints of [`rnnflow.train_seeds`][]: one file per finished chunk of seeds.

Each file records what computed it, in two parts, and a checksum of its content:

- the *run*: a hash of the traced computation of one seed (the jaxpr of loss, method,
  saves and stops, with every constant it closes over) and the lanes;
- the *chunk*: a hash of the chunk's initial parameters;
- the checksum of the arrays stored.

The folder holds `checkpoint.json`, the run's identity (its computation and a hash of
all its initial parameters): a folder of another run, or one holding other files, is
refused and left unchanged. In this run's folder, a chunk file that cannot be read, holds
other seeds (swapped with another chunk's file), or whose content does not match its
checksum (truncated, overwritten, a flipped bit), is reported once, with a one-line
warning naming it and why, and recomputed: the result is the same as an uninterrupted
run's. Files are written atomically, so a run killed at any moment leaves complete files
only.
"""

import hashlib
import json
import re
import warnings
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from .files import DamageWarning, FolderLock, atomic_write


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
    return hash_and_shape(fn, *args)[0]


def hash_and_shape(fn, *args) -> tuple[str, object]:
    """`computation_hash(fn, *args)` and `jax.eval_shape(fn, *args)`, from one trace."""
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", str(closed.jaxpr))
    h = hashlib.sha256(text.encode())
    _hash_arrays(h, [c for c in closed.consts if eqx.is_array(c) or np.isscalar(c)])
    return h.hexdigest(), shape


_RUN = "checkpoint.json"
_LOCK = ".lock"
_CHUNK = re.compile(r"seeds-chunk-\d{5}\.npz")


class Checkpoints:
    """The chunk files of one run in `folder`: `run_hash` identifies its computation,
    `seeds_hash` its initial parameters (and keys). A folder of another run, or holding
    files that are not checkpoints, is refused before anything in it is changed; the
    folder is locked (pid and host) while the run writes it. Use as a context manager."""

    def __init__(self, folder, run_hash: str, seeds_hash: str):
        self.folder = Path(folder)
        self.run_hash = run_hash
        self.identity = {"run": run_hash, "seeds": seeds_hash}
        self.lock = FolderLock(self.folder / _LOCK, f"the checkpoint folder {self.folder}")
        self._check()

    def _check(self) -> None:
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(f"checkpoint {folder} is a file, not a folder.")
        if not folder.exists():
            return
        owner = self.lock.owner()
        if owner is not None:
            raise FileExistsError(self.lock.refusal(owner))
        refuse = f"choose another `checkpoint` folder (nothing in {folder} was changed)."
        names = [p.name for p in folder.iterdir()]
        foreign = [
            n for n in names if not (_CHUNK.fullmatch(n) or n in (_RUN, _LOCK) or n[0] == ".")
        ]
        if foreign:
            raise FileExistsError(
                f"checkpoint folder {folder} holds files that are not rnnflow checkpoints "
                f"({', '.join(sorted(foreign)[:3])}); {refuse}"
            )
        try:
            held = json.loads((folder / _RUN).read_text())
        except FileNotFoundError:
            held = None
        except (OSError, ValueError):
            held = None  # damaged: the chunk files say whose the folder is
        if held is not None and held != self.identity:
            why = "another computation" if held.get("run") != self.run_hash else "other seeds"
            raise FileExistsError(
                f"checkpoint folder {folder} holds the chunks of another run ({why}: another "
                f"loss, method, saves, stop, lanes or initial parameters); {refuse}"
            )
        if held is not None:
            return  # this run's folder: a chunk file of another run in it is damage
        for name in names:
            if _CHUNK.fullmatch(name) and _run_of(folder / name) not in (None, self.run_hash):
                raise FileExistsError(
                    f"checkpoint folder {folder} holds chunks of another run (another loss, "
                    f"method, saves, stop or lanes: {name}); {refuse}"
                )

    def __enter__(self) -> "Checkpoints":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self._check()  # again, now that this run holds the lock
            text = json.dumps(self.identity).encode()
            atomic_write(self.folder / _RUN, lambda f: f.write(text))
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

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
            return self._discard(path, f"it cannot be read ({type(e).__name__})")
        if run != self.run_hash:  # this folder is this run's: a file swapped in
            return self._discard(path, "it was computed by another run")
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
        warnings.warn(
            f"checkpoint {path} is damaged: {why}; computing its chunk again.",
            DamageWarning,
            stacklevel=4,
        )
        return None


def _run_of(path: Path) -> str | None:
    """The run that computed a chunk file, `None` if the file cannot be read (damaged)."""
    try:
        with np.load(path) as data:
            return str(data["run"])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
