"""An RNN loss bound to its student: a function of the parameters alone, for the engine."""

import equinox as eqx
from jaxtyping import Array, Float

from .models import AbstractRNN, RNNParams


class BoundLoss(eqx.Module):
    """An RNN loss bound to its student: `loss_fn(params) -> scalar`, the function
    [`rnnflow.train`][] and [`rnnflow.train_seeds`][] train. Made by `loss.bind(model)`.

    Besides its value it offers the engine (see [`rnnflow.train`][]): its `residuals`
    (a least-squares loss), a parameter `check` run before compiling, and
    `default_metrics`: the loss, the relative imbalance $\\|Q\\|_F / \\|θ\\|^2$ and, with a
    teacher, the relative extrapolation error to 10 × `train_len`.

    **Fields:** `loss` (an [`rnnflow.ImpulseLoss`][] or [`rnnflow.SequenceLoss`][]) and
    `model` (the student).
    """

    # An rnnflow.AbstractLoss; not imported, as the losses make bound losses, not the reverse.
    loss: eqx.Module
    model: AbstractRNN

    def __call__(self, params: RNNParams) -> Float[Array, ""]:
        return self.loss(self.model, params)

    @property
    def residuals(self):
        """`params -> r` with the loss $\\sum_i r_i^2$, or `None`."""
        if self.loss.residuals is None:
            return None
        return lambda params: self.loss.residuals(self.model, params)

    def check(self, params) -> None:
        """Raise a `TypeError`/`ValueError` naming the field if `params` do not fit the model."""
        self.model.check_params(params)

    def minibatch(self, batch_size: int, *, replace: bool = True):
        """This loss trained by stochastic gradient descent: a [`rnnflow.Minibatch`][] of
        `batch_size` of its sequences per step (a [`rnnflow.SequenceLoss`][] only).

        ```python
        loss_fn = SequenceLoss.sample(teacher, 5, 1000, key=key).bind(model).minibatch(32)
        ```
        """
        from .._engine.minibatch import Minibatch

        example_loss = getattr(self.loss, "example_loss", None)
        if example_loss is None:
            raise TypeError(
                f"{type(self.loss).__name__} has no examples to draw minibatches from; a "
                "SequenceLoss does."
            )
        return Minibatch(
            eqx.Partial(_example_loss, self),
            (self.loss.xs, self.loss.ys),
            batch_size,
            replace=replace,
            full=self,
        )

    def default_metrics(self) -> dict:
        from .metrics import extrapolation_metric, imbalance_metric

        metrics = {
            "loss": lambda t, params: self(params),
            "relative_imbalance": imbalance_metric(self.model),
        }
        teacher = getattr(self.loss, "teacher", None)
        if teacher is not None:
            k = self.loss.train_len
            metrics["extrapolation"] = extrapolation_metric(
                self.model, teacher, train_len=k, horizon=10 * k
            )
        return metrics


def _example_loss(bound: BoundLoss, params, example):
    return bound.loss.example_loss(bound.model, params, example)
