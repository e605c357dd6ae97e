"""Incremental learning in a two-layer linear network, against its closed form.

A diagonal two-layer linear network predicts the strengths s_i with the products
u_i = w2_i · w1_i; its loss is L = Σ_i (w2_i w1_i − s_i)². From a balanced start
(w1 = w2 = √u0) the gradient flow keeps w1_i = w2_i, and each product follows the
sigmoidal solution of Saxe, McClelland and Ganguli (2014):

    du/dt = 4 u (s − u),    u(t) = s / (1 + (s/u0 − 1) e^{−4 s t}),

so mode i is half learnt at t_i = ln(s_i/u0 − 1) / (4 s_i): strong modes first, each after a
plateau (saddle-to-saddle dynamics). Run: python docs/examples/two_layer.py
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import rnnflow as rf

jax.config.update("jax_enable_x64", True)  # the comparison is to 1e-8: float64

STRENGTHS = jnp.asarray([4.0, 2.0, 1.0, 0.5])
U0 = 1e-6  # initial product: small, balanced initialization


def loss_fn(params):
    return jnp.sum((params["w2"] * params["w1"] - STRENGTHS) ** 2)


def closed_form(t):
    """u_i(t) for every save time t (rows) and mode i (columns)."""
    s, t = STRENGTHS[None, :], jnp.asarray(t)[:, None]
    return s / (1 + (s / U0 - 1) * jnp.exp(-4 * s * t))


def main(t1: float = 12.0, num: int = 241, rtol: float = 1e-10):
    params = {"w1": jnp.full(4, U0**0.5), "w2": jnp.full(4, U0**0.5)}
    product = {"product": lambda t, p: p["w2"] * p["w1"]}
    method = rf.GradientFlow(
        t1, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3)
    )
    traj = rf.train(loss_fn, params, method, save=rf.Save(num=num, metrics=product))
    u, exact = traj.metrics["product"], closed_form(traj.ts)
    error = float(jnp.max(jnp.abs(u - exact)) / jnp.max(STRENGTHS))
    # When each mode reaches half its strength: the first save time (every t1 / (num - 1))
    # from the run, and the formula.
    half = np.asarray(traj.ts)[np.argmax(np.asarray(u) >= np.asarray(STRENGTHS) / 2, axis=0)]
    s = np.asarray(STRENGTHS)
    predicted = np.log(s / U0 - 1) / (4 * s)
    print(f"largest error of the flow against the closed form: {error:.1e} (of max s)")
    for si, th, tp in zip(s, half, predicted, strict=True):
        print(f"  s = {si:3.1f}: half-learnt at t = {th:5.2f} (closed form {tp:5.2f})")
    return error, half, predicted


if __name__ == "__main__":
    main()
