"""Results folders: one experiment's run, labelled, never overwritten, loaded with one call.

    run.json       the run's identity: experiment, config, precision (float64 or not);
                   written before any computation
    NAME.zarr      the store of each of the experiment's sweeps (see rnnflow.run_sweep):
                   labelled arrays over (axes..., seed, time, ...), resumable
    figure.png     the experiment's figure
    summary.json   identity, the nested summary, versions, backend, devices, wall time; written
                   last, so its presence means the run is complete
    .lock          the pid and host of the run writing the folder, while it writes

A folder belongs to one identity: a run of another experiment, config or precision into
it is refused before any work, whether the folder is complete or not, and nothing in it
is changed. Files are written to a temporary name and renamed into place. A second run
into a folder that another is writing is refused in one line; a lock left by a killed
run is taken over. The stores verify their chunks (see rnnflow.open_results): a damaged
one in a finished folder is found when it is run again, and its units recomputed.
"""

import dataclasses
import datetime
import json
import os
import warnings
from pathlib import Path
from typing import Any

from .._engine.files import DamageWarning, FolderLock, atomic_write
from .summary import Summary

RUN, SUMMARY, FIGURE, LOCK = "run.json", "summary.json", "figure.png", ".lock"


def lock(folder: Path) -> FolderLock:
    """The lock of a results folder: held by the run writing it."""
    return FolderLock(folder / LOCK, f"the results folder {folder}")


def _read(path: Path) -> dict | None:
    """A JSON file of the folder, `None` if it is absent or damaged (cannot be parsed)."""
    try:
        held = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return held if isinstance(held, dict) else None


def identity(experiment: str, config, float64: bool) -> dict:
    """What decides "the same run": the experiment, every config value and the precision."""
    return {"experiment": experiment, "config": config.to_dict(), "float64": bool(float64)}


def _describe(ident: dict) -> str:
    precision = "float64" if ident.get("float64") else "float32"
    return f"{ident.get('experiment')!r} ({precision})"


@dataclasses.dataclass
class Results:
    """A loaded results folder.

    - `data`: sweep name → its labelled `xarray.Dataset` (read lazily from `NAME.zarr`).
    - `summary`: the [`rnnflow.experiments.Summary`][].
    - `metadata`: everything in `summary.json` (identity, versions, backend, wall time).
    """

    folder: Path
    data: dict[str, Any]
    summary: Summary
    metadata: dict[str, Any]

    @property
    def experiment(self) -> str:
        return self.metadata["experiment"]

    @property
    def config(self) -> dict[str, Any]:
        return self.metadata["config"]

    @property
    def float64(self) -> bool:
        return self.metadata["float64"]

    def __getitem__(self, name: str):
        """The Dataset of the sweep `name`."""
        return self.data[name]


def load_results(path: str | os.PathLike) -> Results:
    """Load a complete results folder written by [`rnnflow.experiments.run_experiment`][]
    (or `rnnflow run`/`reproduce`).

    **Arguments:**

    - `path`: the folder.

    **Returns:**

    [`rnnflow.experiments.Results`][]: the sweeps' Datasets, the summary and metadata.

    ```python
    res = load_results("rnnflow-results/init_scale")
    res["sweep"].extrapolation.isel(time=-1).median("seed"), res.summary["diverged"]
    ```
    """
    from .._sweeps.verify import open_results

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"{folder} does not exist.")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is a file, not a results folder.")
    summary_path = folder / SUMMARY
    if not summary_path.exists():
        what = "an unfinished run" if (folder / RUN).exists() else "no rnnflow results"
        raise FileNotFoundError(f"{folder} holds {what} (no {SUMMARY}).")
    metadata = _read(summary_path)
    if metadata is None or "sweeps" not in metadata:
        raise ValueError(
            f"{summary_path} is damaged (it cannot be read); run the same experiment again "
            "into this folder to write it again."
        )
    data = {name: open_results(folder / f"{name}.zarr") for name in metadata["sweeps"]}
    return Results(folder, data, Summary.from_dict(metadata["summary"]), metadata)


