"""Named, reproducible experiments: configs → results folders → figures."""

from .base import Experiment as Experiment
from .base import ExperimentConfig as ExperimentConfig
from .base import Outcome as Outcome
from .base import Sweep as Sweep
from .registry import EXPERIMENTS as EXPERIMENTS
from .registry import get_experiment as get_experiment
from .results import Results as Results
from .results import load_results as load_results
from .runner import run_experiment as run_experiment
