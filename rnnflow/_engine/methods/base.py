"""The training methods: discrete gradient descent and continuous gradient flows.

Each method is a small frozen module; [`rnnflow.train`][] hands it the loss (as an
`Objective` over the trainable leaves), the initial parameters and what to save, and it
returns a [`rnnflow.Trajectory`][]. All methods share one time axis (gradient descent: the
sum of its step sizes), so their trajectories can be compared point by point.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import numpy as np
from jaxtyping import Array, PyTree

from ..objective import Objective
from ..trajectory import Save, Stop, Trajectory


class AbstractMethod(eqx.Module):
    """Base of [`rnnflow.GradientDescent`][], [`rnnflow.GradientFlow`][] and
    [`rnnflow.ModifiedFlow`][]."""

    t1: eqx.AbstractVar[float]

    @abc.abstractmethod
    def save_times(self, save: Save) -> np.ndarray:
        """The times this method will save at (checked, in `[0, t1]`)."""

    def check(self, loss_fn, stop: Stop) -> None:
        """Raise a `TypeError` or `ValueError` if this method cannot train `loss_fn` with
        `stop` (checked before any compilation). Everything is fine by default."""

    def needs_key(self, loss_fn) -> bool:
        """Whether training `loss_fn` draws random numbers (and needs a PRNG key)."""
        return False

    def quiet(self) -> "AbstractMethod":
        """This method without what only displays progress: the same computation."""
        return self

    def with_progress(self) -> "AbstractMethod":
        """This method showing its progress where it can (the same computation)."""
        return self

    @abc.abstractmethod
    def run(
        self,
        objective: Objective,
        params: PyTree,
        *,
        save: Save,
        stop: Stop,
        metrics: Callable[[Array, PyTree], dict[str, Array]],
        key=None,
    ) -> Trajectory:
        """Train the trainable leaves `params` of one seed on `objective` (with `key` where
        `needs_key`); the trajectory's parameters are trainable leaves too (the caller puts
        the fixed ones back)."""
