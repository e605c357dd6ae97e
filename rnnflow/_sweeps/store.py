"""A sweep's results store: a zarr group that xarray opens as a labelled `Dataset`, every
chunk of it checksummed.

Layout (zarr format 3, readable by `xarray.open_zarr`): one array per variable, with
dimensions the sweep axes, then `seed`, then `time` (the save points) and any dimensions
of the metric itself; coordinates for every axis, `seed` and `time`. Arrays are chunked
one point by a block of seeds, so that every unit of work writes whole chunks of its own:
units never share a chunk (but for `t`, the flow times of a point, which every unit of
that point writes with the same values), and several processes can write one store at
once. Each chunk is compressed, then ends in a CRC-32C checksum of its compressed bytes
(zarr's `crc32c` codec), checked whenever the chunk is read: a truncated, overwritten or
bit-flipped chunk is an error, never a value. Every chunk of a finished unit is written,
also one that holds only fill values, so a missing chunk file is damage too.

Progress lives beside the arrays, in `.rnnflow/`: `created` (the sweep's identity) once
the group and its arrays exist; a marker per finished unit, written (atomically) after its
arrays, naming the unit and the chunks it wrote; `lock`, the pid and host of the run
writing the store; `complete`, written last. A killed sweep resumes from the markers; an
unfinished unit, or a finished one whose chunks fail verification, is recomputed and
overwritten whole.
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from .._engine.files import FolderLock, atomic_write

_PROGRESS = ".rnnflow"
# Bumped when the layout changes: a store of another format is another sweep's.
FORMAT = "zarr3-crc32c"


def _zarr_config() -> dict:
    # Chunks of fill values only (a block of diverged seeds) are written too: a chunk of a
    # finished unit that is missing is then damage, not a block of NaN.
    return {"write_empty_chunks": True}


def compressors(checksums: bool = True) -> list:
    """The codecs after serialisation: zarr's default compressor, then a CRC-32C of the
    compressed bytes, so that damage is found before the decompressor sees it."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(level=0)] + ([Crc32cCodec()] if checksums else [])


class Store:
    """The zarr group at `path` and its progress markers."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.progress = self.path / _PROGRESS
        self.lock = FolderLock(self.progress / "lock", f"the store {self.path}")
        self._arrays = {}

    # -- progress -------------------------------------------------------------------------

    def _mark(self, name: str, text: str = "") -> None:
        self.progress.mkdir(parents=True, exist_ok=True)
        atomic_write(self.progress / name, lambda f: f.write(text.encode()))

    def created(self) -> bool:
        return (self.progress / "created").exists()

    def identity(self) -> dict | None:
        """The identity of the sweep held, `None` if none; a marker that cannot be read is
        an identity no sweep has."""
        path = self.progress / "created"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {"unreadable": str(path)}

    def _unit(self, unit: int) -> Path:
        return self.progress / f"unit-{unit:07d}"

    def done(self, unit: int) -> bool:
        return self._unit(unit).exists()

    def mark_done(self, unit: int, label: str, chunks: dict, lanes: int) -> None:
        """Mark `unit` finished: `label` says which point and seeds it is, `chunks` maps
        each variable to the keys of the chunks the unit wrote, `lanes` is the width of
        the calls that computed it."""
        held = {"unit": label, "chunks": chunks, "lanes": lanes}
        self._mark(self._unit(unit).name, json.dumps(held))

    def unmark(self, unit: int) -> None:
        self._unit(unit).unlink(missing_ok=True)
        (self.progress / "complete").unlink(missing_ok=True)

    def written(self, unit: int) -> dict | None:
        """What the marker of a finished unit says (`label`, `chunks`), `None` if the
        marker cannot be read."""
        try:
            held = json.loads(self._unit(unit).read_text())
            return {
                "label": str(held["unit"]),
                "chunks": dict(held["chunks"]),
                "lanes": int(held["lanes"]),
            }
        except (OSError, ValueError, KeyError, TypeError):
            return None

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

        group = zarr.open_group(str(self.path), mode="a", zarr_format=3)
        for name, (dims, values) in coords.items():
            self.write_coord(name, dims, values, group)
        for name, (dims, shape, chunks, dtype) in variables.items():
            dtype = np.dtype(dtype)
            fill = np.nan if np.issubdtype(dtype, np.floating) else -1
            group.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=dtype,
                fill_value=fill,
                compressors=compressors(),
                dimension_names=list(dims),
                config=_zarr_config(),
                overwrite=True,  # a creation killed part-way, before `created`
            )
        group.attrs.update(attrs)
        self._mark("created", json.dumps(identity, sort_keys=True))

    def write_coord(self, name: str, dims, values, group=None) -> None:
        """(Re)write a coordinate, whole: at creation, and where one was found damaged."""
        import zarr

        group = zarr.open_group(str(self.path), mode="a") if group is None else group
        values = np.asarray(values)
        # Names (a model axis) as variable-length strings, which zarr 3 specifies.
        dtype = str if values.dtype.kind == "U" else values.dtype
        array = group.create_array(
            name,
            shape=values.shape,
            chunks=values.shape or None,
            dtype=dtype,
            compressors=compressors(),
            dimension_names=list(dims),
            config=_zarr_config(),
            overwrite=True,
        )
        array[...] = values

    def array(self, name: str, mode: str = "r+"):
        import zarr

        key = (name, mode)
        if key not in self._arrays:
            self._arrays[key] = zarr.open_array(
                str(self.path / name), mode=mode, config=_zarr_config()
            )
        return self._arrays[key]

    def write(self, name: str, region: tuple, values) -> list[str]:
        """Write `values` at `region` (indices and slices on the leading dimensions, whole
        along the rest); returns the keys of the chunks written."""
        array = self.array(name)
        array[region] = values
        coords = [
            (r.start or 0) // c if isinstance(r, slice) else r // c
            for r, c in zip(region, array.chunks, strict=False)
        ]
        coords += [0] * (array.ndim - len(coords))
        return [array.metadata.encode_chunk_key(tuple(coords))]

    def finish(self) -> None:
        self._mark("complete")
