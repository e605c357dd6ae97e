r"""The stability of a rule's discrete map: eigenvalues of the field's Jacobian $DF$.

A step of gradient descent on a rule, $θ \mapsto θ + ηF(θ)$, has Jacobian $I + η\,DF$; near
a fixed point of the field it is linearly stable while every eigenvalue $λ_i$ of $DF$
satisfies $|1 + ηλ_i| < 1$ (neutral at $=1$: the flat directions, $λ = 0$, of an
overparameterized model). For a loss, $DF = -\nabla^2 L$ is symmetric with real
eigenvalues and the condition is the sharpness's $λ_{\max}(\nabla^2 L) < 2/η$; a general
field's $DF$ is not symmetric and its eigenvalues are complex: a rotation ($λ = a \pm ib$,
$a < 0$) that the flow damps is unstable for descent once $η > 2|a|/(a^2 + b^2)$.

**How they are computed.** With $n$ parameters, `method="dense"` forms $DF$ from $n$
forward-mode derivatives (`jax.jacfwd`) and takes all its eigenvalues (LAPACK's `geev`,
$O(n^3)$); `method="arnoldi"` runs `iters` steps of the Arnoldi iteration on
Jacobian-vector products (`jax.jvp`, one field evaluation's cost each, no matrix formed),
with full reorthogonalization from a fixed start vector (the same for every seed: the
metric is deterministic), and returns the Ritz values of the `iters` × `iters` Hessenberg
matrix, whose largest in modulus approximate those of $DF$ (with `iters` = $n$ they are
$DF$'s, up to rounding). `"auto"` (default) is dense up to 64 parameters and Arnoldi
above. The stability metric runs the same on the step's Jacobian $I + η\,DF$, whose
largest eigenvalues in modulus are exactly the $|1 + ηλ_i|$ that decide stability (on
$DF$ itself Arnoldi would find the largest $|λ_i|$, which for a small η need not be the
least stable).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Complex, PyTree

from .._engine.checks import check_choice, check_positive_int, check_real
from .._engine.objective import Metric, Objective, split

DENSE_UP_TO = 64


def _plan(params, k: int, method: str, iters: int | None):
    check_positive_int("k", k)
    check_choice("method", method, ("auto", "dense", "arnoldi"))
    n = ravel_pytree(split(params)[0])[0].size
    if k > n:
        raise ValueError(f"`k` = {k} exceeds the {n} parameters.")
    if method == "auto":
        method = "dense" if n <= DENSE_UP_TO else "arnoldi"
    m = min(n, max(40, 3 * k)) if iters is None else min(n, check_positive_int("iters", iters))
    if method == "arnoldi" and m < k:
        raise ValueError(f"`iters` = {m} gives fewer than `k` = {k} eigenvalues.")
    return method, m


def field_eigenvalues(
    rule, params: PyTree, *, k: int = 1, method: str = "auto", iters: int | None = None
) -> Complex[Array, " k"]:
    """The `k` eigenvalues of largest modulus of the Jacobian $DF$ of a rule's field at
    `params` (one seed; vmap for many), complex, in decreasing modulus.

    **Arguments:**

    - `rule`: a [`rnnflow.Rule`][] (or anything offering `direction`), or a loss, whose
      field is $F = -\\nabla L$ ($DF = -\\nabla^2 L$).
    - `params`: where to evaluate it.
    - `k`: how many eigenvalues.
    - `method`: `"dense"` (`jax.jacfwd`, all eigenvalues exactly), `"arnoldi"` (matrix-free,
      `iters` Jacobian-vector products) or `"auto"` (dense up to 64 parameters).
    - `iters`: Arnoldi steps (default min(n, max(40, 3k))).

    **Returns:** a complex array of shape `(k,)`; NaN where $DF$ is not finite.

    ```python
    rule = Rule(lambda theta: a @ theta)
    field_eigenvalues(rule, theta, k=2)  # the eigenvalues of a of largest modulus
    ```
    """
    method, m = _plan(params, k, method, iters)
    return _eigenvalues(rule, params, None, k, method, m)


def step_eigenvalues(
    rule, params: PyTree, lr, *, k: int = 1, method: str = "auto", iters: int | None = None
) -> Complex[Array, " k"]:
    """The `k` eigenvalues $1 + ηλ_i$ of largest modulus of the Jacobian $I + η\\,DF$ of one
    gradient-descent step on `rule` at step `lr` (η), at `params`: the step is linearly
    stable where all have modulus below one, and unstable where one exceeds it (modulus
    one: a neutral direction, $λ = 0$, such as a flat direction of an overparameterized
    model). Arguments as [`rnnflow.field_eigenvalues`][].

    ```python
    mu = step_eigenvalues(rule, theta, 0.1, k=1)
    stable = jnp.abs(mu[0]) < 1
    ```
    """
    check_real("lr", lr, positive=True)
    method, m = _plan(params, k, method, iters)
    return _eigenvalues(rule, params, lr, k, method, m)


@eqx.filter_jit
def _eigenvalues(rule, params, lr, k: int, method: str, m: int):
    trainable, fixed = split(params)
    objective = Objective(rule, fixed)
    flat, unravel = ravel_pytree(trainable)

    def field(x):  # −(the "gradient" the methods step against): F, or −∇L for a loss
        return -ravel_pytree(objective.value_and_grad(unravel(x), fast=False)[1])[0]

    def matvec(v):
        jv = jax.jvp(field, (flat,), (v,))[1]
        return jv if lr is None else v + lr * jv

    if method == "dense":
        jac = jax.jacfwd(field)(flat)
        matrix = jac if lr is None else jnp.eye(flat.size, dtype=flat.dtype) + lr * jac
        values = _eig(matrix)
    else:
        values = _eig(_arnoldi(matvec, flat.size, m, flat.dtype))
    order = jnp.lexsort((values.imag, -jnp.abs(values)))
    return values[order][:k]


def _eig(matrix):
    """All eigenvalues of a real square matrix; NaN for a non-finite one, which LAPACK
    never sees (a diverged seed)."""
    finite = jnp.all(jnp.isfinite(matrix))
    values = jnp.linalg.eigvals(jnp.where(finite, matrix, jnp.zeros_like(matrix)))
    return jnp.where(finite, values, jnp.nan)


def _arnoldi(matvec, n: int, m: int, dtype) -> Array:
    """The m × m upper Hessenberg matrix of m Arnoldi steps on `matvec`: $A V = V H$ on the
    Krylov basis $V$ (exactly, if m = n). After a breakdown (an invariant subspace found) the
    next basis vector is a fresh direction, orthogonalized like the others, with a zero
    subdiagonal entry: $H$ is then block triangular and keeps the subspace's eigenvalues."""
    tiny = jnp.finfo(dtype).eps
    starts = jax.random.normal(jax.random.key(0), (m, n), dtype)
    basis = jnp.zeros((m, n), dtype)

    def orthogonalize(w, basis):
        coeffs = jnp.zeros(m, dtype)
        for _ in range(2):  # twice is enough (Kahan, Parlett)
            c = basis @ w
            w, coeffs = w - basis.T @ c, coeffs + c
        return w, coeffs

    def body(j, carry):
        basis, h, v = carry
        basis = basis.at[j].set(v)
        w, coeffs = orthogonalize(matvec(v), basis)
        beta = jnp.linalg.norm(w)
        broke = beta <= tiny * jnp.maximum(jnp.linalg.norm(coeffs), 1.0)
        fresh = orthogonalize(starts[(j + 1) % m], basis)[0]
        nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / jnp.where(broke, 1, beta))
        h = h.at[:, j].set(coeffs)
        h = h.at[j + 1, j].set(jnp.where(broke, 0.0, beta), mode="drop")
        return basis, h, nxt

    v0 = starts[0] / jnp.linalg.norm(starts[0])
    _, h, _ = jax.lax.fori_loop(0, m, body, (basis, jnp.zeros((m, m), dtype), v0))
    return h


