"""One learning rate and an honest time axis for gradient descent with any optax optimizer.

Ground truth: the closed-form gradient flow of a quadratic, $θ(t) = e^{-At}θ_0$, which
heavy-ball and Nesterov momentum β follow at flow time $\\sum η_k/(1-β)$ with an error
falling like η (log-log slope 1, as diffrax's `test_ode_order`); bitwise equality of an
optimizer given as a factory with the same optimizer built at the rate.
"""

import functools

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnflow as rf

A = jnp.asarray([1.0, 3.0])
THETA0 = jnp.asarray([1.0, -0.5])


def quadratic(theta):
    return 0.5 * jnp.sum(A * theta**2)


def flow(t):
    return jnp.exp(-A * t) * THETA0


@pytest.mark.parametrize(
    "optimizer",
    [optax.adam(0.001), optax.sgd(0.001), optax.sgd(0.001, momentum=0.9)],
    ids=["adam", "sgd", "momentum"],
)
def test_a_rate_given_twice_that_disagrees_is_refused(optimizer):
    # Before: GradientDescent(0.1, 100, optimizer=optax.adam(0.001)) ran and said t1 = 10.
    with pytest.raises(ValueError, match="give the rate once"):
        rf.GradientDescent(0.1, 100, optimizer=optimizer)


def test_an_injected_rate_that_disagrees_is_refused_and_one_that_agrees_runs_the_same():
    with pytest.raises(ValueError, match="give the rate once"):
        rf.GradientDescent(0.1, 100, optax.inject_hyperparams(optax.adam)(learning_rate=0.01))
    schedule = optax.cosine_decay_schedule(0.05, 40)
    other = optax.cosine_decay_schedule(0.05, 20)
    with pytest.raises(ValueError, match="give the rate once"):
        rf.GradientDescent(schedule, 40, optax.inject_hyperparams(optax.adam)(learning_rate=other))
    injected = rf.GradientDescent(
        schedule, 40, optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    )
    factory = rf.GradientDescent(schedule, 40, optax.adam)
    a = rf.train(quadratic, THETA0, injected)
    b = rf.train(quadratic, THETA0, factory)
    # optax evaluates the injected schedule in float32, the factory's rates are float64.
    np.testing.assert_allclose(a.final, b.final, rtol=1e-6)


def test_a_factory_is_the_optimizer_built_at_the_rate():
    for factory, built in (
        (optax.adam, optax.adam(0.02)),
        (functools.partial(optax.sgd, momentum=0.9), optax.sgd(0.02, momentum=0.9)),
    ):
        a = rf.train(quadratic, THETA0, rf.GradientDescent(0.02, 30, factory))
        b = rf.train(quadratic, THETA0, rf.GradientDescent(0.02, 30, built))
        np.testing.assert_array_equal(a.final, b.final)
        np.testing.assert_array_equal(a.ts, b.ts)


def test_adaptive_optimizers_are_labelled_a_sum_of_rates_not_flow_time():
    for optimizer in (optax.adam, optax.rmsprop, optax.adagrad, optax.lion):
        method = rf.GradientDescent(0.01, 10, optimizer)
        assert method.time_axis == "sum of rates" and method.t1 == pytest.approx(0.1)
        assert rf.train(quadratic, THETA0, method).time_axis == "sum of rates"
    for optimizer in (None, optax.sgd, functools.partial(optax.sgd, momentum=0.5)):
        assert rf.GradientDescent(0.01, 10, optimizer).time_axis == "flow time"
    assert rf.train(quadratic, THETA0, rf.GradientFlow(1.0)).time_axis == "flow time"


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_follows_the_flow_at_time_sum_of_rates_over_one_minus_beta(nesterov):
    # A step moves the flow by η/(1-β) = 10η: the O(η²) term is 10% of the error at
    # η = 0.001 and the slopes approach 1 from above (1.07, then 1.03); at η = 0.004 the
    # fast mode β^n of the start (β^50 = 0.5%) still shows.
    beta, t1 = 0.9, 2.0
    errors, etas = [], np.asarray([0.001, 0.0005, 0.00025])
    for eta in etas:
        steps = round(t1 * (1 - beta) / eta)
        opt = functools.partial(optax.sgd, momentum=beta, nesterov=nesterov)
        method = rf.GradientDescent(eta, steps, opt)
        assert method.time_scale == pytest.approx(1 / (1 - beta), rel=1e-12)
        assert method.t1 == pytest.approx(t1, rel=1e-12)
        traj = rf.train(quadratic, THETA0, method, save=rf.Save(ts=[t1 / 2, t1], params=True))
        np.testing.assert_allclose(traj.ts, [t1 / 2, t1], rtol=1e-12)
        errors.append(float(jnp.linalg.norm(traj.params[-1] - flow(t1))))
    slopes = np.diff(np.log(errors)) / np.diff(np.log(etas))
    assert np.all(np.abs(slopes - 1) < 0.1), slopes
    # On the sum-of-rates axis (t = Σ η), momentum would sit 10× further along the flow.
    assert errors[-1] < 0.1 * float(jnp.linalg.norm(flow(t1 * (1 - beta)) - flow(t1)))


def test_save_times_at_a_float32_sum_of_the_schedule_are_accepted():
    schedule = optax.cosine_decay_schedule(0.02, 2000, alpha=0.1)
    method = rf.GradientDescent(schedule, 2000)
    # The end time as a user sums it in float32 (the 40.0100212 against 40.0099961).
    rates = np.asarray([schedule(k) for k in range(0, 2000, 1)], np.float32)
    t_user = float(np.sum(rates, dtype=np.float32))
    assert t_user != method.t1 and abs(t_user / method.t1 - 1) < 1e-5
    traj = rf.train(quadratic, THETA0, method, save=rf.Save(ts=[0.0, t_user]))
    assert float(traj.ts[-1]) == method.t1 and int(traj.num_steps) == 2000
    with pytest.raises(ValueError, match="method's `t1`"):
        rf.Save(ts=[0.0, method.t1 * 1.001]).times(method.t1)


def test_plain_sgd_whose_rate_rounds_down_in_float32_is_plain_sgd():
    """float32(0.01) = 0.0099999998: the normalised updates of plain SGD are then a hair
    below 1, which reads as a momentum β of -2e-8; it is plain SGD (β = 0), not refused."""
    from rnnflow._engine.methods.optimizer_rate import _momentum

    rate32 = float(np.float32(0.01))
    c = np.full(8, rate32 / 0.01)
    assert c[0] < 1
    assert _momentum(c, rtol=1.2e-4) == 0.0
    assert _momentum(np.full(8, 0.9), rtol=1.2e-4) is None  # a tenth too slow: not SGD
