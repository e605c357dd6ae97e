r"""Low-dimensional teachers: the linear systems that students are trained to imitate."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._engine.checks import check_positive_int, check_real
from .._engine.objective import check_finite
from .models import AbstractLinearRNN, DenseRNN, DiagonalRNN, RNNParams


class Teacher(eqx.Module):
    """A fixed linear RNN that generates the targets.

    **Fields:**

    - `model`: a linear parameterization ([`rnnflow.DiagonalRNN`][], [`rnnflow.DenseRNN`][], ...).
    - `params`: its [`rnnflow.RNNParams`][].

    Build one with [`rnnflow.modes_teacher`][] or [`rnnflow.random_teacher`][].
    """

    model: AbstractLinearRNN
    params: RNNParams

    def __check_init__(self):
        if not isinstance(self.model, AbstractLinearRNN):
            raise TypeError(f"a Teacher's model must be linear; got {type(self.model).__name__}.")
        self.model.check_params(self.params)
        check_finite("teacher.params", self.params)

    @property
    def state_dim(self) -> int:
        return self.model.state_dim

    def impulse_response(self, length: int) -> Float[Array, "length out_dim in_dim"]:
        """Markov parameters $\\hat h_i = \\hat C \\hat A^i \\hat B$, $i <$ `length`."""
        return self.model.impulse_response(self.params, length)

    def __call__(self, xs: Float[Array, "T in_dim"]) -> Float[Array, "T out_dim"]:
        """The teacher's outputs for one input sequence."""
        return self.model(self.params, xs)


def modes_teacher(eigenvalues: ArrayLike, weights: ArrayLike) -> Teacher:
    """The single-input single-output teacher $\\hat h_i = \\sum_j p_j \\lambda_j^i$.

    Realized as a diagonal RNN with $a = \\lambda$, $b_j = \\sqrt{|p_j|}$,
    $c_j = \\mathrm{sign}(p_j)\\sqrt{|p_j|}$: balanced when every $p_j > 0$. Eigenvalue 1 gives
    long-term memory; a negative eigenvalue gives an oscillating response.

    **Arguments:**

    - `eigenvalues`: $\\lambda_j$, real, shape `(d̂,)`.
    - `weights`: $p_j$, real and non-zero, shape `(d̂,)`.

    ```python
    teacher = modes_teacher([0.9], [1.0])        # ĥ_i = 0.9^i
    teacher = modes_teacher([1.0, -0.5], [0.5, 1.0])
    ```
    """
    lam = np.asarray(eigenvalues, dtype=float)
    p = np.asarray(weights, dtype=float)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"`eigenvalues` must be a non-empty 1-d array; got shape {lam.shape}.")
    if p.shape != lam.shape:
        raise ValueError(
            f"`weights` must have the shape of `eigenvalues` {lam.shape}; got {p.shape}."
        )
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(p))):
        raise ValueError("`eigenvalues` and `weights` must be finite.")
    if np.any(p == 0):
        raise ValueError("`weights` must be non-zero (a zero weight is a mode that is not there).")
    dtype = jnp.result_type(float)
    root = np.sqrt(np.abs(p))
    params = RNNParams(
        a=jnp.asarray(lam, dtype),
        b=jnp.asarray(root[:, None], dtype),
        c=jnp.asarray((np.sign(p) * root)[None, :], dtype),
    )
    return Teacher(DiagonalRNN(lam.size), params)


def random_teacher(
    key: PRNGKeyArray,
    state_dim: int,
    *,
    in_dim: int = 1,
    out_dim: int = 1,
    spectral_radius: float = 0.9,
) -> Teacher:
    """A random dense teacher of small state dimension.

    $\\hat A$ has i.i.d. Gaussian entries rescaled to the given spectral radius (so it is
    stable for a radius < 1; eigenvalues may be complex), and $\\hat B$, $\\hat C$ have
    i.i.d. $N(0, 1/d̂)$ entries.

    ```python
    teacher = random_teacher(jax.random.key(0), 3)
    ```
    """
    check_positive_int("state_dim", state_dim)
    check_real("spectral_radius", spectral_radius, positive=True)
    model = DenseRNN(state_dim, in_dim=in_dim, out_dim=out_dim)
    ka, kb, kc = jax.random.split(key, 3)
    dtype = jnp.result_type(float)
    a = jax.random.normal(ka, (state_dim, state_dim), dtype)
    # numpy's eigvals: this runs once at construction, and JAX's is CPU-only.
    radius = np.max(np.abs(np.linalg.eigvals(np.asarray(a, np.float64))))
    a = a * (spectral_radius / radius)
    scale = 1.0 / np.sqrt(state_dim)
    b = scale * jax.random.normal(kb, (state_dim, in_dim), dtype)
    c = scale * jax.random.normal(kc, (out_dim, state_dim), dtype)
    return Teacher(model, RNNParams(a.astype(dtype), b, c))
