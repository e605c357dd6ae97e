"""Running a named experiment into a results folder."""

import json
import os
import shutil
from pathlib import Path

import jax

from .._files import atomic_write
from .base import Experiment, ExperimentConfig, Sweep
from .registry import get_experiment
from .results import Results, existing_results, write_results


def run_experiment(
    experiment: str | Experiment,
    config: ExperimentConfig | None = None,
    *,
    out: str | os.PathLike,
    progress: bool = False,
    chunk_size: int | None = None,
    lanes: int | None = None,
) -> Results:
    """Run `experiment` with `config` (default: its full-scale config) into the folder `out`.

    If `out` already holds this experiment's complete results for the same config, they are
    loaded and nothing is computed. If it holds anything else's results, a `FileExistsError`
    is raised before any work: nothing saved is overwritten.

    While it runs, finished training runs are checkpointed in `out/.partial/` (in chunks of
    `chunk_size` seeds, default all at once; `lanes` seeds are computed side by side on each
    device, see [`rnnflow.train_seeds`][]). Killed at any point and called
    again with the same arguments, it resumes from them and ends with the same results;
    the checkpoints are removed once the results are written.

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
    workdir = folder / ".partial"
    _claim_workdir(workdir, experiment, config)
    sweep = Sweep(progress=progress, workdir=workdir, chunk_size=chunk_size, lanes=lanes)
    outcome = experiment.run(config, sweep)
    dtype = "float64" if jax.config.read("jax_enable_x64") else "float32"
    results = write_results(
        folder, experiment, config, outcome, backend=jax.default_backend(), dtype=dtype
    )
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def _claim_workdir(workdir: Path, experiment: Experiment, config: ExperimentConfig) -> None:
    """Make `workdir` this run's, or check that the unfinished run it holds is this one."""
    owner = {"experiment": experiment.name, "config": config.to_dict()}
    path = workdir / "run.json"
    if path.exists():
        if json.loads(path.read_text()) != owner:
            raise FileExistsError(
                f"{workdir.parent} holds an unfinished run of another experiment or config "
                f"({path}); choose another output folder, or delete {workdir} to discard it."
            )
        return
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(owner).encode()))
