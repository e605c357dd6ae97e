r"""The extrapolation error: how far a student is off beyond the lags it was trained on.

Student $h_i = CA^iB$, teacher $\hat h_i$, training length $k$, horizon $q > k$: the error is
$\sum_{k \le i < q} \|h_i - \hat h_i\|_F^2$, absolute or relative to
$\sum_{k \le i < q} \|\hat h_i\|_F^2$.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._engine.checks import check_positive_int
from .models import AbstractRNN, RNNParams
from .teachers import Teacher


def extrapolation_error(
    model: AbstractRNN,
    params: RNNParams,
    teacher: Teacher,
    *,
    train_len: int,
    horizon: int,
    relative: bool = False,
) -> Float[Array, ""]:
    """$\\sum_{k \\le i < q} \\|h_i - \\hat h_i\\|_F^2$: how far the student is off beyond training.

    **Arguments:**

    - `model`, `params`: the student.
    - `teacher`: the [`rnnflow.Teacher`][].
    - `train_len`: $k$, the training length.
    - `horizon`: $q > k$, the length extrapolated to (e.g. $10k$).
    - `relative`: divide by $\\sum_{k \\le i < q} \\|\\hat h_i\\|_F^2$.

    ```python
    err = extrapolation_error(model, params, teacher, train_len=5, horizon=50, relative=True)
    ```
    """
    check_positive_int("train_len", train_len)
    check_positive_int("horizon", horizon)
    if horizon <= train_len:
        raise ValueError(f"`horizon` must exceed `train_len` = {train_len}; got {horizon}.")
    h = model.impulse_response(params, horizon)[train_len:]
    target = teacher.impulse_response(horizon)[train_len:]
    err = jnp.sum((h - target) ** 2)
    if relative:
        err = err / jnp.maximum(jnp.sum(target**2), jnp.finfo(target.dtype).tiny)
    return err
