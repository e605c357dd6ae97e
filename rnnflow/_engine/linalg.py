"""Linear algebra in plain JAX operations, without LAPACK: eigenvalues of small symmetric
matrices and singular values by Jacobi rotations, the triangular factor of a tall matrix by
Householder reflections, and Cholesky's factorization and solve.

rnnflow's own save metrics (the sharpness's Lanczos eigenvalues, the effective dimension's
Hankel singular values, the singular values of a tanh student's hidden states) and the
stiff solver (`LeastSquaresRosenbrock`) call these instead of LAPACK: a block whose
program calls LAPACK runs on one CPU device (see `blocks._lapack_safe`), where these leave
every core in use.

The eigenvalues and singular values are the cyclic Jacobi method in the parallel order of
Brent and Luk: the $n$ indices ($n + 1$ when $n$ is odd, the extra one a zero) sit in two
rows, `top` and `bottom`, and a round rotates each pair `(top[i], bottom[i])` at once;
the indices then move one place round a circle (`top[0]` stays), so that a sweep of
$n - 1$ rounds meets every pair once. Every round is slices and elementwise arithmetic,
no gathers. Sweeps go on until no pair is coupled above the precision's rounding
(quadratic convergence: a handful of sweeps).

- Symmetric $A$ (two-sided): the rotation that zeroes $a_{pq}$ has
  $t = \\tan θ = \\operatorname{sign}(τ) / (|τ| + \\sqrt{1 + τ^2})$,
  $τ = (a_{qq} - a_{pp}) / (2 a_{pq})$; $A ← J^\\top A J$ converges to the diagonal of
  eigenvalues.
- Any $A$ (one-sided, Hestenes): the same rotation of columns $p, q$ with
  $α = \\|a_p\\|^2$, $β = \\|a_q\\|^2$, $γ = a_p^\\top a_q$ in place of $a_{pp}, a_{qq},
  a_{pq}$ makes the columns orthogonal; their norms are then the singular values. Working
  on $A$ rather than on $A^\\top A$ keeps small singular values to relative accuracy.
"""

import jax
import jax.numpy as jnp

# A bound on sweeps. Measured up to 40 × 40: random matrices take 7-9, graded ones 6-7,
# the Hankel matrix of a two-mode response (rank 2: its null space is slow to settle) up to
# 14 in float64 and 12 in float32. An input that does not converge stops here.
_MAX_SWEEPS = 30


def _circle(x, axis: int):
    """`x` with its indices along `axis` moved one place round the circle: the halves
    (top, bottom) become ([top[0], bottom[0], top[1:-1]], [bottom[1:], top[-1]])."""
    h = x.shape[axis] // 2
    if h == 1:
        return x

    def part(lo, hi):
        return jax.lax.slice_in_dim(x, lo, hi, axis=axis)

    pieces = (part(0, 1), part(h, h + 1), part(1, h - 1), part(h + 1, 2 * h), part(h - 1, h))
    return jnp.concatenate(pieces, axis)


def _rotation(app, aqq, apq):
    """cos θ and sin θ of the rotation that zeroes `apq`; the identity where it is 0."""
    coupled = apq != 0
    safe = jnp.where(coupled, apq, 1)
    tau = (aqq - app) / (2 * safe)
    t = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.sqrt(1 + tau * tau))
    t = jnp.where(coupled, t, 0.0)
    c = 1 / jnp.sqrt(1 + t * t)
    return c, t * c


def _rotate_pairs(x, c, s):
    """X ← X J: columns `i` and `h + i` of `x` (h = half its columns) rotated by
    (`c[i]`, `s[i]`), every pair at once (the pairs are disjoint)."""
    h = x.shape[1] // 2
    top, bottom, c, s = x[:, :h], x[:, h:], c[None, :], s[None, :]
    return jnp.concatenate([c * top - s * bottom, s * top + c * bottom], 1)


def _square(a):
    a = jnp.asarray(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"`a` must be a square matrix; got shape {a.shape}.")
    return a


