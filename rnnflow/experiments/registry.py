"""The named experiments, by name."""

from . import (
    counterexample,
    edge_of_stability,
    feedback_alignment,
    finite_step,
    init_scale,
    lazy_rich,
    learning_dynamics,
    moment_threshold,
    nonlinear,
    small_step,
)
from .base import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        init_scale.EXPERIMENT,
        moment_threshold.EXPERIMENT,
        small_step.EXPERIMENT,
        finite_step.EXPERIMENT,
        counterexample.EXPERIMENT,
        learning_dynamics.EXPERIMENT,
        nonlinear.EXPERIMENT,
        lazy_rich.EXPERIMENT,
        edge_of_stability.EXPERIMENT,
        feedback_alignment.EXPERIMENT,
    )
}


def get_experiment(name: str) -> Experiment:
    """The experiment called `name`; a `ValueError` lists the known names otherwise."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known experiments: {sorted(EXPERIMENTS)}.")
    return EXPERIMENTS[name]