def field_eigenvalue_metric(
    rule, *, k: int = 1, method: str = "auto", iters: int | None = None
) -> Metric:
    """A `Save` metric: the `k` eigenvalues of largest modulus of $DF$ at each save, complex,
    shape `(k,)` ([`rnnflow.field_eigenvalues`][]).

    ```python
    save = Save(num=11, metrics={"df": field_eigenvalue_metric(rule, k=4)})
    ```
    """
    _check_metric(rule, k, method, iters)
    return lambda t, params: field_eigenvalues(rule, params, k=k, method=method, iters=iters)


def stability_metric(
    rule, lr, *, k: int = 1, method: str = "auto", iters: int | None = None
) -> Metric:
    """A `Save` metric: the spectral radius $\\max_i |1 + ηλ_i(DF)|$ of one gradient-descent
    step's Jacobian at step `lr`, over the `k` eigenvalues of largest modulus
    ([`rnnflow.step_eigenvalues`][]); above one, a direction grows under the step: it is
    linearly unstable there. (Where the field has flat directions, $λ = 0$, the radius is
    at least one: those neither grow nor shrink.)

    ```python
    save = Save(num=11, metrics={"radius": stability_metric(rule, lr=0.1)})
    ```
    """
    _check_metric(rule, k, method, iters)
    check_real("lr", lr, positive=True)

    def radius(t, params):
        mu = step_eigenvalues(rule, params, lr, k=k, method=method, iters=iters)
        return jnp.max(jnp.abs(mu))

    return radius


def _check_metric(rule, k, method, iters) -> None:
    if not callable(rule):
        raise TypeError(f"`rule` must be a rule or a loss; got {type(rule).__name__}.")
    check_positive_int("k", k)
    check_choice("method", method, ("auto", "dense", "arnoldi"))
    if iters is not None:
        check_positive_int("iters", iters)
