r"""What a trained student has learned: state dimension, spectrum, and the measure it represents.

All functions take one impulse response or one parameter set; vmap them over seeds.

**Effective state dimension.** A linear system of state dimension $r$ has a Hankel matrix
$H_{ij} = h_{i+j}$ of rank at most $r$, and rank exactly $r$ for a minimal realization
(Kronecker's theorem). Numerically we count the singular values of $H$ above
`rtol` × the largest. The default `rtol = 1e-3` sits between the two regimes seen in
practice: modes that carry the fit have singular values within a few decades of the
largest, while what gradient descent leaves behind from a small initialization sits near
the init scale squared (≲ 1e-6 relative for scale 1e-3).

**Non-finite inputs** (a diverged seed) give NaN, quietly: the LAPACK routines behind
the SVD and eigendecompositions are never called on them (they would print parameter
errors), and the seed's `Trajectory.result` says why it failed.

**Learned measure.** For a diagonalizable $A = V \Lambda V^{-1}$,
$h_i = \sum_j w_j \lambda_j^i$ with weights $w_j = (C v_j)(u_j^\top B)$, $u_j^\top$ the rows
of $V^{-1}$. For a balanced student ($A$ symmetric, $B = C^\top$) the $w_j \ge 0$ and the
$h_i$ are the moments of the measure $\sum_j w_j \delta_{\lambda_j}$ (fact 3 on the science page).
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._engine.checks import check_positive_int, check_real
from .._engine.linalg import singular_values, symmetric_eigh
from .models import AbstractLinearRNN, DenseRNN, RNNParams
from .teachers import Teacher


def hankel_singular_values(
    h: Float[Array, " length"] | Float[Array, "length out_dim in_dim"], size: int | None = None
) -> Float[Array, " size"]:
    """Singular values of the `size` × `size` Hankel matrix $H_{ij} = h_{i+j}$ (block
    Hankel for several inputs or outputs), largest first.

    `h` needs at least `2 * size - 1` entries; default `size = (len(h) + 1) // 2`.
    """
    h = jnp.asarray(h)
    if h.ndim == 1:
        h = h[:, None, None]
    if h.ndim != 3:
        raise ValueError(f"`h` must have shape (length,) or (length, out, in); got {h.shape}.")
    size = (h.shape[0] + 1) // 2 if size is None else check_positive_int("size", size)
    if 2 * size - 1 > h.shape[0]:
        raise ValueError(
            f"a Hankel matrix of size {size} needs {2 * size - 1} lags; got {h.shape[0]}."
        )
    idx = jnp.arange(size)[:, None] + jnp.arange(size)[None, :]
    blocks = h[idx]  # (size, size, out, in)
    hankel = blocks.transpose(0, 2, 1, 3).reshape(size * h.shape[1], size * h.shape[2])
    hankel, finite = _finite_or_zero(hankel)
    # Jacobi rotations, not LAPACK: a save metric then leaves every CPU device in use.
    return jnp.where(finite, singular_values(hankel), jnp.nan)


def effective_dim(
    h: Float[Array, " length"] | Float[Array, "length out_dim in_dim"],
    *,
    rtol: float = 1e-3,
    size: int | None = None,
) -> Array:
    """Numerical rank of the Hankel matrix of `h`: singular values above `rtol` × the largest
    (a float: NaN where `h` is not finite).

    ```python
    effective_dim(0.9 ** jnp.arange(40))  # 1
    ```
    """
    check_real("rtol", rtol, positive=True)
    s = hankel_singular_values(h, size)
    rank = jnp.sum(s > rtol * s[0]).astype(s.dtype)
    return jnp.where(jnp.isnan(s[0]), jnp.nan, rank)


def learned_measure(model: AbstractLinearRNN, params: RNNParams) -> tuple[Array, Array]:
    """Eigenvalues $\\lambda_j$ of $A$ and weights $w_j$ with $h_i = \\sum_j w_j \\lambda_j^i$.

    For one input and output the weights are scalars, shape `(d,)`; in general
    `(d, out_dim, in_dim)`. Diagonal and symmetric $A$ give real values (symmetric through
    [`rnnflow.symmetric_eigh`][], Jacobi rotations: vmappable on any backend, and no LAPACK
    to keep a block of seeds on one CPU device). Dense $A$ gives complex values through `eig`,
    which JAX computes on the CPU only.
    """
    if not isinstance(model, AbstractLinearRNN):
        raise TypeError(f"`model` must be a linear RNN; got {type(model).__name__}.")
    model.check_params(params)
    a, finite = _finite_or_zero(model.transition(params))
    if a.ndim == 1:
        lam, right, left_t = a, None, None
        w = jnp.einsum("oj,ji->joi", params.c, params.b)
    else:
        if isinstance(model, DenseRNN):
            lam, right = jnp.linalg.eig(a)
            left_t = jnp.linalg.inv(right)
        else:
            lam, right = symmetric_eigh(a)  # no LAPACK: a save metric keeps every device
            left_t = right.T
        w = jnp.einsum("oa,aj,jb,bi->joi", params.c, right, left_t, params.b)
    if model.in_dim == model.out_dim == 1:
        w = w[:, 0, 0]
    finite = finite & jnp.all(jnp.isfinite(params.b)) & jnp.all(jnp.isfinite(params.c))
    return jnp.where(finite, lam, jnp.nan), jnp.where(finite, w, jnp.nan)


def spectrum_distance(
    model: AbstractLinearRNN, params: RNNParams, teacher: Teacher, *, wtol: float = 1e-3
) -> Array:
    """Largest distance from a learned eigenvalue that carries weight to the teacher's spectrum.

    Eigenvalues whose weight is below `wtol` × the total absolute weight are ignored: they
    do not affect the impulse response. Zero when every mode the student uses is a teacher mode.
    """
    check_real("wtol", wtol, positive=True)
    lam, w = learned_measure(model, params)
    teacher_lam, _ = learned_measure(teacher.model, teacher.params)
    mag = jnp.abs(w).reshape(w.shape[0], -1).sum(axis=1)
    used = mag > wtol * jnp.sum(mag)
    dist = jnp.min(jnp.abs(lam[:, None] - teacher_lam[None, :]), axis=1)
    return jnp.where(jnp.any(jnp.isnan(lam)), jnp.nan, jnp.max(jnp.where(used, dist, 0.0)))


def _finite_or_zero(x):
    """`x`, or zeros where `x` has a non-finite entry (so that LAPACK never sees one), and
    whether it was finite."""
    finite = jnp.all(jnp.isfinite(x))
    return jnp.where(finite, x, jnp.zeros_like(x)), finite