def _sweeps(one_round, x, n: int, tol, dtype):
    """Rounds of `one_round(x) -> (x, coupling)` (the pairs' largest coupling, in [0, 1],
    before their rotation), `n - 1` to a sweep, until a sweep finds none above `tol`."""

    def sweep(carry):
        x, _, k = carry
        x, worst = jax.lax.scan(lambda x, _: one_round(x), x, length=n - 1)
        return x, jnp.max(worst), k + 1

    def running(carry):
        _, worst, k = carry
        return (worst > tol) & (k < _MAX_SWEEPS)

    start = (x, jnp.asarray(jnp.inf, dtype), jnp.asarray(0))
    return jax.lax.while_loop(running, sweep, start)[0]


def symmetric_eigenvalues(a):
    """The eigenvalues of the symmetric matrix `a` (n × n; symmetrized as `(a + aᵀ) / 2`),
    ascending, as `jnp.linalg.eigvalsh` gives them, by Jacobi rotations (no LAPACK: a save
    metric that uses it keeps every CPU device in use).

    ```python
    symmetric_eigenvalues(jnp.array([[2.0, 1.0], [1.0, 2.0]]))  # [1., 3.]
    ```
    """
    return _jacobi(a, vectors=False)[0]


def symmetric_eigh(a):
    """The eigenvalues (ascending) and orthonormal eigenvectors (columns) of the symmetric
    matrix `a`, as `jnp.linalg.eigh` gives them, by Jacobi rotations (no LAPACK). Each
    vector's sign, and the basis of a repeated eigenvalue's space, are as the rotations
    leave them.

    ```python
    values, vectors = symmetric_eigh(jnp.array([[2.0, 1.0], [1.0, 2.0]]))
    vectors @ jnp.diag(values) @ vectors.T  # the matrix again
    ```
    """
    return _jacobi(a, vectors=True)


def _jacobi(a, vectors: bool):
    a = _square(a)
    n = a.shape[0]
    if n == 1:
        return a[0], jnp.ones_like(a) if vectors else None
    a = (a + a.T) / 2  # as jnp.linalg.eigh takes it (exact for a symmetric `a`)
    a = jnp.pad(a, [(0, n % 2), (0, n % 2)])
    h = a.shape[0] // 2
    eps = jnp.finfo(a.dtype).eps
    # |a_pq| against √|a_pp a_qq| (relative accuracy where the diagonal allows), and never
    # against less than the rounding of the whole matrix (a zero eigenvalue's diagonal).
    floor = eps * jnp.sqrt(jnp.sum(a * a))

    def one_round(state):
        a, v = state
        d = jnp.diagonal(a)
        app, aqq, apq = d[:h], d[h:], jnp.diagonal(a[:h, h:])
        scale = jnp.maximum(jnp.sqrt(jnp.abs(app * aqq)), floor)
        coupling = jnp.max(jnp.abs(apq) / jnp.where(scale > 0, scale, 1))
        c, s = _rotation(app, aqq, apq)
        # A ← Jᵀ A J: the columns of each pair, then its rows (the pairs are disjoint).
        a = _rotate_pairs(_rotate_pairs(a, c, s).T, c, s).T
        if v is not None:
            v = _circle(_rotate_pairs(v, c, s), 1)
        return (_circle(_circle(a, 0), 1), v), coupling

    v = jnp.eye(a.shape[0], dtype=a.dtype) if vectors else None
    a, v = _sweeps(one_round, (a, v), a.shape[0], n * eps, a.dtype)
    # Whole sweeps bring every index home (the circle's period is a sweep): the padding's
    # zero is last.
    values = jnp.diagonal(a)[:n]
    order = jnp.argsort(values)
    return values[order], None if v is None else v[:n, :n][:, order]


