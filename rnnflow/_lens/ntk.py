r"""The empirical neural tangent kernel $K = JJ^\top$ of a function of the parameters, and
the closed-form lazy dynamics of a least-squares loss linearized at $θ_0$
(see `rnnflow._lens.linearize`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._engine.methods import GradientDescent, GradientFlow, ModifiedFlow
from .._engine.objective import split, split_real
from .._engine.real_view import to_complex
from .taylor import _check_callable, _output_fn


def ntk(f, params: PyTree) -> Float[Array, "m m"]:
    """The empirical neural tangent kernel $K = J J^\\top$ of `f` at `params` (one seed).

    **Arguments:**

    - `f`: a function of the parameters, or a loss that offers `residuals` (whose residuals
      are then the outputs). Outputs of any shape or pytree count in the order of
      `jax.flatten_util.ravel_pytree`.
    - `params`: one seed's parameters; their floating-point arrays are differentiated (other
      leaves are held fixed). A complex array counts as its real and imaginary parts, so
      $J$ has a column for each (the Jacobian of the real split).

    **Returns:**

    $K$, shape `(m, m)` for $m$ outputs. $J$ ($m \\times n$) is formed by $m$
    vector-Jacobian products when $m \\le n$, else by $n$ Jacobian-vector products, and
    multiplied by its transpose; with $m$ and $n$ both large, prefer a few products with
    $K$ (`jax.jvp` after `jax.vjp`). For many seeds, `jax.vmap(lambda p: ntk(f, p))(params)`.

    ```python
    model = DiagonalRNN(20)
    loss_fn = ImpulseLoss(modes_teacher([0.9], [1.0]), train_len=5).bind(model)
    params = model.init(key=jax.random.key(0), scale=0.3)
    k = ntk(loss_fn, params)  # (5, 5): one row per training lag
    ```
    """
    _check_callable("f", f)
    trainable, fixed = split(params)
    if not jax.tree.leaves(trainable):
        raise ValueError("`params` must hold at least one floating-point array.")
    # Abstract evaluation only: a wrong output fails here, before anything compiles.
    out = eqx.filter_eval_shape(lambda p: ravel_pytree(_output_fn(f)(p))[0], params)
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"`f` must return real floating-point arrays; got {out.dtype}.")
    return _kernel(f, *split_real(params))


@eqx.filter_jit  # one compiled program when called eagerly (inlined under an outer jit)
def _kernel(f, trainable, fixed):
    fn = _output_fn(f)
    flat, unravel = ravel_pytree(trainable)

    def out(x):
        return ravel_pytree(fn(eqx.combine(to_complex(unravel(x)), fixed)))[0]

    m, n = jax.eval_shape(out, flat).shape[0], flat.size
    jac = (jax.jacrev if m <= n else jax.jacfwd)(out)(flat)
    return jac @ jac.T


def _decay(method, lam, ts):
    """The factor by which a residual along a kernel eigenvalue `lam` shrinks by time `ts`."""
    if isinstance(method, ModifiedFlow):
        return jnp.exp(-2 * ts * lam * (1 + method.lr * lam))
    if isinstance(method, GradientFlow):
        return jnp.exp(-2 * ts * lam)
    # Gradient descent: n = t / η steps; `Trajectory.ts` holds multiples of η.
    steps = jnp.round(ts / method.lr).astype(jnp.int32)
    return (1 - 2 * method.lr * lam) ** steps


def ntk_residuals(
    kernel: ArrayLike, residuals0: ArrayLike, ts: ArrayLike, method
) -> Float[Array, "*ts m"]:
    """The residuals of the linearized model's training, in closed form.

    For a loss $\\sum_i r_i^2$ (no ½) whose residuals are linear in the parameters with
    kernel $K$ (a [`rnnflow.LinearizedLoss`][], exactly):

    - [`rnnflow.GradientFlow`][]: $r_t = e^{-2tK} r_0$;
    - [`rnnflow.ModifiedFlow`][] (step η): $r_t = e^{-2tK(I + ηK)} r_0$;
    - [`rnnflow.GradientDescent`][] (plain, constant step η): $r_t = (I - 2ηK)^{t/η} r_0$,
      with $t/η$ rounded to the step count.

    With $r = f - y$: $f_t = y + e^{-2tK}(f_0 - y)$.

    **Arguments:**

    - `kernel`: $K$, symmetric positive semi-definite, shape `(m, m)` ([`rnnflow.ntk`][]).
    - `residuals0`: $r_0$, shape `(m,)`.
    - `ts`: flow times (for gradient descent, the sum of the steps: `Trajectory.ts`).
    - `method`: the method whose dynamics to give (its `t1`, solver and tolerances do not
      matter).

    **Returns:**

    $r_t$, shape `ts.shape + (m,)`, from the eigendecomposition of $K$ (eigenvalues that
    rounding made negative are taken as 0). One seed; vmap for many.

    ```python
    k, r0 = ntk(loss_fn, params), loss_fn.residuals(params)
    r = ntk_residuals(k, r0, traj.ts, GradientFlow(100.0))  # (saves, m)
    ```
    """
    if isinstance(method, GradientDescent):
        if callable(method.lr) or method.optimizer is not None:
            raise TypeError(
                "`method`: the closed form is that of plain gradient descent at a constant "
                "step (no schedule, no optax optimizer)."
            )
    elif not isinstance(method, GradientFlow):
        raise TypeError(
            "`method` must be GradientDescent, GradientFlow or ModifiedFlow; "
            f"got {type(method).__name__}."
        )
    kernel, residuals0 = jnp.asarray(kernel), jnp.asarray(residuals0)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"`kernel` must be a square matrix (m, m); got shape {kernel.shape}.")
    if residuals0.shape != kernel.shape[:1]:
        raise ValueError(
            f"`residuals0` must have shape {kernel.shape[:1]} (one per kernel row); "
            f"got {residuals0.shape}."
        )
    for name, x in (("kernel", kernel), ("residuals0", residuals0)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"`{name}` must be real floating point; got {x.dtype}.")
    return _solution(method, kernel, residuals0, jnp.asarray(ts, kernel.dtype))


@eqx.filter_jit
def _solution(method, kernel, residuals0, ts):
    lam, v = jnp.linalg.eigh(kernel)
    # Time along the leading axes, eigenvalues along the last: ts.shape + (m,).
    lead = (1,) * ts.ndim
    lam = jnp.maximum(lam, 0).reshape(lead + lam.shape)
    decay = _decay(method, lam, ts[..., None])
    return (decay * (v.T @ residuals0).reshape(lam.shape)) @ v.T
