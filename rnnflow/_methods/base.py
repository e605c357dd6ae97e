"""The training methods: discrete gradient descent and continuous gradient flows.

Each method is a small frozen module; [`rnnflow.train`][] hands it the model, the loss,
the initial parameters and what to save, and it returns a [`rnnflow.Trajectory`][].
All methods share one time axis (gradient descent: step × learning rate), so their
trajectories can be compared point by point.
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array

from .._models import RNNParams
from .._trajectory import Save, Stop, Trajectory


class Objective(eqx.Module):
    """One seed's training loss as a function of its parameters, in the forms the methods
    use (built by [`rnnflow.train`][] from the model and the loss):

    - `value(p)`: the loss;
    - `residuals(p)`: the vector $r$ with loss $= \\sum_i r_i^2$, or `None` when the loss
      is not written as a sum of squares;
    - `value_and_grad(p)`: the loss and its gradient, by reverse-mode autodiff;
    - `diagonal_impulse`: the targets $\\hat h_0, \\dots, \\hat h_{k-1}$ when the loss is the
      impulse loss of a diagonal single-input single-output student (whose gradient has
      a closed form that fused steps use), else `None`.
    """

    value: Callable[[RNNParams], Array]
    residuals: Callable[[RNNParams], Array] | None = None
    diagonal_impulse: Array | None = None

    def value_and_grad(self, params: RNNParams) -> tuple[Array, RNNParams]:
        return jax.value_and_grad(self.value)(params)


class AbstractMethod(eqx.Module):
    """Base of [`rnnflow.GradientDescent`][], [`rnnflow.GradientFlow`][] and
    [`rnnflow.ModifiedFlow`][]."""

    t1: eqx.AbstractVar[float]
    # Fields that only display progress: a run resumed with them changed is the same run.
    _display_only: ClassVar[tuple[str, ...]] = ()

    def settings(self, params: RNNParams) -> str:
        """Everything of this method that decides its results, as text; `params` is one
        seed's initial parameters. [`rnnflow.train_seeds`][] refuses a checkpoint written
        with other settings. Default: the type and every field but the display-only ones."""
        fields = (  # tree_pformat prints functions without their memory addresses
            f"{f.name}={eqx.tree_pformat(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if f.name not in self._display_only
        )
        return f"{type(self).__name__}({', '.join(fields)})"

    @abc.abstractmethod
    def save_times(self, save: Save) -> np.ndarray:
        """The times this method will save at (checked, in `[0, t1]`)."""

    def check(self, model, loss) -> None:
        """Raise a `TypeError` or `ValueError` if this method cannot train `model` on
        `loss` (checked before any compilation). Everything is fine by default."""

    @abc.abstractmethod
    def run(
        self,
        objective: Objective,
        params: RNNParams,
        *,
        save: Save,
        stop: Stop,
        metrics: Callable[[Array, RNNParams], dict[str, Array]],
    ) -> Trajectory:
        """Train `params` for one seed on `objective`."""
