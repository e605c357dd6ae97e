"""Results folders: written atomically, never overwritten, loaded back with one call.

A results folder holds one experiment's run:

    metadata.json   experiment, config, summary, package versions, backend, seed keys;
                    written last, so its presence means the run is complete
    results.npz     per-seed arrays (seed axis first)
    figure.png      the experiment's figure

Each file is written to a temporary name and renamed into place, so a killed run never
leaves a partial file under a final name.
"""

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from .base import Experiment, ExperimentConfig

_PACKAGES = ("rnnflow", "jax", "jaxlib", "optax", "diffrax", "equinox", "numpy")


@dataclasses.dataclass
class Results:
    """A loaded results folder.

    - `arrays`: name → numpy array (seed axis first where there is one).
    - `metadata`: everything in `metadata.json` (experiment, config, summary, versions, keys).
    """

    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]

    @property
    def experiment(self) -> str:
        return self.metadata["experiment"]

    @property
    def config(self) -> dict[str, Any]:
        return self.metadata["config"]

    @property
    def summary(self) -> dict[str, float]:
        return self.metadata["summary"]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def to_xarray(self):
        """The arrays as an `xarray.Dataset` (needs xarray), metadata in its attributes."""
        try:
            import xarray as xr
        except ImportError as e:
            raise ImportError("to_xarray needs xarray: pip install xarray") from e
        data = {
            name: ([f"{name}_dim{i}" for i in range(a.ndim)], a) for name, a in self.arrays.items()
        }
        return xr.Dataset(data, attrs={"metadata": json.dumps(self.metadata)})


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def load_results(path: str | os.PathLike) -> Results:
    """Load a results folder (or its `metadata.json` / `results.npz`) written by rnnflow.

    ```python
    res = load_results("rnnflow-results/init_scale")
    res["extrapolation"].shape, res.summary
    ```
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_path = folder / "metadata.json"
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{folder} holds no complete rnnflow results (no metadata.json): the run may "
            "not have finished."
        )
    metadata = json.loads(meta_path.read_text())
    with np.load(folder / "results.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return Results(arrays, metadata)


def existing_results(folder: Path, experiment: Experiment, config: ExperimentConfig):
    """The complete results already in `folder` for this same experiment and config, or None.

    Raises if `folder` holds another experiment's results, or this experiment's with another
    config: nothing saved is ever overwritten.
    """
    meta_path = folder / "metadata.json"
    if not meta_path.exists():
        return None
    metadata = json.loads(meta_path.read_text())
    if metadata.get("experiment") != experiment.name:
        raise FileExistsError(
            f"{folder} already holds results of experiment {metadata.get('experiment')!r}; "
            f"choose another output folder for {experiment.name!r}."
        )
    if metadata.get("config") != config.to_dict():
        raise FileExistsError(
            f"{folder} already holds {experiment.name!r} results for a different config; "
            "choose another output folder (nothing was overwritten)."
        )
    return load_results(folder)


def write_results(
    folder: Path,
    experiment: Experiment,
    config: ExperimentConfig,
    outcome,
    *,
    backend: str,
    dtype: str,
) -> Results:
    """Write arrays, figure and (last) metadata into `folder`; return them as `Results`."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "results.npz", lambda f: np.savez(f, **outcome.arrays))
    metadata = {
        "experiment": experiment.name,
        "claim": experiment.claim,
        "config": config.to_dict(),
        "summary": {k: float(v) for k, v in outcome.summary.items()},
        "versions": _versions(),
        "backend": backend,
        "dtype": dtype,
        "seed_keys": np.asarray(outcome.keys).tolist(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    figure = folder / "figure.png"
    atomic_write(
        figure,
        lambda f: experiment.plot(outcome.arrays, metadata["summary"], config, f),
    )
    atomic_write(
        folder / "metadata.json", lambda f: f.write(json.dumps(metadata, indent=1).encode())
    )
    return Results(dict(outcome.arrays), metadata)
