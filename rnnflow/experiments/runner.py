"""Running a named experiment into a results folder."""

import os
from pathlib import Path

import jax

from .base import Experiment, ExperimentConfig
from .registry import get_experiment
from .results import Results, existing_results, write_results


def run_experiment(
    experiment: str | Experiment,
    config: ExperimentConfig | None = None,
    *,
    out: str | os.PathLike,
    progress: bool = False,
) -> Results:
    """Run `experiment` with `config` (default: its full-scale config) into the folder `out`.

    If `out` already holds this experiment's complete results for the same config, they are
    loaded and nothing is computed. If it holds anything else's results, a `FileExistsError`
    is raised before any work: nothing saved is overwritten.

    ```python
    res = run_experiment("init_scale", get_experiment("init_scale").small, out="results/init")
    ```
    """
    if isinstance(experiment, str):
        experiment = get_experiment(experiment)
    config = experiment.config_type() if config is None else config
    if not isinstance(config, experiment.config_type):
        raise TypeError(
            f"the config for {experiment.name!r} must be a {experiment.config_type.__name__}; "
            f"got {type(config).__name__}."
        )
    folder = Path(out)
    done = existing_results(folder, experiment, config)
    if done is not None:
        if progress:
            print(f"{experiment.name}: complete results found in {folder}; nothing to do.")
        return done
    outcome = experiment.run(config, progress)
    dtype = "float64" if jax.config.read("jax_enable_x64") else "float32"
    return write_results(
        folder, experiment, config, outcome, backend=jax.default_backend(), dtype=dtype
    )
