"""The parameters of the linearization lenses: [`rnnflow.TaylorParams`][] (the expansion
point $θ_0$ and the displacement $δ$, which travel together so that each seed is linearized
at its own start) and [`rnnflow.SideBySide`][] (a model's parameters beside them)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree


def _zeros(theta0):
    return jax.tree.map(jnp.zeros_like, eqx.filter(theta0, eqx.is_inexact_array))


def _check_delta(theta0, delta) -> None:
    origin = eqx.filter(theta0, eqx.is_inexact_array)
    if jax.tree.structure(delta) != jax.tree.structure(origin):
        raise ValueError(
            "`delta` must have the structure of the floating-point arrays of `theta0` "
            f"(None elsewhere); got {jax.tree.structure(delta)}, expected "
            f"{jax.tree.structure(origin)}."
        )
    pairs = zip(jax.tree_util.tree_leaves_with_path(delta), jax.tree.leaves(origin), strict=True)
    for (path, d), x in pairs:
        if getattr(d, "shape", None) != x.shape or getattr(d, "dtype", None) != x.dtype:
            raise ValueError(
                f"`delta{jax.tree_util.keystr(path)}` must match `theta0` in shape and dtype, "
                f"{x.shape} {x.dtype}; got {getattr(d, 'shape', type(d).__name__)} "
                f"{getattr(d, 'dtype', '')}."
            )


class TaylorParams(eqx.Module):
    """The parameters of a linearized model: the expansion point $θ_0$ and the displacement
    $δ = θ - θ_0$ (`rnnflow._lens.linearize` says why $θ_0$ travels with them).

    **Arguments:**

    - `theta0`: $θ_0$, any parameter pytree (one seed, or with a leading seed axis).
    - `delta`: $δ$, the floating-point arrays of `theta0`'s structure (`None` at its other
      leaves). Default: zeros, the start of a linearized run.

    `params.theta` is $θ_0 + δ$. Train `TaylorParams(params0)` with a loss of
    [`rnnflow.linearize`][]; every method leaves `theta0` unchanged.

    ```python
    p = TaylorParams({"w": jnp.ones(3)})
    p.delta  # {'w': Array([0., 0., 0.])}
    ```
    """

    theta0: PyTree
    delta: PyTree

    def __init__(self, theta0: PyTree, delta: PyTree | None = None):
        if not jax.tree.leaves(eqx.filter(theta0, eqx.is_inexact_array)):
            raise ValueError("`theta0` must hold at least one floating-point array.")
        if delta is None:
            delta = _zeros(theta0)
        else:
            _check_delta(theta0, delta)
        self.theta0 = theta0
        self.delta = delta

    @property
    def theta(self) -> PyTree:
        """$θ_0 + δ$, in the structure of `theta0`."""
        return eqx.apply_updates(self.theta0, self.delta)


def _check_taylor_params(params) -> None:
    if not isinstance(params, TaylorParams):
        raise TypeError(
            "a linearized model takes TaylorParams (the expansion point and the displacement): "
            f"start a run from `TaylorParams(params0)`; got {type(params).__name__}."
        )


class SideBySide(eqx.Module):
    """A model's parameters $θ$ beside its linearization's [`rnnflow.TaylorParams`][], the
    parameters of [`rnnflow.side_by_side`][].

    **Arguments:**

    - `real`: $θ$, the model's parameters (one seed, or with a leading seed axis).
    - `linear`: the linearized model's parameters. Default: `TaylorParams(real)`, the
      linearization at `real` with $δ = 0$: both start together.
    """

    real: PyTree
    linear: TaylorParams

    def __init__(self, real: PyTree, linear: TaylorParams | None = None):
        if linear is None:
            linear = TaylorParams(real)
        elif not isinstance(linear, TaylorParams):
            raise TypeError(f"`linear` must be TaylorParams; got {type(linear).__name__}.")
        self.real = real
        self.linear = linear


def _check_side_by_side(params) -> None:
    if not isinstance(params, SideBySide):
        raise TypeError(
            "a side-by-side run takes SideBySide parameters: start it from "
            f"`SideBySide(params0)`; got {type(params).__name__}."
        )
