"""What a sweep's store holds: its identity (what decides that a store belongs to a
sweep, so that the same sweep resumes and any other is refused), its layout of
coordinates and chunked variables, and its attributes (config, versions, backend, keys)."""

import importlib.metadata
import itertools
import json
import platform
import warnings

import jax
import numpy as np

from .._engine.files import DamageWarning
from . import verify
from .store import FORMAT

_PACKAGES = ("rnnflow", "jax", "jaxlib", "optax", "diffrax", "equinox", "numpy", "xarray", "zarr")


def identity(sweep, plan, hashes) -> dict:
    return {
        "axes": {a: [jsonable(v) for v in vs] for a, vs in sweep.axes.items()},
        "vmapped": list(plan.vmapped),
        "seeds": sweep.seeds,
        "block": plan.block,
        "units": len(list(plan.units(sweep.seeds))),
        "key": np.asarray(jax.random.key_data(sweep.key)).tolist(),
        "float64": bool(jax.config.read("jax_enable_x64")),
        "computations": hashes,
        "format": FORMAT,
    }


# What each entry of a sweep's identity is, in the words of its arguments.
_NAMES = {
    "axes": "axes",
    "vmapped": "vmapped axes",
    "seeds": "seeds",
    "block": "seeds per unit of work",
    "units": "units of work",
    "format": "store format",
    "key": "root key",
    "float64": "float64 precision",
    "computations": "computation (hash of the traced training, one per looped combination)",
}


def differences(stored: dict, wanted: dict) -> str:
    """What differs between the identity of a store and a sweep's, with both values."""

    def show(v):
        text = json.dumps(v)
        return text if len(text) <= 120 else text[:117] + "..."

    def part(k):
        if k == "computations":
            return _training(stored, wanted)
        said = f"{_NAMES.get(k, k)}: {show(wanted.get(k))} in this sweep, {show(stored.get(k))} "
        said += "in the store"
        if k == "vmapped" and sorted(stored.get(k) or []) == sorted(wanted.get(k) or []):
            said += " (the same axes in another order: give them in the store's order)"
        return said

    return "; ".join(
        part(k)
        for k in sorted(set(stored) | set(wanted))
        if json.dumps(stored.get(k), sort_keys=True) != json.dumps(wanted.get(k), sort_keys=True)
    )


def _training(stored: dict, wanted: dict) -> str:
    """That the training differs (its hashes are not worth showing), and where: the first
    combination of the looped axes whose training differs, and how many do."""
    said = (
        "the training differs from the store's (a setting of the loss, model, method, saves "
        "or stops, compared by a hash of its trace)"
    )
    old, new = stored.get("computations") or [], wanted.get("computations") or []
    looped = [a for a in wanted.get("axes", {}) if a not in wanted.get("vmapped", [])]
    combos = list(itertools.product(*(wanted["axes"][a] for a in looped)))
    if not looped or len(old) != len(new) or len(new) != len(combos):
        return said
    differ = [c for c, a, b in zip(combos, old, new, strict=True) if a != b]
    first = ", ".join(f"{a} = {v}" for a, v in zip(looped, differ[0], strict=True))
    return f"{said} at {len(differ)} of {len(combos)} looped combinations, first at {first}"


def jsonable(v):
    return v.item() if isinstance(v, np.generic) else v


