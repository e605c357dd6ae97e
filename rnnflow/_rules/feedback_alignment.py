r"""Feedback alignment for a two-layer network: the error sent back through a fixed random
matrix $B$ in place of the transposed output weights (Lillicrap et al., 2016).

The network $\hat y(x) = W_2\,σ(W_1 x)/\sqrt p$ has $p$ hidden units ($W_1$: $p \times d$,
$W_2$: $k \times p$) and is fit to $n$ examples by the squared loss with weight decay $λ$ on
the output weights,

$$L = \frac{1}{2n}\sum_i \|\hat y(x_i) - y_i\|^2 + \frac{λ}{2}\|W_2\|_F^2 .$$

With the errors $e_i = (\hat y(x_i) - y_i)/n$ and hidden activities $h_i = σ(W_1 x_i)$,
backpropagation moves along $-\nabla L$:

$$\dot W_2 = -\sum_i e_i h_i^\top/\sqrt p - λ W_2, \qquad
  \dot W_1 = -\sum_i \big[(W_2^\top e_i) \odot σ'(W_1 x_i)\big]\, x_i^\top/\sqrt p .$$

Feedback alignment keeps the output layer's update and replaces $W_2^\top$ by a fixed random
$B$ ($p \times k$) in the hidden layer's: $\dot W_1 = -\sum_i [(B e_i) \odot σ'(W_1 x_i)]\,
x_i^\top/\sqrt p$. No loss has this field as its gradient. Song, Xu and Lafferty (2021)
prove for overparameterized two-layer networks that the error still converges to zero
exponentially fast, and that the weights align with $B$ only with regularization.

**Alignment**, as Song, Xu and Lafferty measure it (there $W_2$ and $B$ are vectors): the
cosine between the forward and the feedback weights,
$\cos∠(\mathrm{vec}\,W_2^\top, \mathrm{vec}\,B) = \langle W_2^\top, B\rangle_F /
(\|W_2\|_F\|B\|_F)$ (`"alignment"`). Lillicrap et al. measure instead the angle between the
signals the two rules send to the hidden units, $B e$ and $W_2^\top e$ (over all examples,
`"update_alignment"`, its cosine).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._engine.checks import check_choice, check_real, check_shape

ACTIVATIONS = {
    "linear": (lambda z: z, lambda z: jnp.ones_like(z)),
    "tanh": (jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2),
}


def _cosine(a, b):
    return jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


class TwoLayerLoss(eqx.Module):
    """The squared loss of the two-layer network $\\hat y = W_2 σ(W_1 x)/\\sqrt p$ with weight
    decay $λ$ on $W_2$, for parameters `{"w1": (p, d), "w2": (k, p)}` (see
    [`rnnflow.FeedbackAlignment`][] for the equations). Training it trains by
    backpropagation.

    **Arguments:** `x` `(n, d)` inputs, `y` `(n, k)` targets, `reg` (λ ≥ 0, may be traced),
    `activation` (`"linear"` or `"tanh"`).

    Default metrics: `"loss"` ($L$) and `"error"` (its data term).
    """

    x: Float[Array, "n d"]
    y: Float[Array, "n k"]
    reg: float | Array = 0.0
    activation: str = eqx.field(static=True, default="linear")

    def __check_init__(self):
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_real("reg", self.reg, nonnegative=True)
        if jnp.ndim(self.x) != 2 or jnp.ndim(self.y) != 2 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"`x` and `y` must be (n, d) and (n, k) arrays of the same n; got "
                f"{jnp.shape(self.x)} and {jnp.shape(self.y)}."
            )

    def forward(self, params):
        """Pre-activations `(n, p)`, hidden activities `(n, p)` and outputs `(n, k)`."""
        z = self.x @ params["w1"].T
        h = ACTIVATIONS[self.activation][0](z)
        return z, h, h @ params["w2"].T / jnp.sqrt(h.shape[1])

    def error(self, params):
        """The data term $\\frac{1}{2n}\\sum_i \\|\\hat y_i - y_i\\|^2$."""
        return 0.5 * jnp.mean(jnp.sum((self.forward(params)[2] - self.y) ** 2, axis=1))

    def __call__(self, params):
        return self.error(params) + 0.5 * self.reg * jnp.sum(params["w2"] ** 2)

    def default_metrics(self) -> dict:
        return {"loss": lambda t, p: self(p), "error": lambda t, p: self.error(p)}

    def check(self, params) -> None:
        if not isinstance(params, dict) or set(params) != {"w1", "w2"}:
            raise TypeError('`params` must be a dict {"w1": (p, d), "w2": (k, p)}.')
        p = jnp.shape(params["w1"])[0]
        check_shape('params["w1"]', params["w1"], (p, self.x.shape[1]))
        check_shape('params["w2"]', params["w2"], (self.y.shape[1], p))

    def init(self, *, key, width: int, scale: float = 1.0) -> dict:
        """Parameters of `width` hidden units: $W_1$ entries N(0, 1/d) (so that
        pre-activations are O(1)), $W_2$ entries N(0, `scale`²)."""
        k1, k2 = jax.random.split(key)
        d, k = self.x.shape[1], self.y.shape[1]
        dtype = self.x.dtype
        return {
            "w1": jax.random.normal(k1, (width, d), dtype) / jnp.sqrt(d),
            "w2": scale * jax.random.normal(k2, (k, width), dtype),
        }


class FeedbackAlignment(eqx.Module):
    """The feedback-alignment rule for a [`rnnflow.TwoLayerLoss`][]: backpropagation's
    field with the fixed random `feedback` $B$ `(p, k)` in place of $W_2^\\top$ in the hidden
    layer's update (equations in the module's docs, the "Learning rules beyond the
    gradient" page). Judged by the loss $L$.

    **Arguments:** `loss` (a `TwoLayerLoss`), `feedback` ($B$, held fixed: one per seed,
    e.g. drawn from the seed's key).

    Default metrics: those of the loss, `"alignment"` (cosine of $W_2^\\top$ and $B$) and
    `"update_alignment"` (cosine of the hidden-unit signals $B e$ and $W_2^\\top e$).

    ```python
    loss = TwoLayerLoss(x, y, reg=0.1)
    rule = FeedbackAlignment(loss, jax.random.normal(kb, (width, y.shape[1])))
    traj = train(rule, loss.init(key=kp, width=width), GradientDescent(0.05, 4000))
    ```
    """

    loss: TwoLayerLoss
    feedback: Float[Array, "p k"]

    def __check_init__(self):
        if not isinstance(self.loss, TwoLayerLoss):
            raise TypeError(f"`loss` must be a TwoLayerLoss; got {type(self.loss).__name__}.")
        if jnp.ndim(self.feedback) != 2 or jnp.shape(self.feedback)[1] != self.loss.y.shape[1]:
            raise ValueError(
                f"`feedback` must be a (p, k) array with k = {self.loss.y.shape[1]} outputs; "
                f"got shape {jnp.shape(self.feedback)}."
            )

    def _signals(self, params):
        z, h, out = self.loss.forward(params)
        e = (out - self.loss.y) / out.shape[0]  # (n, k)
        scale = 1 / jnp.sqrt(h.shape[1])
        return z, h, e, scale

    def direction(self, params):
        z, h, e, scale = self._signals(params)
        slope = ACTIVATIONS[self.loss.activation][1](z)
        delta = (e @ self.feedback.T) * slope * scale  # B e in place of W2ᵀ e
        return {
            "w1": -delta.T @ self.loss.x,
            "w2": -(e.T @ h) * scale - self.loss.reg * params["w2"],
        }

    def __call__(self, params):
        return self.loss(params)

    def alignment(self, params):
        """$\\cos∠(\\mathrm{vec}\\,W_2^\\top, \\mathrm{vec}\\,B)$."""
        return _cosine(params["w2"].T, self.feedback)

    def update_alignment(self, params):
        """The cosine between the hidden-unit signals $B e_i$ and $W_2^\\top e_i$, over all
        examples $i$ (Lillicrap et al.'s $∠(Δh_{FA}, Δh_{BP})$)."""
        _, _, e, _ = self._signals(params)
        return _cosine(e @ self.feedback.T, e @ params["w2"])

    def default_metrics(self) -> dict:
        return {
            **self.loss.default_metrics(),
            "alignment": lambda t, p: self.alignment(p),
            "update_alignment": lambda t, p: self.update_alignment(p),
        }

    def check(self, params) -> None:
        self.loss.check(params)
        check_shape("feedback", self.feedback, (params["w1"].shape[0], self.loss.y.shape[1]))
