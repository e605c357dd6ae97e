r"""Training losses: how a student fits its teacher on the first `train_len` lags.

Student $h_i = CA^iB$, teacher $\hat h_i$, training length $k$:

- impulse loss $L = \sum_{i<k} \|h_i - \hat h_i\|_F^2$: the population loss of the output
  at the last step of a length-$k$ sequence with whitened inputs ($E[x_t x_t^\top] = I$),
  in closed form;
- sequence loss: the same on sampled sequences. With last-step supervision its expectation
  over Gaussian inputs is the impulse loss; supervising every step weighs lag $i$ by $k - i$.

How far the student is off beyond lag $k$ is the extrapolation error
([`rnnflow.extrapolation_error`][]).

A loss is a small frozen module called as `loss(model, params) -> scalar`; bound to a
student, `loss.bind(model)` is the function of the parameters alone that
[`rnnflow.train`][] takes (a [`rnnflow.BoundLoss`][]).
"""

import abc
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._engine.checks import check_choice, check_positive_int
from .._engine.objective import check_finite
from . import fused, through_time
from .bound import BoundLoss
from .extrapolation import extrapolation_error as extrapolation_error  # its former home
from .models import AbstractRNN, DiagonalRNN, RNNParams
from .teachers import Teacher

Supervise = Literal["last", "all"]


class AbstractLoss(eqx.Module):
    """A training loss against a teacher at training length `train_len`.

    Subclasses implement `__call__(model, params) -> scalar`. A least-squares loss also
    defines `residuals(model, params) -> vector` with the loss the sum of their squares,
    which [`rnnflow.LeastSquaresRosenbrock`][] uses.
    """

    residuals = None

    teacher: eqx.AbstractVar[Teacher]
    train_len: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(self, model: AbstractRNN, params: RNNParams) -> Float[Array, ""]:
        """The loss of `params` for `model`."""

    def bind(self, model: AbstractRNN):
        """This loss for the student `model`: a function of its parameters alone, for
        [`rnnflow.train`][].

        ```python
        loss_fn = ImpulseLoss(modes_teacher([0.9], [1.0]), train_len=5).bind(DiagonalRNN(40))
        loss_fn(params)  # == ImpulseLoss(...)(model, params)
        ```
        """
        if not isinstance(model, AbstractRNN):
            raise TypeError(f"`model` must be an rnnflow model; got {type(model).__name__}.")
        self.check_model(model)
        return BoundLoss(self, model)

    def check_model(self, model: AbstractRNN) -> None:
        """Raise a `ValueError` if `model`'s input/output dims differ from the teacher's."""
        t = self.teacher.model
        if (model.in_dim, model.out_dim) != (t.in_dim, t.out_dim):
            raise ValueError(
                f"the model has (in_dim, out_dim) = ({model.in_dim}, {model.out_dim}) but the "
                f"teacher has ({t.in_dim}, {t.out_dim})."
            )


class ImpulseLoss(AbstractLoss):
    """$L = \\sum_{i<k} \\|h_i - \\hat h_i\\|_F^2$, in closed form from the impulse responses.

    ```python
    loss = ImpulseLoss(modes_teacher([0.9], [1.0]), train_len=5)
    value = loss(model, params)
    ```
    """

    teacher: Teacher
    train_len: int = eqx.field(static=True)
    target: Float[Array, "train_len out_dim in_dim"]

    def __init__(self, teacher: Teacher, train_len: int):
        if not isinstance(teacher, Teacher):
            raise TypeError(f"`teacher` must be a Teacher; got {type(teacher).__name__}.")
        self.teacher = teacher
        self.train_len = check_positive_int("train_len", train_len)
        self.target = teacher.impulse_response(self.train_len)

    def bind(self, model: AbstractRNN):
        """As [`rnnflow.AbstractLoss.bind`][]. For a diagonal single-input single-output
        student (train length ≤ 32) the bound loss also offers its gradient in closed form,
        which gradient descent then uses (see `rnnflow._rnn.fused`)."""
        bound = super().bind(model)
        return fused.DiagonalImpulseLoss(self, model) if fused_applies(bound) else bound

    def __call__(self, model: AbstractRNN, params: RNNParams) -> Float[Array, ""]:
        return jnp.sum(self.residuals(model, params) ** 2)

    def residuals(self, model: AbstractRNN, params: RNNParams) -> Float[Array, " m"]:
        """$h_i - \\hat h_i$ for $i < k$, flattened: $k \\cdot$ out_dim $\\cdot$ in_dim."""
        self.check_model(model)
        h = model.impulse_response(params, self.train_len)
        return jnp.ravel(h - self.target)


