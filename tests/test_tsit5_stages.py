"""UnrolledTsit5 takes diffrax's Tsit5 steps: the same steps and the same solution."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf

MODEL = rf.DenseRNN(4)
LOSS = rf.ImpulseLoss(rf.modes_teacher([0.9, -0.5], [1.0, 0.5]), 5)


def _solve(solver, params, ts):
    def one(p):
        term = diffrax.ODETerm(lambda t, y, args: jax.tree.map(jnp.negative, args(y)))
        sol = diffrax.diffeqsolve(
            term,
            solver,
            0.0,
            5.0,
            None,
            p,
            args=jax.grad(lambda q: LOSS(MODEL, q)),
            saveat=diffrax.SaveAt(ts=ts, t1=True),  # ts: through the dense output
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
        )
        return sol.ys, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]

    return jax.vmap(one)(params)


def test_unrolled_tsit5_matches_diffrax_tsit5(key):
    params = rf.init_seeds(MODEL, jax.random.split(key, 4), scale=0.3)  # a parameter pytree
    ts = jnp.linspace(0.0, 5.0, 7)
    ys, accepted, rejected = _solve(diffrax.Tsit5(), params, ts)
    ys2, accepted2, rejected2 = _solve(rf.UnrolledTsit5(), params, ts)
    np.testing.assert_array_equal(accepted2, accepted)
    np.testing.assert_array_equal(rejected2, rejected)
    assert int(jnp.min(accepted)) > 10
    for x, x2 in zip(jax.tree.leaves(ys), jax.tree.leaves(ys2), strict=True):
        np.testing.assert_allclose(x2, x, rtol=1e-12, atol=1e-14)


@pytest.mark.slow  # through train_seeds: the solver's own equality is checked above
def test_unrolled_tsit5_in_gradient_flow(key):
    params = rf.init_seeds(MODEL, jax.random.split(key, 3), scale=0.3)
    save = rf.Save(num=3, metrics={"loss": lambda t, p: LOSS(MODEL, p)})

    def run(solver):
        method = rf.GradientFlow(5.0, solver=solver)
        return rf.train_seeds(LOSS.bind(MODEL), params, method, save=save)

    base, unrolled = run(diffrax.Tsit5()), run(rf.UnrolledTsit5())
    np.testing.assert_array_equal(unrolled.num_steps, base.num_steps)
    np.testing.assert_array_equal(unrolled.num_grad_evals, base.num_grad_evals)
    np.testing.assert_allclose(unrolled.metrics["loss"], base.metrics["loss"], rtol=1e-12)
    for x, x2 in zip(jax.tree.leaves(base.final), jax.tree.leaves(unrolled.final), strict=True):
        np.testing.assert_allclose(x2, x, rtol=1e-12, atol=1e-14)
