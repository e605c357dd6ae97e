r"""Sharpness: the top eigenvalues of the loss's Hessian, matrix-free, as a `Save` metric.

Gradient descent with step $η$ is stable near a minimum only while the sharpness
$λ_{\max}(\nabla^2 L) < 2/η$. On many losses it rises during training (progressive
sharpening) until it reaches $2/η$, then hovers there while the loss keeps falling, not
monotonically (the edge of stability; Cohen et al., 2021): where gradient descent leaves
the gradient flow.

The eigenvalues come from the Lanczos iteration on Hessian-vector products
($Hv$ = the forward-mode derivative of the gradient along $v$: one gradient's cost, no
Hessian formed), with full reorthogonalization, from a fixed start vector (the same for
every seed, so the metric is deterministic). After $m$ iterations the largest eigenvalues
of the $m \times m$ tridiagonal matrix approximate the Hessian's largest; with $m = n$
(the number of parameters) they are the Hessian's, up to rounding.

For complex parameters the Hessian is that of the loss as a function of their real and
imaginary parts (the real split the methods train; $n$ counts both parts): the
sharpness that decides the stability of gradient descent on them.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree

from .._engine.checks import check_positive_int
from .._engine.linalg import symmetric_eigenvalues
from .._engine.objective import Metric, split_real
from .._engine.real_view import to_complex


def hessian_eigenvalues(loss_fn, params: PyTree, *, k: int = 1, iters: int | None = None):
    """The `k` largest eigenvalues of $\\nabla^2 L$ at `params` (one seed; vmap for many),
    largest first, by `iters` Lanczos iterations (default min(n, max(40, 3k)), n the
    number of parameters; a complex parameter counts as its real and imaginary parts, and
    the Hessian is the one in them).

    ```python
    top = hessian_eigenvalues(loss_fn, params, k=3)  # (3,)
    ```
    """
    check_positive_int("k", k)
    trainable, fixed = split_real(params)
    flat, unravel = ravel_pytree(trainable)
    n = flat.size
    if k > n:
        raise ValueError(f"`k` = {k} exceeds the {n} parameters.")
    m = min(n, max(40, 3 * k)) if iters is None else min(n, check_positive_int("iters", iters))
    if m < k:
        raise ValueError(f"`iters` = {m} gives fewer than `k` = {k} eigenvalues.")

    return _top(loss_fn, flat, unravel, fixed, k, m)


@eqx.filter_jit
def _top(loss_fn, flat, unravel, fixed, k: int, m: int):
    def grad(x):
        return jax.grad(lambda y: loss_fn(eqx.combine(to_complex(unravel(y)), fixed)))(x)

    def hvp(v):
        return jax.jvp(grad, (flat,), (v,))[1]

    return _lanczos(hvp, flat.size, m, flat.dtype)[::-1][:k]


def _lanczos(hvp, n: int, m: int, dtype) -> Float[Array, " m"]:
    """Eigenvalues (ascending) of the m × m Lanczos matrix of the symmetric operator `hvp`."""
    tiny = jnp.finfo(dtype).eps
    # A fixed, deterministic start; later vectors after a breakdown (an invariant subspace
    # found) are fresh directions, orthogonalized like the others.
    starts = jax.random.normal(jax.random.key(0), (m, n), dtype)
    basis = jnp.zeros((m, n), dtype)

    def orthogonalize(w, basis):
        for _ in range(2):  # twice is enough (Kahan, Parlett)
            w = w - basis.T @ (basis @ w)
        return w

    def body(j, carry):
        basis, alphas, betas, v, beta_prev = carry
        basis = basis.at[j].set(v)
        w = hvp(v)
        alpha = jnp.dot(w, v)
        w = orthogonalize(w, basis)
        beta = jnp.linalg.norm(w)
        broke = beta <= tiny * jnp.maximum(jnp.abs(alpha), 1.0)
        fresh = orthogonalize(starts[(j + 1) % m], basis)
        nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / jnp.where(broke, 1, beta))
        beta = jnp.where(broke, 0.0, beta)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(beta), nxt, beta

    v0 = starts[0] / jnp.linalg.norm(starts[0])
    zeros = jnp.zeros(m, dtype)
    _, alphas, betas, _, _ = jax.lax.fori_loop(
        0, m, body, (basis, zeros, zeros, v0, jnp.zeros((), dtype))
    )
    off = betas[:-1]
    t = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    finite = jnp.all(jnp.isfinite(t))
    # A non-finite Hessian (a diverged seed) gives NaN. Jacobi rotations, not LAPACK: as a
    # save metric it then leaves every CPU device in use.
    values = symmetric_eigenvalues(jnp.where(finite, t, jnp.zeros_like(t)))
    return jnp.where(finite, values, jnp.nan)


def sharpness_metric(loss_fn, *, k: int = 1, iters: int | None = None) -> Metric:
    """A `Save` metric: the `k` largest Hessian eigenvalues of `loss_fn` at each save,
    shape `(k,)` ([`rnnflow.hessian_eigenvalues`][]).

    ```python
    save = Save(num=101, metrics={"loss": loss_metric(loss_fn),
                                  "sharpness": sharpness_metric(loss_fn, k=2)})
    ```
    """
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable; got {type(loss_fn).__name__}.")
    check_positive_int("k", k)
    if iters is not None:
        check_positive_int("iters", iters)
    return lambda t, params: hessian_eigenvalues(loss_fn, params, k=k, iters=iters)