class SequenceLoss(AbstractLoss):
    """Mean squared error of the student's outputs on fixed input sequences.

    **Fields:**

    - `teacher`, `xs` (`(N, k, in_dim)` inputs); the targets `ys` are the teacher's outputs.
    - `supervise`: `"last"` (the output at step $k-1$ only; its expectation over whitened
      inputs is [`rnnflow.ImpulseLoss`][]) or `"all"` (the sum over all $k$ steps).

    The loss is $\\frac1N \\sum_n \\sum_{t} \\|y^{(n)}_t - \\hat y^{(n)}_t\\|^2$ over the
    supervised steps $t$. Draw Gaussian inputs with [`rnnflow.SequenceLoss.sample`][].
    """

    teacher: Teacher
    xs: Float[Array, "N train_len in_dim"]
    ys: Float[Array, "N train_len out_dim"]
    supervise: Supervise = eqx.field(static=True)

    def __init__(self, teacher: Teacher, xs: Array, *, supervise: Supervise = "last"):
        if not isinstance(teacher, Teacher):
            raise TypeError(f"`teacher` must be a Teacher; got {type(teacher).__name__}.")
        in_dim = teacher.model.in_dim
        if getattr(xs, "ndim", None) != 3 or xs.shape[2] != in_dim or 0 in xs.shape:
            raise ValueError(
                f"`xs` must have shape (N, train_len, in_dim) = (N, k, {in_dim}) with N, k ≥ 1;"
                f" got {getattr(xs, 'shape', type(xs).__name__)}."
            )
        # Checked before the teacher runs on `xs`: bad input fails before any compilation.
        self.supervise = check_choice("supervise", supervise, ("last", "all"))
        check_finite("xs", xs)
        self.teacher = teacher
        self.xs = jnp.asarray(xs)
        self.ys = jax.vmap(teacher)(self.xs)

    @property
    def train_len(self) -> int:
        return self.xs.shape[1]

    @classmethod
    def sample(
        cls,
        teacher: Teacher,
        train_len: int,
        num_sequences: int,
        *,
        key: PRNGKeyArray,
        supervise: Supervise = "last",
    ) -> "SequenceLoss":
        """A sequence loss on `num_sequences` i.i.d. $N(0, I)$ input sequences of length
        `train_len`.

        ```python
        loss = SequenceLoss.sample(teacher, 5, 1000, key=jax.random.key(1))
        ```
        """
        check_positive_int("train_len", train_len)
        check_positive_int("num_sequences", num_sequences)
        shape = (num_sequences, train_len, teacher.model.in_dim)
        return cls(teacher, jax.random.normal(key, shape), supervise=supervise)

    def bind(self, model: AbstractRNN):
        """As [`rnnflow.AbstractLoss.bind`][]. For a [`rnnflow.TanhRNN`][] or
        [`rnnflow.DenseRNN`][] student (train length ≤ 32) the bound loss also offers its
        gradient by backpropagation through time written out, over all sequences at once,
        which gradient descent then uses (see `rnnflow._rnn.through_time`)."""
        bound = super().bind(model)
        if through_time.applies(self, model):
            return through_time.DenseSequenceLoss(self, model)
        return bound

    def __call__(self, model: AbstractRNN, params: RNNParams) -> Float[Array, ""]:
        return jnp.sum(self.residuals(model, params) ** 2)

    def residuals(self, model: AbstractRNN, params: RNNParams) -> Float[Array, " m"]:
        """The supervised errors $(y^{(n)}_t - \\hat y^{(n)}_t) / \\sqrt N$, flattened."""
        self.check_model(model)
        preds = jax.vmap(model, in_axes=(None, 0))(params, self.xs)
        err = preds - self.ys
        if self.supervise == "last":
            err = err[:, -1]
        return jnp.ravel(err) / jnp.sqrt(self.xs.shape[0])

    def example_loss(self, model: AbstractRNN, params: RNNParams, example) -> Float[Array, ""]:
        """The loss of one sequence `example = (x, y)`: its squared errors at the supervised
        steps. The loss is their mean over the `N` sequences."""
        x, y = example
        err = model(params, x) - y
        return jnp.sum((err[-1] if self.supervise == "last" else err) ** 2)


def fused_applies(bound: BoundLoss) -> bool:
    """Whether `bound` is the impulse loss of a diagonal single-input single-output student
    with train length ≤ `fused.MAX_TRAIN_LEN`, whose gradient has the closed form of
    `rnnflow._rnn.fused`. The loss decides, so that the fused step need not know the losses."""
    model = bound.model
    return (
        type(bound.loss) is ImpulseLoss
        and isinstance(model, DiagonalRNN)
        and model.in_dim == model.out_dim == 1
        and bound.loss.train_len <= fused.MAX_TRAIN_LEN
    )
