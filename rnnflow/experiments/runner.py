"""Running a named experiment into a results folder."""

import importlib.metadata
import os
import platform
import time
import warnings
from pathlib import Path

import jax

from .._engine.files import DamageWarning
from .._sweeps import sweep as _sweep
from .._sweeps.verify import DamagedStoreError
from . import results as _results
from .base import Experiment, ExperimentConfig
from .registry import get_experiment
from .results import Results


def _resolve(experiment, config) -> tuple[Experiment, ExperimentConfig]:
    if isinstance(experiment, str):
        experiment = get_experiment(experiment)
    config = experiment.config_type() if config is None else config
    if not isinstance(config, experiment.config_type):
        raise TypeError(
            f"the config for {experiment.name!r} must be a {experiment.config_type.__name__}; "
            f"got {type(config).__name__}."
        )
    return experiment, config


def check_folder(experiment, config, out) -> bool:
    """Check that the folder `out` can take this run (see `run_experiment`); nothing is
    computed or changed. Returns True if it already holds this run complete; raises a
    one-line `FileExistsError`/`PermissionError` otherwise."""
    experiment, config = _resolve(experiment, config)
    ident = _results.identity(experiment.name, config, jax.config.read("jax_enable_x64"))
    with warnings.catch_warnings():  # a damaged file is said once, by the run itself
        warnings.simplefilter("ignore", DamageWarning)
        return _results.inspect(Path(out), ident) == "complete"


def run_experiment(
    experiment: str | Experiment,
    config: ExperimentConfig | None = None,
    *,
    out: str | os.PathLike,
    progress: bool | None = False,
    lanes: int | None = None,
) -> Results:
    """Run `experiment` with `config` (default: its full-scale config) into the folder `out`.

    **Arguments:**

    - `experiment`: a name (see `rnnflow list`) or an [`rnnflow.experiments.Experiment`][].
    - `config`: its config; default the full scale.
    - `out`: the results folder (layout in `rnnflow.experiments.results`).
    - `progress`: a progress bar per sweep (`None`: when the output is a terminal).
    - `lanes`: seeds × points computed side by side (see [`rnnflow.run_sweep`][]).

    **Returns:**

    The [`rnnflow.experiments.Results`][].

    The run is identified by the experiment, the config and the precision (float64 or
    not). If `out` holds this run complete, it is loaded and nothing is computed; if it
    holds it unfinished (killed part-way), every sweep resumes from its last finished unit
    of work; anything else there is refused with a `FileExistsError` before any work.

    ```python
    res = run_experiment("init_scale", get_experiment("init_scale").small, out="results/init")
    ```
    """
    experiment, config = _resolve(experiment, config)
    folder = Path(out)
    ident = _results.identity(experiment.name, config, jax.config.read("jax_enable_x64"))
    state, lock = _results.claim(folder, ident)
    try:
        if state == "complete":
            try:
                return _results.load_results(folder)
            except DamagedStoreError as e:  # repaired below: run_sweep recomputes its units
                warnings.warn(f"{e.args[0].split('; run')[0]}; repairing it.", DamageWarning)
        start = time.perf_counter()
        data = {
            name: _sweep.run_sweep(sweep, folder / f"{name}.zarr", lanes=lanes, progress=progress)
            for name, sweep in experiment.sweeps(config).items()
        }
        summary = experiment.analyse(data, config)
        extra = {
            "backend": jax.default_backend(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "devices": f"{len(jax.local_devices())} JAX {jax.default_backend()} device(s)",
            "wall_time_s": round(time.perf_counter() - start, 1),
            "versions": {
                name: importlib.metadata.version(name) for name in ("rnnflow", "jax", "jaxlib")
            },
        }
        return _results.write(folder, ident, experiment, config, data, summary, extra)
    finally:
        lock.release()
