"""Ready-made `Save` metrics for RNN parameters: each returns `fn(t, params) -> array`.

```python
save = Save(metrics={
    "loss": loss_metric(loss_fn),
    "imbalance": imbalance_metric(model),
    "extrapolation": extrapolation_metric(model, teacher, train_len=5, horizon=50),
    "dim": effective_dim_metric(model, length=40),
})
```

The science behind them (balancedness, Hankel rank) is on the docs' science page.
"""

from .._engine.checks import check_positive_int, check_real
from .._engine.objective import Metric
from .diagnostics import effective_dim, hankel_singular_values
from .extrapolation import extrapolation_error
from .models import AbstractRNN
from .teachers import Teacher


def _check_model(model) -> None:
    if not isinstance(model, AbstractRNN):
        raise TypeError(f"`model` must be an rnnflow model; got {type(model).__name__}.")


def loss_metric(loss_fn) -> Metric:
    """The training loss `loss_fn(params)`."""
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}.")
    return lambda t, params: loss_fn(params)


def imbalance_metric(model: AbstractRNN) -> Metric:
    """$\\|Q\\|_F / (\\|A\\|_F^2 + \\|B\\|_F^2 + \\|C\\|_F^2)$ with
    $Q = AA^\\top - A^\\top A + BB^\\top - C^\\top C$: zero for a balanced student, and
    conserved (up to its normalisation) by the gradient flow of a linear RNN."""
    _check_model(model)
    return lambda t, params: model.relative_imbalance(params)


def extrapolation_metric(
    model: AbstractRNN, teacher: Teacher, *, train_len: int, horizon: int, relative: bool = True
) -> Metric:
    """[`rnnflow.extrapolation_error`][] beyond `train_len` up to `horizon` (relative by
    default)."""
    _check_model(model)
    check_positive_int("train_len", train_len)
    check_positive_int("horizon", horizon)
    if horizon <= train_len:
        raise ValueError(f"`horizon` must exceed `train_len` = {train_len}; got {horizon}.")
    return lambda t, params: extrapolation_error(
        model, params, teacher, train_len=train_len, horizon=horizon, relative=relative
    )


def hankel_metric(model: AbstractRNN, *, length: int) -> Metric:
    """The singular values of the Hankel matrix of the first `length` impulse-response
    lags ([`rnnflow.hankel_singular_values`][]), largest first."""
    _check_model(model)
    check_positive_int("length", length)
    return lambda t, params: hankel_singular_values(model.impulse_response(params, length))


def effective_dim_metric(model: AbstractRNN, *, length: int, rtol: float = 1e-3) -> Metric:
    """The effective state dimension ([`rnnflow.effective_dim`][]) of the first `length`
    impulse-response lags."""
    _check_model(model)
    check_positive_int("length", length)
    check_real("rtol", rtol, positive=True)
    return lambda t, params: effective_dim(model.impulse_response(params, length), rtol=rtol)