def check_place(out) -> None:
    """Refuse a store path that is a file, or lies under one (before anything is traced)."""
    if out.path.exists():
        if not out.path.is_dir():
            raise FileExistsError(f"{out.path} is a file, not a results store.")
        return
    parent = next(p for p in out.path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise FileExistsError(f"{parent} is a file: the store {out.path} cannot be made there.")


def check(out, identity) -> None:
    """Refuse, changing nothing, a store of another sweep, a file, a folder that is not a
    store, or a store another run is writing."""
    check_place(out)
    owner = out.lock.owner()
    if owner is not None:
        raise FileExistsError(out.lock.refusal(owner))
    existing = out.identity()
    if existing is not None:
        if existing.get("format") != FORMAT:
            raise FileExistsError(
                f"{out.path} holds a store of another format (one written by another version "
                "of rnnflow, or a damaged one); choose another store."
            )
        if json.dumps(existing, sort_keys=True) != json.dumps(identity, sort_keys=True):
            raise FileExistsError(
                f"{out.path} holds the results of another sweep: "
                f"{differences(existing, identity)}. Choose another store (or rerun with "
                "what the store holds)."
            )
        return
    # Our progress folder without `created`: a creation that was killed, to start over.
    if out.path.exists() and any(out.path.iterdir()) and not out.progress.is_dir():
        raise FileExistsError(f"{out.path} is not empty and not a results store.")


def open_or_create(out, sweep, plan, identity, shapes, times, seed_keys):
    """Create the store, or verify the one there (this sweep's, as `check` found): a
    damaged coordinate is written again, a finished unit with a damaged chunk is unmarked
    (to be computed again), each with a one-line notice."""
    check(out, identity)  # again, now that this run holds the lock
    coords, variables = layout(sweep, plan, shapes, times, seed_keys)
    if out.identity() is None:
        out.create(identity, coords, variables, attrs(sweep))
        return
    with verify.zarr_quiet():
        for name, why in verify.damaged_coords(out, coords).items():
            _notice(f"{out.path}: coordinate {name} is damaged ({why}); writing it again.")
            out.write_coord(name, *coords[name])
        for u, why in verify.damaged_units(out, identity["units"]).items():
            _notice(f"{out.path}: {why}; computing it again.")
            out.unmark(u)
    if not out.complete():
        widths = {
            held["lanes"]
            for u in range(identity["units"])
            if out.done(u) and (held := out.written(u)) is not None
        }
        if widths - {plan.width}:
            warnings.warn(
                f"{out.path} resumes with {plan.width} lanes where its finished units used "
                f"{sorted(widths)}: another batch width may round differently, so the units "
                "computed now agree with a run at the first width to rounding, not bit for bit.",
                stacklevel=4,
            )


def _notice(message: str) -> None:
    warnings.warn(message, DamageWarning, stacklevel=4)


def layout(sweep, plan, shapes, times, seed_keys):
    """Coordinates and variables (dims, shape, chunks, dtype) of the store."""
    axes = list(sweep.axes)
    lens = [len(sweep.axes[a]) for a in axes]
    first = shapes[0]
    stored = [(s.ts, s.metrics) for s in shapes]
    for other in stored[1:]:
        if jax.tree.structure(other) != jax.tree.structure(stored[0]) or any(
            a.shape != b.shape
            for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(stored[0]), strict=True)
        ):
            raise ValueError(
                "the saved metrics differ in names or shapes between values of the looped "
                f"axes {list(plan.looped)}: a saved quantity must have one shape."
            )
    saves = first.ts.shape[-1]
    same = all(np.array_equal(t, times[0]) for t in times)
    coords = {a: ([a], np.asarray(sweep.axes[a])) for a in axes}
    coords["seed"] = (["seed"], np.arange(sweep.seeds))
    coords["time"] = (["time"], times[0] if same else np.arange(saves))
    coords["seed_key"] = (["seed", "key_data"], np.asarray(jax.random.key_data(seed_keys)))
    variables = {"t": (axes + ["time"], lens + [saves], [1] * len(axes) + [saves], np.float64)}
    per_seed = dict(result=first.result, t_stop=first.t_stop, num_steps=first.num_steps)
    per_seed["num_grad_evals"] = first.num_grad_evals
    for name, leaf in per_seed.items():
        variables[name] = (
            axes + ["seed"],
            lens + [sweep.seeds],
            [1] * len(axes) + [plan.block],
            leaf.dtype,
        )
    for name, leaf in first.metrics.items():
        extra = [f"{name}_{i}" for i in range(leaf.ndim - 1)]
        variables[name] = (
            axes + ["seed", "time"] + extra,
            lens + [sweep.seeds, saves] + list(leaf.shape[1:]),
            [1] * len(axes) + [plan.block, saves] + list(leaf.shape[1:]),
            leaf.dtype,
        )
    return coords, variables


def attrs(sweep) -> dict:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "config": json.dumps(dict(sweep.attrs)),
        "versions": json.dumps(versions),
        "backend": jax.default_backend(),
        "float64": int(bool(jax.config.read("jax_enable_x64"))),
        "root_key": json.dumps(np.asarray(jax.random.key_data(sweep.key)).tolist()),
        "save": repr(sweep.save),
        "stop": repr(sweep.stop),
    }
