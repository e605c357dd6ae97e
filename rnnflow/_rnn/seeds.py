"""Initial parameters of an RNN for many seeds at once."""

import jax
import jax.numpy as jnp

from .models import AbstractRNN, RNNParams


def init_seeds(
    model: AbstractRNN, keys, *, scale: float, balanced: bool = False, dtype=None
) -> RNNParams:
    """`model.init` for each key in `keys` (shape `(seeds,)`): parameters with a seed axis.

    ```python
    params = init_seeds(model, jax.random.split(jax.random.key(0), 1000), scale=1e-3)
    ```
    """
    if not isinstance(model, AbstractRNN):
        raise TypeError(f"`model` must be an rnnflow model; got {type(model).__name__}.")
    keys = jnp.asarray(keys)
    if keys.ndim != 1 or not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        raise ValueError(
            f"`keys` must be a 1-d array of PRNG keys (jax.random.split(key, n)); got {keys.shape}."
        )
    # Validate the arguments once, eagerly, before vmapping.
    jax.eval_shape(
        lambda k: model.init(key=k, scale=scale, balanced=balanced, dtype=dtype), keys[0]
    )
    return jax.vmap(lambda k: model.init(key=k, scale=scale, balanced=balanced, dtype=dtype))(keys)
