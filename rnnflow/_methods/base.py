"""The training methods: discrete gradient descent and continuous gradient flows.

Each method is a small frozen module; [`rnnflow.train`][] hands it the model, the loss,
the initial parameters and what to save, and it returns a [`rnnflow.Trajectory`][].
All methods share one time axis (gradient descent: step × learning rate), so their
trajectories can be compared point by point.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import numpy as np
from jaxtyping import Array

from .._models import RNNParams
from .._trajectory import Save, Stop, Trajectory


class AbstractMethod(eqx.Module):
    """Base of [`rnnflow.GradientDescent`][], [`rnnflow.GradientFlow`][] and
    [`rnnflow.ModifiedFlow`][]."""

    t1: eqx.AbstractVar[float]

    @abc.abstractmethod
    def save_times(self, save: Save) -> np.ndarray:
        """The times this method will save at (checked, in `[0, t1]`)."""

    @abc.abstractmethod
    def run(
        self,
        objective: Callable[[RNNParams], Array],
        value_and_grad: Callable[[RNNParams], tuple[Array, RNNParams]],
        params: RNNParams,
        *,
        save: Save,
        stop: Stop,
        metrics: Callable[[Array, RNNParams], dict[str, Array]],
    ) -> Trajectory:
        """Train `params` for one seed on the loss `objective(p)`, whose value and gradient
        together are `value_and_grad(p)`."""
