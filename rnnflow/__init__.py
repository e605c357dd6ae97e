from ._engine.batch import train_seeds as train_seeds
from ._engine.devices import use_cpu_cores as use_cpu_cores
from ._engine.linalg import cholesky as cholesky
from ._engine.linalg import cholesky_solve as cholesky_solve
from ._engine.linalg import singular_values as singular_values
from ._engine.linalg import symmetric_eigenvalues as symmetric_eigenvalues
from ._engine.linalg import symmetric_eigh as symmetric_eigh
from ._engine.linalg import triangular_factor as triangular_factor
from ._engine.methods import AbstractMethod as AbstractMethod
from ._engine.methods import GradientDescent as GradientDescent
from ._engine.methods import GradientFlow as GradientFlow
from ._engine.methods import LeastSquaresRosenbrock as LeastSquaresRosenbrock
from ._engine.methods import ModifiedFlow as ModifiedFlow
from ._engine.methods import StochasticFlow as StochasticFlow
from ._engine.methods import UnrolledTsit5 as UnrolledTsit5
from ._engine.minibatch import Minibatch as Minibatch
from ._engine.rule import Rule as Rule
from ._engine.train import train as train
from ._engine.trajectory import Result as Result
from ._engine.trajectory import Save as Save
from ._engine.trajectory import Stop as Stop
from ._engine.trajectory import Trajectory as Trajectory
from ._lens.field_spectrum import field_eigenvalue_metric as field_eigenvalue_metric
from ._lens.field_spectrum import field_eigenvalues as field_eigenvalues
from ._lens.field_spectrum import stability_metric as stability_metric
from ._lens.field_spectrum import step_eigenvalues as step_eigenvalues
from ._lens.laziness import kernel_change_metric as kernel_change_metric
from ._lens.laziness import linearization_gap_metric as linearization_gap_metric
from ._lens.laziness import parameter_change_metric as parameter_change_metric
from ._lens.linearize import LinearizedLoss as LinearizedLoss
from ._lens.linearize import TaylorModel as TaylorModel
from ._lens.linearize import linearize as linearize
from ._lens.ntk import ntk as ntk
from ._lens.ntk import ntk_residuals as ntk_residuals
from ._lens.params import SideBySide as SideBySide
from ._lens.params import TaylorParams as TaylorParams
from ._lens.sharpness import hessian_eigenvalues as hessian_eigenvalues
from ._lens.sharpness import sharpness_metric as sharpness_metric
from ._lens.side_by_side import SideBySideLoss as SideBySideLoss
from ._lens.side_by_side import side_by_side as side_by_side
from ._rnn.bound import BoundLoss as BoundLoss
from ._rnn.diagnostics import effective_dim as effective_dim
from ._rnn.diagnostics import hankel_singular_values as hankel_singular_values
from ._rnn.diagnostics import learned_measure as learned_measure
from ._rnn.diagnostics import spectrum_distance as spectrum_distance
from ._rnn.extrapolation import extrapolation_error as extrapolation_error
from ._rnn.losses import AbstractLoss as AbstractLoss
from ._rnn.losses import ImpulseLoss as ImpulseLoss
from ._rnn.losses import SequenceLoss as SequenceLoss
from ._rnn.metrics import effective_dim_metric as effective_dim_metric
from ._rnn.metrics import extrapolation_metric as extrapolation_metric
from ._rnn.metrics import hankel_metric as hankel_metric
from ._rnn.metrics import imbalance_metric as imbalance_metric
from ._rnn.metrics import loss_metric as loss_metric
from ._rnn.models import MODELS as MODELS
from ._rnn.models import AbstractLinearRNN as AbstractLinearRNN
from ._rnn.models import AbstractRNN as AbstractRNN
from ._rnn.models import DenseRNN as DenseRNN
from ._rnn.models import DiagonalRNN as DiagonalRNN
from ._rnn.models import RNNParams as RNNParams
from ._rnn.models import SymmetricRNN as SymmetricRNN
from ._rnn.models import TanhRNN as TanhRNN
from ._rnn.models import make_model as make_model
from ._rnn.scan import associative_scan as associative_scan
from ._rnn.scan import linear_recurrence as linear_recurrence
from ._rnn.scan import sequential_scan as sequential_scan
from ._rnn.seeds import init_seeds as init_seeds
from ._rnn.teachers import Teacher as Teacher
from ._rnn.teachers import modes_teacher as modes_teacher
from ._rnn.teachers import random_teacher as random_teacher
from ._rules.feedback_alignment import FeedbackAlignment as FeedbackAlignment
from ._rules.feedback_alignment import TwoLayerLoss as TwoLayerLoss
from ._rules.oja import Oja as Oja
from ._rules.preconditioned import Preconditioned as Preconditioned
from ._sweeps.sweep import Sweep as Sweep
from ._sweeps.sweep import run_sweep as run_sweep
from ._sweeps.verify import open_results as open_results

__version__ = "0.1.0"

# One JAX CPU device per core, before JAX starts, unless the user chose otherwise (see
# `use_cpu_cores`): train_seeds and run_sweep then run on every core by default.
from ._engine.devices import default_cpu_devices as _default_cpu_devices  # noqa: E402

_default_cpu_devices()
