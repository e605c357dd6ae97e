"""A sweep's results store: a zarr group that xarray opens as a labelled `Dataset`.

Layout (zarr format 2, readable by `xarray.open_zarr`): one array per variable, with
dimensions the sweep axes, then `seed`, then `time` (the save points) and any dimensions
of the metric itself; coordinates for every axis, `seed` and `time`. Arrays are chunked
one point by a block of seeds, so that every unit of work writes whole chunks of its own:
units never share a chunk, and several processes can write one store at once.

Progress lives beside the arrays, in `.rnnflow/`: `created` once the group and its arrays
exist, and a marker per finished unit, written (atomically) after its arrays. A killed
sweep resumes from the markers; an unfinished unit is recomputed and overwritten whole.
`complete` is written last, after the metadata is consolidated.
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from .._engine.files import atomic_write

_PROGRESS = ".rnnflow"


class Store:
    """The zarr group at `path` and its progress markers."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.progress = self.path / _PROGRESS

    # -- progress -------------------------------------------------------------------------

    def _mark(self, name: str, text: str = "") -> None:
        self.progress.mkdir(parents=True, exist_ok=True)
        atomic_write(self.progress / name, lambda f: f.write(text.encode()))

    def created(self) -> bool:
        return (self.progress / "created").exists()

    def identity(self) -> dict | None:
        path = self.progress / "created"
        return json.loads(path.read_text()) if path.exists() else None

    def done(self, unit: int) -> bool:
        return (self.progress / f"unit-{unit:07d}").exists()

    def mark_done(self, unit: int) -> None:
        self._mark(f"unit-{unit:07d}")

    def complete(self) -> bool:
        return (self.progress / "complete").exists()

    def wait_created(self, timeout: float = 600.0) -> dict:
        """Another process creates the store: wait for it."""
        start = time.monotonic()
        while not self.created():
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{self.path} was not created within {timeout:.0f} s.")
            time.sleep(0.05)
        return self.identity()

    def wait_done(self, units: int, timeout: float | None = None) -> None:
        start = time.monotonic()
        while not all(self.done(u) for u in range(units)):
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"{self.path}: units of other processes are not finished.")
            time.sleep(0.1)

    def wait_complete(self, timeout: float | None = None) -> None:
        start = time.monotonic()
        while not self.complete():
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"{self.path} was not completed by the first process.")
            time.sleep(0.1)

    # -- arrays ---------------------------------------------------------------------------

    def create(self, identity: dict, coords: dict, variables: dict, attrs: dict) -> None:
        """Create the group: `coords` name → (dims, values); `variables` name → (dims,
        shape, chunks, dtype); then mark it created with `identity`."""
        import zarr

        group = zarr.open_group(str(self.path), mode="w", zarr_format=2)
        for name, (dims, values) in coords.items():
            values = np.asarray(values)
            array = group.create_array(
                name,
                shape=values.shape,
                chunks=values.shape or None,
                dtype=values.dtype,
                attributes={"_ARRAY_DIMENSIONS": list(dims)},
            )
            array[...] = values
        for name, (dims, shape, chunks, dtype) in variables.items():
            dtype = np.dtype(dtype)
            fill = np.nan if np.issubdtype(dtype, np.floating) else -1
            group.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=dtype,
                fill_value=fill,
                attributes={"_ARRAY_DIMENSIONS": list(dims)},
            )
        group.attrs.update(attrs)
        self._mark("created", json.dumps(identity, sort_keys=True))

    def write(self, name: str, region: tuple, values) -> None:
        import zarr

        zarr.open_array(str(self.path / name), mode="r+", zarr_format=2)[region] = values

    def finish(self) -> None:
        import warnings

        import zarr

        with warnings.catch_warnings():  # the progress folder is ours, not zarr's
            warnings.filterwarnings("ignore", message=f"Object at {_PROGRESS} is not recognized")
            zarr.consolidate_metadata(str(self.path), zarr_format=2)
        self._mark("complete")


def open_results(path: str | os.PathLike):
    """The results of a sweep (see [`rnnflow.run_sweep`][]) as an `xarray.Dataset`, read
    lazily: values are loaded when used, so a store larger than memory opens at once.

    A store whose sweep has not finished opens too (its missing values are NaN, or -1 for
    integer variables), with a warning saying how many units of work are done.

    ```python
    ds = open_results("sweep.zarr")
    ds.extrapolation.isel(time=-1).median("seed").plot(x="init_scale")
    ```
    """
    import warnings

    import xarray as xr

    store = Store(path)
    if not store.path.exists():
        raise FileNotFoundError(f"{store.path} does not exist.")
    identity = store.identity()
    if identity is None:
        raise ValueError(f"{store.path} is not an rnnflow results store (no {_PROGRESS}/created).")
    if not store.complete():
        units = identity["units"]
        done = sum(store.done(u) for u in range(units))
        warnings.warn(
            f"{store.path} is unfinished: {done} of {units} units of work are written; the "
            "rest reads as NaN. Run the same sweep again to finish it.",
            stacklevel=2,
        )
        with warnings.catch_warnings():  # the progress folder is ours, not zarr's
            warnings.filterwarnings("ignore", message=f"Object at {_PROGRESS} is not recognized")
            return xr.open_zarr(
                str(store.path), chunks=None, consolidated=False, mask_and_scale=False
            )
    return xr.open_zarr(str(store.path), chunks=None, consolidated=True, mask_and_scale=False)