def inspect(folder: Path, ident: dict) -> str:
    """What `folder` holds for this run, without changing anything: `"complete"` (this run,
    finished), `"unfinished"` (this run, to resume) or `"new"` (nothing). Raises
    `FileExistsError` (one line naming the folder) if it holds anything else: another
    experiment, config or precision, complete or not, or files that are not an rnnflow run;
    `PermissionError` if this run would have to write into a folder it cannot write."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file, not a results folder; choose another --out.")
    if folder.is_dir() and (owner := lock(folder).owner()) is not None:
        raise FileExistsError(lock(folder).refusal(owner))
    damaged = []
    for name in (SUMMARY, RUN):
        path = folder / name
        if not path.exists():
            continue
        held = _read(path)
        if held is None:  # written last (summary) or first (run): the other one decides
            damaged.append(path)
            continue
        held = {k: held.get(k) for k in ("experiment", "config", "float64")}
        if held != ident:
            what = "results" if name == SUMMARY else "an unfinished run"
            reason = (
                "another experiment"
                if held["experiment"] != ident["experiment"]
                else "another precision"
                if held["float64"] != ident["float64"]
                else "another config"
            )
            raise FileExistsError(
                f"{folder} holds {what} of {_describe(held)} for {reason} than this "
                f"{_describe(ident)} run; choose another output folder (nothing was overwritten)."
            )
        if name == SUMMARY and not damaged:
            return "complete"
        _check_writable(folder)
        if damaged:
            warnings.warn(
                f"{damaged[0]} is damaged (it cannot be read); writing it again.",
                DamageWarning,
                stacklevel=3,
            )
        return "unfinished"
    if damaged:
        raise FileExistsError(
            f"{folder} holds a damaged {RUN} and no other record of its run, so whose it is "
            "cannot be told; choose another output folder (nothing was overwritten)."
        )
    if folder.exists():
        if any(p.name != LOCK for p in folder.iterdir()):
            raise FileExistsError(
                f"{folder} is not empty and holds no rnnflow run; choose another output folder."
            )
        _check_writable(folder)
    else:
        parent = next(p for p in folder.absolute().parents if p.exists())
        if not parent.is_dir():
            raise FileExistsError(f"{parent} is a file: {folder} cannot be made there.")
        _check_writable(parent)
    return "new"


def claim(folder: Path, ident: dict) -> tuple[str, FolderLock]:
    """`inspect` (nothing changed if it refuses), then lock `folder` for this run and make
    it this run's (its `run.json`) if it is new. Returns what it held (see `inspect`) and
    the lock, which the caller releases when done."""
    inspect(folder, ident)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot write the results folder {folder}: {e.strerror}.") from None
    held = lock(folder).acquire()
    try:
        with warnings.catch_warnings():  # said once, by the first look
            warnings.simplefilter("ignore", DamageWarning)
            state = inspect(folder, ident)  # again: another run may have come first
        if state == "new":
            text = json.dumps(ident, indent=1).encode()
            atomic_write(folder / RUN, lambda f: f.write(text))
    except BaseException:
        held.release()
        raise
    return state, held


def _check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into {folder}: permission denied.")


def write(
    folder: Path, ident: dict, experiment, config, data: dict, summary: Summary, extra: dict
) -> Results:
    """Draw the figure, then write `summary.json` (last: the run is complete)."""
    atomic_write(folder / FIGURE, lambda f: experiment.plot(data, summary, config, f))
    metadata = {
        **ident,
        "claim": experiment.claim,
        "sweeps": list(data),
        "summary": summary.to_dict(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    text = json.dumps(metadata, indent=1).encode()
    atomic_write(folder / SUMMARY, lambda f: f.write(text))
    return Results(folder, data, summary, metadata)
