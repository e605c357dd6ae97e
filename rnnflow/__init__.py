from ._diagnostics import effective_dim as effective_dim
from ._diagnostics import hankel_singular_values as hankel_singular_values
from ._diagnostics import learned_measure as learned_measure
from ._diagnostics import spectrum_distance as spectrum_distance
from ._losses import AbstractLoss as AbstractLoss
from ._losses import extrapolation_error as extrapolation_error
from ._losses import ImpulseLoss as ImpulseLoss
from ._losses import SequenceLoss as SequenceLoss
from ._methods import AbstractMethod as AbstractMethod
from ._methods import GradientDescent as GradientDescent
from ._methods import GradientFlow as GradientFlow
from ._methods import ModifiedFlow as ModifiedFlow
from ._models import AbstractLinearRNN as AbstractLinearRNN
from ._models import AbstractRNN as AbstractRNN
from ._models import DenseRNN as DenseRNN
from ._models import DiagonalRNN as DiagonalRNN
from ._models import make_model as make_model
from ._models import MODELS as MODELS
from ._models import RNNParams as RNNParams
from ._models import SymmetricRNN as SymmetricRNN
from ._models import TanhRNN as TanhRNN
from ._scan import associative_scan as associative_scan
from ._scan import linear_recurrence as linear_recurrence
from ._scan import sequential_scan as sequential_scan
from ._teachers import modes_teacher as modes_teacher
from ._teachers import random_teacher as random_teacher
from ._teachers import Teacher as Teacher

from ._train import init_seeds as init_seeds
from ._train import train as train
from ._train import train_seeds as train_seeds
from ._trajectory import Result as Result
from ._trajectory import Save as Save
from ._trajectory import Stop as Stop
from ._trajectory import Trajectory as Trajectory
from .experiments import load_results as load_results
from .experiments import run_experiment as run_experiment

__version__ = "0.1.0"

