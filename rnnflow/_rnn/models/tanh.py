import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .base import AbstractRNN, RNNParams


class TanhRNN(AbstractRNN):
    """Non-linear RNN $s_t = \\tanh(A s_{t-1} + B x_t)$, $y_t = C s_t$, with dense $A$.

    The recurrence is not affine, so it always runs as a sequential `lax.scan`.
    Near zero it is the [`rnnflow.DenseRNN`][] with the same parameters.
    """

    @property
    def a_shape(self) -> tuple[int, ...]:
        return (self.state_dim, self.state_dim)

    def _draw_a(self, key, scale, dtype) -> Array:
        return scale * jax.random.normal(key, self.a_shape, dtype)

    def transition(self, params: RNNParams) -> Float[Array, "d d"]:
        return params.a

    def states(self, params: RNNParams, xs: Float[Array, "T in_dim"]) -> Float[Array, "T d"]:
        self.check_params(params)
        self._check_xs(xs)

        def step(s, x):
            s = jnp.tanh(params.a @ s + params.b @ x)
            return s, s

        _, states = jax.lax.scan(step, jnp.zeros(self.state_dim, params.b.dtype), xs)
        return states
