"""Reading a store back, verified: every chunk of every finished unit exists and decodes
(its CRC-32C checksum matches, the decompressor accepts it), on resume and in
[`rnnflow.open_results`][]. What is found names the variable, the chunk and the unit."""

import contextlib
import os
import warnings

from .store import _PROGRESS, Store

# Arrays up to this size are read whole (zarr reads their chunks concurrently); larger
# ones, and any whose whole read fails, are read chunk by chunk to find the damage.
_WHOLE_READ_BYTES = 2**27


class DamagedStoreError(ValueError):
    """A finished store holds a chunk that fails verification."""


@contextlib.contextmanager
def zarr_quiet():
    with warnings.catch_warnings():  # the progress folder is ours, not zarr's
        warnings.filterwarnings("ignore", message=f"Object at {_PROGRESS} is not recognized")
        yield


def _readable(store: Store, name: str, keys: list[str]) -> str | None:
    """Why the chunks `keys` of variable `name` are not readable, or `None` if they are."""
    for key in keys:
        if not (store.path / name / key).is_file():
            return f"its chunk {name}/{key} is missing"
    try:
        array = store.array(name, "r")
    except Exception as e:  # noqa: BLE001 - any failure to open is damage, reported below
        return f"the metadata of {name} cannot be read ({type(e).__name__})"
    if array.nbytes <= _WHOLE_READ_BYTES:
        try:
            array[...]
            return None
        except Exception:  # noqa: BLE001 - find which chunk below
            pass
    for key in keys:
        coords = tuple(int(i) for i in key.split("/")[1:])
        try:
            array.get_block_selection(coords)
        except Exception as e:  # noqa: BLE001 - a checksum or decompression error
            why = "fails its checksum" if "checksum" in str(e) else f"cannot be decoded ({e})"
            return f"its chunk {name}/{key} {why}"
    return None


def damaged_units(store: Store, units: int) -> dict[int, str]:
    """The finished units of `store` (of `units`) whose chunks fail verification, each
    with a line that names it and why."""
    damaged, by_name = {}, {}
    for u in range(units):
        if not store.done(u):
            continue
        held = store.written(u)
        if held is None:
            damaged[u] = f"unit {u}: its marker cannot be read"
            continue
        for name, keys in held["chunks"].items():
            by_name.setdefault(name, []).append((u, held["label"], keys))
    for name, entries in by_name.items():
        # One read of the variable when it is sound; unit by unit when it is not.
        keys = [k for _, _, ks in entries for k in ks]
        if _readable(store, name, keys) is None:
            continue
        for u, label, ks in entries:
            why = _readable(store, name, ks)
            if why is not None and u not in damaged:
                damaged[u] = f"unit {u} ({label}): {why}"
    return dict(sorted(damaged.items()))


def coordinates(identity: dict) -> list[str]:
    """The coordinate arrays of a store of this identity (see `layout.layout`)."""
    return list(identity.get("axes", {})) + ["seed", "time", "seed_key"]


def damaged_coords(store: Store, names) -> dict[str, str]:
    """The coordinates among `names` that fail verification, each with why."""
    out = {}
    for name in names:
        why = _readable(store, name, [])
        if why is None:
            try:
                store.array(name, "r")[...]
            except Exception as e:  # noqa: BLE001 - a checksum or decompression error
                why = f"it cannot be read ({type(e).__name__})"
        if why is not None:
            out[name] = why
    return out


def open_results(path: str | os.PathLike, *, verify: bool = True):
    """The results of a sweep (see [`rnnflow.run_sweep`][]) as an `xarray.Dataset`, read
    lazily: values are loaded when used, so a store larger than memory opens at once. Its
    dimensions come in the sweep's order, then `seed`, `time` (and `key_data` of the seeds'
    keys), and its data variables by name, on every machine.

    **Arguments:**

    - `path`: the store.
    - `verify`: read every chunk of every finished unit once, now, and check that it
      exists and matches its checksum (default). Without it, the store opens at once and
      each chunk is still checked when it is read: a damaged one raises an error then,
      never a wrong value.

    A store whose sweep has not finished opens too (its missing values are NaN, or -1 for
    integer variables), with a warning saying how many units of work are done. A store
    with a damaged chunk raises a `DamagedStoreError` (a `ValueError`) naming the
    variable, the chunk and the unit: run the same sweep again to recompute that unit.

    ```python
    ds = open_results("sweep.zarr")
    ds.extrapolation.isel(time=-1).median("seed").plot(x="init_scale")
    ```
    """
    import xarray as xr

    store = Store(path)
    if not store.path.exists():
        raise FileNotFoundError(f"{store.path} does not exist.")
    identity = store.identity()
    if identity is None or "units" not in identity:
        raise ValueError(f"{store.path} is not an rnnflow results store (no {_PROGRESS}/created).")
    units = identity["units"]
    if verify:
        with zarr_quiet():
            damaged = damaged_units(store, units)
            coords = damaged_coords(store, coordinates(identity))
        if damaged or coords:
            first = next(iter(damaged.values()), None) or "; ".join(
                f"coordinate {n}: {why}" for n, why in coords.items()
            )
            more = len(damaged) - 1 if damaged else 0
            raise DamagedStoreError(
                f"{store.path} is damaged: {first}"
                + (f" (and {more} other units)" if more > 0 else "")
                + "; run the same sweep again to recompute what is damaged."
            )
    if not store.complete():
        done = sum(store.done(u) for u in range(units))
        warnings.warn(
            f"{store.path} is unfinished: {done} of {units} units of work are written; the "
            "rest reads as NaN. Run the same sweep again to finish it.",
            stacklevel=2,
        )
    try:
        with zarr_quiet():
            ds = xr.open_zarr(
                str(store.path), chunks=None, consolidated=False, mask_and_scale=False
            )
    except Exception as e:  # noqa: BLE001 - metadata that zarr cannot parse
        raise DamagedStoreError(
            f"{store.path} cannot be opened ({type(e).__name__}: {e}); its metadata is damaged."
        ) from None
    return in_order(ds)


def in_order(ds):
    """`ds` with its coordinates in the order of the sweep's axes, `seed`, `time` and
    `seed_key` (then any others by name), and its data variables by name.

    zarr lists a folder in the order the file system gives, which differs from one machine
    to the next, and the dimensions of a Dataset follow the order of its variables. Rebuilt
    this way, the same store reads with the same dimension order everywhere. The axes'
    order is that of the `result` variable (the store's identity keeps them by name).
    """
    import xarray as xr

    axes = list(ds["result"].dims) if "result" in ds else []
    first = axes + ["time", "seed_key"]
    names = [n for n in first if n in ds.coords] + sorted(n for n in ds.coords if n not in first)
    out = xr.Dataset(coords={n: ds[n].variable for n in names}, attrs=ds.attrs)
    return out.assign({n: ds[n].variable for n in sorted(ds.data_vars)})
