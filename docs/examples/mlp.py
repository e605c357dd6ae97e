"""An equinox MLP trained by gradient descent and by gradient flow, over 256 seeds.

Any pytree trains: here `eqx.nn.MLP` modules, one per seed, made by `eqx.filter_vmap` of
the constructor over keys. Their weights and biases are trained; their activation
functions are held fixed. Gradient descent at step η and the gradient flow are compared at
the same flow times, where they agree to O(η). Run: python docs/examples/mlp.py
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import rnnflow as rf

X = jnp.linspace(-2.0, 2.0, 32)[:, None]
Y = jnp.sin(2.0 * X)


def loss_fn(mlp):
    return jnp.mean((jax.vmap(mlp)(X) - Y) ** 2)


def make_mlp(key):
    return eqx.nn.MLP(1, 1, width_size=16, depth=2, activation=jnp.tanh, key=key)


def main(seeds: int = 256, t1: float = 40.0, lr: float = 0.05):
    mlps = eqx.filter_vmap(make_mlp)(jax.random.split(jax.random.key(0), seeds))
    save = rf.Save(num=5)
    gd = rf.train_seeds(loss_fn, mlps, rf.GradientDescent(lr, round(t1 / lr)), save=save)
    gf = rf.train_seeds(loss_fn, mlps, rf.GradientFlow(t1), save=save)
    gd_loss, gf_loss = np.asarray(gd.metrics["loss"]), np.asarray(gf.metrics["loss"])
    gap = np.median(np.abs(gd_loss - gf_loss) / gf_loss, axis=0)
    print(f"{seeds} seeds; GD: {gd.summary()}, GF: {gf.summary()}")
    for t, a, b, g in zip(np.asarray(gd.ts[0]), np.median(gd_loss, 0), np.median(gf_loss, 0), gap):
        print(f"  t = {t:5.1f}: median loss GD {a:.2e}, GF {b:.2e}; median relative gap {g:.1e}")
    return gd, gf


if __name__ == "__main__":
    main()
