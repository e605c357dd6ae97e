r"""How lazy a run is: `Save` metrics of a model beside its linearization.

Each returns `fn(t, params) -> scalar` for `Save(metrics=...)`. They read the expansion
point $θ_0$ from the parameters ([`rnnflow.TaylorParams`][], [`rnnflow.SideBySide`][]),
which carry it per seed: under [`rnnflow.train_seeds`][] each seed is measured against its
own initialization.

```python
save = Save(metrics={
    "parameter_change": parameter_change_metric(),   # ‖θ_t − θ₀‖ / ‖θ₀‖
    "kernel_change": kernel_change_metric(loss_fn),  # ‖K_t − K₀‖_F / ‖K₀‖_F
    "gap": linearization_gap_metric(loss_fn),        # ‖r(θ_t) − r_lin(θ₀, δ_t)‖
})
traj = train_seeds(side_by_side(loss_fn), SideBySide(params0), method, save=save)
```
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._engine.objective import Metric
from .ntk import ntk
from .params import SideBySide, TaylorParams, _check_side_by_side
from .taylor import _check_callable, _output_fn, _taylor


def _norm(tree):
    """The Euclidean norm of all the floating-point arrays of `tree` together (a complex
    entry counts as its real and imaginary parts)."""
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.sqrt(sum(jnp.sum(jnp.real(x * jnp.conj(x))) for x in leaves))


def _tiny(x):
    return jnp.finfo(x.dtype).tiny


def parameter_change_metric(*, relative: bool = True) -> Metric:
    """$\\|θ_t - θ_0\\| / \\|θ_0\\|$: how far the parameters have moved from where they
    started (the Euclidean norm over all floating-point arrays together).

    Of a [`rnnflow.SideBySide`][] run: the real model's $θ_t$ against the expansion point
    $θ_0$. Of a linearized run ([`rnnflow.TaylorParams`][]): $\\|δ_t\\| / \\|θ_0\\|$.
    Small in the kernel regime, of order one (or more) in the rich regime.

    **Arguments:**

    - `relative`: divide by $\\|θ_0\\|$ (default); else the distance $\\|θ_t - θ_0\\|$.

    **Returns:**

    `fn(t, params) -> scalar` for `Save(metrics=...)`.

    ```python
    save = Save(metrics={"parameter_change": parameter_change_metric()})
    ```
    """
    if not isinstance(relative, bool):
        raise TypeError(f"`relative` must be a bool; got {relative!r}.")

    def fn(t, params):
        if isinstance(params, SideBySide):
            theta0 = params.linear.theta0
            moved = jax.tree.map(
                jnp.subtract,
                eqx.filter(params.real, eqx.is_inexact_array),
                eqx.filter(theta0, eqx.is_inexact_array),
            )
        elif isinstance(params, TaylorParams):
            theta0, moved = params.theta0, params.delta
        else:
            raise TypeError(
                "parameter_change_metric reads θ₀ from SideBySide or TaylorParams "
                f"parameters; got {type(params).__name__}."
            )
        dist = _norm(moved)
        if not relative:
            return dist
        size = _norm(theta0)
        return dist / jnp.maximum(size, _tiny(size))

    return fn


def kernel_change_metric(f) -> Metric:
    """$\\|K(θ_t) - K(θ_0)\\|_F / \\|K(θ_0)\\|_F$: how far the real model's neural tangent
    kernel ([`rnnflow.ntk`][]) has moved from the one its linearization trains with (which
    never changes). Near zero in the kernel regime.

    **Arguments:**

    - `f`: the function whose kernel to follow: a loss that offers `residuals` (the training
      outputs), or any function of the parameters.

    **Returns:**

    `fn(t, params) -> scalar` for `Save(metrics=...)` of a run over
    [`rnnflow.SideBySide`][] parameters. Each save forms two kernels ($J$ at $θ_t$ and at
    $θ_0$).

    ```python
    save = Save(metrics={"kernel_change": kernel_change_metric(loss_fn)})
    ```
    """
    _check_callable("f", f)

    def fn(t, params):
        _check_side_by_side(params)
        k0 = ntk(f, params.linear.theta0)
        change = jnp.linalg.norm(ntk(f, params.real) - k0)
        size = jnp.linalg.norm(k0)
        return change / jnp.maximum(size, _tiny(size))

    return fn


def linearization_gap_metric(f) -> Metric:
    """$\\|f(θ_t) - f_{\\mathrm{lin}}(θ_0, δ_t)\\|$: the distance between the real model's
    outputs and its linearization's, each at its own point of its own run (Euclidean norm
    over all outputs).

    **Arguments:**

    - `f`: a function of the parameters (e.g. the impulse response to a long horizon, to
      compare what the two extrapolate), or a loss that offers `residuals` (the gap of the
      training residuals, which is that of the outputs: the targets cancel).

    **Returns:**

    `fn(t, params) -> scalar` for `Save(metrics=...)` of a run over
    [`rnnflow.SideBySide`][] parameters. Zero at $t = 0$.

    ```python
    horizon = lambda p: model.impulse_response(p, 50)
    save = Save(metrics={"gap": linearization_gap_metric(horizon)})
    ```
    """
    _check_callable("f", f)
    out = _output_fn(f)

    def fn(t, params):
        _check_side_by_side(params)
        real = ravel_pytree(out(params.real))[0]
        linear = ravel_pytree(_taylor(out, params.linear))[0]
        return jnp.linalg.norm(real - linear)

    return fn