def singular_values(a):
    """The singular values of `a` (m × n), largest first, as
    `jnp.linalg.svd(a, compute_uv=False)` gives them (min(m, n) of them), by one-sided
    Jacobi rotations (no LAPACK). Rotating the fewer side's vectors costs O(m n) per pair
    of them and sweep: for a tall matrix take `triangular_factor` first.

    ```python
    singular_values(jnp.array([[3.0, 0.0], [0.0, -4.0], [0.0, 0.0]]))  # [4., 3.]
    ```
    """
    a = jnp.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"`a` must be a matrix; got shape {a.shape}.")
    if a.shape[1] > a.shape[0]:
        a = a.T  # rotate the fewer columns
    n = a.shape[1]
    if n == 1:
        return jnp.sqrt(jnp.sum(a * a, 0))
    a = jnp.pad(a, [(0, 0), (0, n % 2)])  # a zero column: its rotations are the identity
    h = a.shape[1] // 2

    def one_round(a):
        top, bottom = a[:, :h], a[:, h:]
        alpha, beta = jnp.sum(top * top, 0), jnp.sum(bottom * bottom, 0)
        gamma = jnp.sum(top * bottom, 0)
        scale = jnp.sqrt(alpha * beta)
        coupling = jnp.max(jnp.abs(gamma) / jnp.where(scale > 0, scale, 1))
        c, s = _rotation(alpha, beta, gamma)
        return _circle(_rotate_pairs(a, c, s), 1), coupling

    eps = jnp.finfo(a.dtype).eps
    a = _sweeps(one_round, a, a.shape[1], jnp.sqrt(a.shape[0]) * eps, a.dtype)
    return -jnp.sort(-jnp.sqrt(jnp.sum(a[:, :n] * a[:, :n], 0)))  # the padding's column is last


def triangular_factor(a):
    """The n × n upper-triangular factor R of `a = QR` (m × n, m ≥ n), by Householder
    reflections (no LAPACK): `a`'s singular values are R's, and RᵀR = aᵀa. R is unique up
    to the sign of each row; these are as the reflections leave them.

    ```python
    states = jax.random.normal(jax.random.key(0), (1000, 8))
    singular_values(triangular_factor(states))  # those of `states`, from an 8 × 8 matrix
    ```
    """
    a = jnp.asarray(a)
    m, n = a.shape
    if m < n:
        raise ValueError(f"`a` must have at least as many rows as columns; got shape {a.shape}.")
    rows = jnp.arange(m)

    def reflect(k, a):
        # The reflection I - 2vvᵀ/vᵀv that maps column k below the diagonal onto e_k.
        x = jnp.where(rows >= k, a[:, k], 0)
        norm = jnp.sqrt(jnp.sum(x * x))
        head = a[k, k]
        v = x.at[k].add(jnp.where(head >= 0, norm, -norm))
        vv = jnp.sum(v * v)
        w = (v @ a) * jnp.where(vv > 0, 2 / jnp.where(vv > 0, vv, 1), 0)
        return a - v[:, None] * w[None, :]

    return jnp.triu(jax.lax.fori_loop(0, n, reflect, a)[:n])


def cholesky(a):
    """The lower-triangular L with L Lᵀ = `a`, for a symmetric positive definite `a`
    (n × n), column by column (no LAPACK); NaN where `a` is not positive definite.

    ```python
    low = cholesky(jnp.array([[4.0, 2.0], [2.0, 5.0]]))  # [[2, 0], [1, 2]]
    ```
    """
    a = _square(a)
    rows = jnp.arange(a.shape[0])

    def column(j, low):
        # l_j = (a_j - Σ_{p<j} l_p L_jp) / L_jj on rows ≥ j: the columns before j are done.
        col = a[:, j] - low @ jnp.where(rows < j, low[j], 0)
        return low.at[:, j].set(jnp.where(rows >= j, col / jnp.sqrt(col[j]), 0))

    return jax.lax.fori_loop(0, a.shape[0], column, jnp.zeros_like(a))


def cholesky_solve(low, b):
    """x with L Lᵀ x = `b`, for the factor `low` that `cholesky` gives and a vector `b`:
    a forward and a backward substitution (no LAPACK).

    ```python
    a = jnp.array([[4.0, 2.0], [2.0, 5.0]])
    cholesky_solve(cholesky(a), jnp.array([2.0, 1.0]))  # a⁻¹ b = [0.5, 0.]
    ```
    """
    n = low.shape[0]
    rows = jnp.arange(n)

    def forward(i, z):  # L z = b
        return z.at[i].set((b[i] - jnp.sum(jnp.where(rows < i, low[i] * z, 0))) / low[i, i])

    def backward(k, x):  # Lᵀ x = z, from the last row up
        i = n - 1 - k
        return x.at[i].set((x[i] - jnp.sum(jnp.where(rows > i, low[:, i] * x, 0))) / low[i, i])

    z = jax.lax.fori_loop(0, n, forward, jnp.zeros_like(b))
    return jax.lax.fori_loop(0, n, backward, z)
