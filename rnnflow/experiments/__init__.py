"""Named, reproducible experiments: a config → sweeps → labelled stores → a summary and a
figure, in a results folder."""

from .base import Experiment as Experiment
from .base import ExperimentConfig as ExperimentConfig
from .registry import EXPERIMENTS as EXPERIMENTS
from .registry import get_experiment as get_experiment
from .results import Results as Results
from .results import load_results as load_results
from .runner import run_experiment as run_experiment
from .summary import Summary as Summary
