r"""Oja's rule: a Hebbian neuron that learns the top principal direction of its inputs.

A linear neuron $y = w^\top x$ with the Hebbian update $Δw = η\,y\,(x - y\,w)$ (Oja, 1982),
averaged over the inputs, moves along

$$F(w) = C w - (w^\top C w)\, w, \qquad C = \tfrac1N \textstyle\sum_i x_i x_i^\top .$$

Its fixed points are $0$ and the unit eigenvectors of $C$; for $λ_1 > λ_2$ only $\pm v_1$,
the top eigenvectors, are stable (at $v_j$, $DF$ has eigenvalues $λ_i - λ_j$ for $i \ne j$
and $-2λ_j$ along $v_j$), so from almost every start $w \to \pm v_1$. No loss has $F$ as its
gradient: the rule has no loss, and is watched through $\|w\|$, the Rayleigh quotient
$w^\top C w / w^\top w$ and $|\cos∠(w, v_1)|$.
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._engine.checks import check_shape
from .._engine.rule import squared_norm


class Oja(eqx.Module):
    """Oja's rule on the data `x` (rows are examples): the field
    $F(w) = C w - (w^\\top C w)\\,w$ with $C = x^\\top x / N$, for parameters $w$ of shape
    `(dim,)`.

    **Arguments:**

    - `x`: the inputs, shape `(N, dim)` (centre them first for the covariance's top
      direction; uncentred, $C$ is their second moment).

    Attributes: `covariance` ($C$) and `top` ($v_1$, the unit eigenvector of its largest
    eigenvalue; its sign is arbitrary).

    A rule without a loss ([`rnnflow.Rule`][]): its default metrics are `"norm"`
    ($\\|w\\|$), `"rayleigh"` ($w^\\top C w / w^\\top w$, which tends to $λ_1$) and
    `"alignment"` ($|\\cos∠(w, v_1)|$, which tends to 1).

    ```python
    rule = Oja(x)
    traj = train(rule, w0, GradientDescent(0.01, 5000))  # traj.final ≈ ±v₁
    ```
    """

    covariance: Float[Array, "dim dim"]
    top: Float[Array, " dim"]
    loss = None  # no loss is this field's gradient: convergence is not judged by one

    def __init__(self, x):
        x = jnp.asarray(x)
        if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"`x` must be a real (N, dim) array; got {x.dtype}{list(x.shape)}.")
        self.covariance = x.T @ x / x.shape[0]
        # v₁ once, here: the metrics then need no eigensolver (LAPACK) at every save.
        self.top = jnp.linalg.eigh(self.covariance)[1][:, -1]

    def direction(self, w):
        cw = self.covariance @ w
        return cw - jnp.dot(w, cw) * w

    def __call__(self, w):
        return squared_norm(w)

    def default_metrics(self) -> dict:
        def rayleigh(t, w):
            return jnp.dot(w, self.covariance @ w) / jnp.dot(w, w)

        def alignment(t, w):
            return jnp.abs(jnp.dot(w, self.top)) / jnp.linalg.norm(w)

        return {
            "norm": lambda t, w: jnp.linalg.norm(w),
            "rayleigh": rayleigh,
            "alignment": alignment,
        }

    def check(self, w) -> None:
        check_shape("params", w, self.covariance.shape[:1])
