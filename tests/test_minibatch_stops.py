"""A `Minibatch` as its docstring says: gradient descent steps on minibatches but saves and
stops on the full loss (as the stochastic flow does), and fixed leaves of the parameters (a
Python float) are kept fixed by the stochastic flow as by gradient descent.

Ground truth: the full loss in closed form, and a run whose fixed value is written into
the loss instead of the parameters (the same SDE, the same Brownian path)."""

import jax
import jax.numpy as jnp
import numpy as np

import rnnflow as rf

DATA = jnp.asarray([0.0, 10.0])


def _split_loss():
    # Full loss 0.5 (θ² + (θ - 10)²) / 2 ≥ 12.5 (at θ = 5); one example's loss is 0 at θ = 0.
    return rf.Minibatch(lambda th, z: 0.5 * (th - z) ** 2, DATA, batch_size=1)


def test_gradient_descent_on_a_minibatch_stops_on_the_full_loss():
    mb = _split_loss()
    keys = jax.random.split(jax.random.key(0), 8)
    theta0 = jnp.zeros(8)
    stop = rf.Stop(loss_below=1e-3)
    traj = rf.train_seeds(mb, theta0, rf.GradientDescent(0.1, 100), stop=stop, keys=keys)
    # The full loss never falls below 12.5: no seed converges, every one takes 100 steps.
    assert traj.summary() == {"finished": 8}
    np.testing.assert_array_equal(traj.num_steps, 100)
    assert np.all(np.asarray(jax.vmap(mb)(traj.final)) >= 12.5)


def test_gradient_descent_on_a_minibatch_diverges_on_the_full_loss():
    # The full loss at θ = 0 is 25, above the limit, whichever example a seed draws first.
    keys = jax.random.split(jax.random.key(0), 8)
    traj = rf.train_seeds(
        _split_loss(),
        jnp.zeros(8),
        rf.GradientDescent(0.1, 100),
        stop=rf.Stop(loss_above=20.0),
        keys=keys,
    )
    assert traj.summary() == {"diverged": 8}
    np.testing.assert_array_equal(traj.num_steps, 0)


def test_stochastic_flow_keeps_a_python_float_fixed():
    data = jax.random.normal(jax.random.key(1), (4, 2))

    def example(p, z):
        return 0.5 * p["scale"] * jnp.sum((p["theta"] - z) ** 2)

    mb = rf.Minibatch(example, data, batch_size=2)
    method = rf.StochasticFlow(0.1, 0.5)
    key = jax.random.key(0)
    traj = rf.train(mb, {"theta": jnp.zeros(2), "scale": 2.0}, method, key=key)
    # The same run with the fixed value in the loss: the same noise, the same path.
    baked = rf.Minibatch(lambda p, z: example({**p, "scale": 2.0}, z), data, batch_size=2)
    ref = rf.train(baked, {"theta": jnp.zeros(2)}, method, key=key)
    assert traj.final["scale"] == 2.0
    np.testing.assert_array_equal(traj.final["theta"], ref.final["theta"])
    assert not np.allclose(traj.final["theta"], 0.0)  # it moved
