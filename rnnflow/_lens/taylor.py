r"""The first-order Taylor model $f(θ_0) + J(θ_0)δ$ by one Jacobian-vector product, and the
centered model: the arithmetic that the linearized loss, side-by-side runs, the kernel and
the laziness metrics share (see `rnnflow._lens.linearize`)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._engine.objective import offered
from .params import TaylorParams, _check_taylor_params


def _output_fn(f) -> Callable:
    """The function whose Jacobian is meant: a least-squares loss's residuals, else `f`."""
    own = offered(f, "residuals")
    return f if own is None else own


def _check_callable(name: str, f) -> None:
    if not callable(f) and offered(f, "residuals") is None:
        raise TypeError(
            f"`{name}` must be a function of the parameters (or a loss that offers "
            f"`residuals`); got {type(f).__name__}."
        )


def _held(theta0):
    """`theta0` with its arrays held constant: zero gradient, so every method keeps it."""
    return jax.tree.map(
        lambda x: jax.lax.stop_gradient(x) if eqx.is_inexact_array(x) else x, theta0
    )


def _origin(theta0):
    """`theta0` with its floating-point arrays zero: the parameters at which a model whose
    output is linear in a factor (an RNN's $C$) outputs nothing."""
    return jax.tree.map(lambda x: jnp.zeros_like(x) if eqx.is_inexact_array(x) else x, theta0)


def _taylor(fn: Callable, params: TaylorParams, *, centered: bool = False):
    """$f(θ_0) + J(θ_0)δ$ by one Jacobian-vector product (the Jacobian is never formed);
    centered, $f(0) + J(θ_0)δ$ (see `_centered`)."""
    _check_taylor_params(params)
    diff, static = eqx.partition(_held(params.theta0), eqx.is_inexact_array)
    f0, jd = jax.jvp(lambda d: fn(eqx.combine(d, static)), (diff,), (params.delta,))
    if centered:
        f0 = fn(_origin(params.theta0))
    return jax.tree.map(jnp.add, f0, jd)


def _centered(fn: Callable, theta, theta0):
    """$f(θ) - f(θ_0) + f(0)$ with $θ_0$ held (zero gradient, so every method keeps it):
    the centered model (Chizat, Oyallon & Bach 2019), $f(θ) - f(θ_0)$ for a model with
    $f(0) = 0$. Of a least-squares loss's residuals $r = f - y$ it is the same expression,
    $r(θ) - r(θ_0) + r(0) = f(θ) - f(θ_0) + f(0) - y$; at $θ = θ_0$ it is $f(0)$ exactly,
    and its Jacobian in $θ$ is $f$'s."""
    moved = jax.tree.map(jnp.subtract, fn(theta), fn(_held(theta0)))
    return jax.tree.map(jnp.add, moved, fn(_origin(theta0)))
