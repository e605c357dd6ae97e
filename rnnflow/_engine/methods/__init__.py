from .base import AbstractMethod as AbstractMethod
from .gradient_descent import GradientDescent as GradientDescent
from .gradient_flow import GradientFlow as GradientFlow
from .modified_flow import ModifiedFlow as ModifiedFlow
from .rosenbrock import LeastSquaresRosenbrock as LeastSquaresRosenbrock
from .stochastic_flow import StochasticFlow as StochasticFlow
from .tsit5_unrolled import UnrolledTsit5 as UnrolledTsit5
