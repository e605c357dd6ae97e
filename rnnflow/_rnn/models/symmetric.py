import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .base import AbstractLinearRNN, RNNParams


class SymmetricRNN(AbstractLinearRNN):
    """Linear RNN with a symmetric transition $A = (W + W^\\top)/2$, $W$ = `params.a`.

    The gradient with respect to $W$ is the symmetric part of the gradient with respect to
    $A$, so a symmetric $W$ stays symmetric under gradient descent and gradient flow: the
    dynamics are those of $A$ restricted to symmetric matrices. `init` draws a symmetric
    $W$ (off-diagonal entries of standard deviation `scale`).
    """

    @property
    def a_shape(self) -> tuple[int, ...]:
        return (self.state_dim, self.state_dim)

    def _draw_a(self, key, scale, dtype) -> Array:
        g = jax.random.normal(key, self.a_shape, dtype)
        return scale * (g + g.T) / jnp.sqrt(2.0).astype(dtype)

    def transition(self, params: RNNParams) -> Float[Array, "d d"]:
        return 0.5 * (params.a + params.a.T)
