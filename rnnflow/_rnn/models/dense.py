import jax
from jaxtyping import Array, Float

from .base import AbstractLinearRNN, RNNParams


class DenseRNN(AbstractLinearRNN):
    """Linear RNN with an unconstrained $d \\times d$ transition $A$ (stored as `params.a`).

    ```python
    model = DenseRNN(16)
    params = model.init(key=jax.random.key(0), scale=0.9 / 16**0.5)
    h = model.impulse_response(params, 50)  # (50, 1, 1)
    ```
    """

    @property
    def a_shape(self) -> tuple[int, ...]:
        return (self.state_dim, self.state_dim)

    def _draw_a(self, key, scale, dtype) -> Array:
        return scale * jax.random.normal(key, self.a_shape, dtype)

    def transition(self, params: RNNParams) -> Float[Array, "d d"]:
        return params.a
