"""A complex LRU over 64 seeds: Adam on a cosine schedule and the gradient flow.

The recurrence is diagonal and complex, $λ_j = \\exp(-\\exp(ν_j) + iθ_j)$, with complex
input and output weights $B$ and $C$; its impulse response $h_k = \\mathrm{Re}
\\sum_j C_j λ_j^k B_j$ is fitted to a damped oscillation. The complex leaves $B$ and $C$
are trained as their real and imaginary parts, so the run is the run on that explicit
split: the script checks it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnflow as rf

D, K = 8, 16  # state size, lags fitted
TARGET = 0.9 ** jnp.arange(K) * jnp.cos(0.5 * jnp.arange(K))


def lru_loss(p):
    lam = jnp.exp(-jnp.exp(p["nu"]) + 1j * p["theta"])
    h = jnp.real((p["C"] * p["B"]) @ lam[:, None] ** jnp.arange(K)[None, :])
    return jnp.mean((h - TARGET) ** 2)


def init(key):
    k = jax.random.split(key, 4)
    radius = jax.random.uniform(k[0], (D,), minval=0.5, maxval=0.95)

    def weights(key):  # complex normal, variance 1 / D
        return (jax.random.normal(key, (D, 2)) @ jnp.asarray([1.0, 1j])) / jnp.sqrt(2.0 * D)

    return {
        "nu": jnp.log(-jnp.log(radius)),
        "theta": jax.random.uniform(k[1], (D,), maxval=jnp.pi),
        "B": weights(k[2]),
        "C": weights(k[3]),
    }


def split(p):
    """The same parameters as real arrays only."""
    parts = {f"{n}_{part}": getattr(p[n], part) for n in "BC" for part in ("real", "imag")}
    return {"nu": p["nu"], "theta": p["theta"], **parts}


def split_loss(q):
    return lru_loss(
        {
            "nu": q["nu"],
            "theta": q["theta"],
            "B": q["B_real"] + 1j * q["B_imag"],
            "C": q["C_real"] + 1j * q["C_imag"],
        }
    )


def main(seeds=64, steps=2000, t1=20.0):
    params = jax.vmap(init)(jax.random.split(jax.random.key(0), seeds))
    save = rf.Save(num=5)
    # The rate is given once: `optax.adam` is called with the schedule.
    adam = rf.GradientDescent(optax.cosine_decay_schedule(0.02, steps), steps, optax.adam)
    by_adam = rf.train_seeds(lru_loss, params, adam, save=save)
    by_flow = rf.train_seeds(lru_loss, params, rf.GradientFlow(t1), save=save)
    on_split = rf.train_seeds(split_loss, jax.vmap(split)(params), adam, save=save)
    gap = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree.leaves(jax.vmap(split)(by_adam.final)), jax.tree.leaves(on_split.final)
        )
    )
    print(f"{seeds} seeds; Adam: {by_adam.summary()}, flow: {by_flow.summary()}")
    print(f"Adam's time axis is the {by_adam.time_axis}, to t = {float(adam.t1):.2f};")
    print(f"the flow's is {by_flow.time_axis}, to t = {t1:g}: they are not one axis.")
    adam_loss, flow_loss = (np.median(t.metrics["loss"][:, -1]) for t in (by_adam, by_flow))
    print(f"  median final loss: Adam {adam_loss:.1e}, flow {flow_loss:.1e}")
    print(f"largest difference from the run on the (real, imaginary) split: {gap:.1e}")
    return by_adam, by_flow, gap


if __name__ == "__main__":
    main()
