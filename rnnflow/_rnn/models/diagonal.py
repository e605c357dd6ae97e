import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .base import AbstractLinearRNN, RNNParams


class DiagonalRNN(AbstractLinearRNN):
    """Linear RNN with a diagonal transition $A = \\mathrm{diag}(a)$, `params.a` of shape `(d,)`.

    Its impulse response is $h_i = \\sum_j c_j b_j a_j^i$ (single input and output).
    The recurrence is elementwise, so the associative scan costs $O(Td)$.
    """

    @property
    def a_shape(self) -> tuple[int, ...]:
        return (self.state_dim,)

    def _draw_a(self, key, scale, dtype) -> Array:
        return scale * jax.random.normal(key, self.a_shape, dtype)

    def transition(self, params: RNNParams) -> Float[Array, " d"]:
        return params.a

    def imbalance(self, params: RNNParams) -> Float[Array, " d"]:
        """$\\|B_j\\|^2 - \\|C_{:,j}\\|^2$ per coordinate $j$ (for one input and output,
        $b_j^2 - c_j^2$): the part of $Q$ that diagonal rescalings leave conserved."""
        self.check_params(params)
        return jnp.sum(params.b**2, axis=1) - jnp.sum(params.c**2, axis=0)
