"""Beyond the small-step limit: Hessian sharpness, minibatch SGD per seed, and the SDE of SGD.

Ground truth: the full Hessian's eigenvalues (`jnp.linalg.eigh`), the closed-form moments of
SGD on a quadratic and of its Ornstein–Uhlenbeck limit, and the weak order of SGD against
the SDE, measured over 10³ seeds.

The quadratic: examples z_i, per-example loss ½‖θ − z_i‖², so L = mean_i ½‖θ − z_i‖² with
gradient θ − z̄ and minibatch-gradient covariance C/B (C the examples' covariance, drawn
with replacement). SGD: θ ← θ − η(θ − z̄_B), stationary covariance ηC/(B(2 − η)); the SDE
dθ = −(θ − z̄)dt + √(η/B) C^{1/2} dW, stationary covariance ηC/(2B), mean z̄.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import rnnflow as rf

TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
Z = jax.random.normal(jax.random.key(0), (6, 2)) * jnp.asarray([[1.0, 2.0]])
ZBAR = np.asarray(Z.mean(0))
C = np.cov(np.asarray(Z).T, bias=True)
B = 2
QUADRATIC = rf.Minibatch(lambda th, z: 0.5 * jnp.sum((th - z) ** 2), Z, batch_size=B)
SEEDS = 1000
KEYS = jax.random.split(jax.random.key(1), SEEDS)


def _sample_cov(traj):
    samples = np.asarray(traj.params).reshape(-1, 2)
    return samples.mean(0), np.cov(samples.T), len(samples)


# -- sharpness ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [  # the dense one's Lanczos path is also checked by the per-seed save metric below
        rf.DiagonalRNN(10),
        pytest.param(rf.DenseRNN(5), marks=pytest.mark.slow),
        pytest.param(rf.TanhRNN(4), marks=pytest.mark.slow),
    ],
    ids=["diag", "dense", "tanh"],
)
def test_top_hessian_eigenvalues_equal_those_of_the_full_hessian(model):
    if isinstance(model, rf.TanhRNN):
        loss_fn = rf.SequenceLoss.sample(TEACHER, 5, 16, key=jax.random.key(2)).bind(model)
    else:
        loss_fn = rf.ImpulseLoss(TEACHER, 6).bind(model)
    params = model.init(key=jax.random.key(0), scale=0.5)
    flat, unravel = ravel_pytree(params)
    full = np.sort(np.linalg.eigvalsh(jax.hessian(lambda x: loss_fn(unravel(x)))(flat)))[::-1]
    for iters in (None, 24):  # all n iterations, and fewer
        top = rf.hessian_eigenvalues(loss_fn, params, k=3, iters=iters)
        np.testing.assert_allclose(top, full[:3], rtol=1e-6)


def test_sharpness_is_a_save_metric_per_seed():
    model = rf.DenseRNN(4)
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(3), 3), scale=0.4)
    save = rf.Save(num=3, metrics={"sharpness": rf.sharpness_metric(loss_fn, k=2)})
    traj = rf.train_seeds(loss_fn, params, rf.GradientDescent(0.02, 50), save=save)
    assert traj.metrics["sharpness"].shape == (3, 3, 2)
    for i in range(3):
        final = jax.tree.map(lambda x: x[i], traj.final)
        flat, unravel = ravel_pytree(final)
        h = jax.hessian(lambda x: loss_fn(unravel(x)))(flat)
        top = np.sort(np.linalg.eigvalsh(h))[::-1][:2]
        np.testing.assert_allclose(traj.metrics["sharpness"][i, -1], top, rtol=1e-6)


def test_sharpness_of_an_equinox_module_with_fixed_leaves():
    mlp = eqx.nn.MLP(2, 1, width_size=3, depth=1, activation=jnp.tanh, key=jax.random.key(4))
    xs = jax.random.normal(jax.random.key(5), (10, 2))

    def loss_fn(m):
        return jnp.mean((jax.vmap(m)(xs)[:, 0] - jnp.sin(xs[:, 0])) ** 2)

    diff, static = eqx.partition(mlp, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)
    h = jax.hessian(lambda x: loss_fn(eqx.combine(unravel(x), static)))(flat)
    full = np.sort(np.linalg.eigvalsh(h))[::-1]
    np.testing.assert_allclose(rf.hessian_eigenvalues(loss_fn, mlp, k=2), full[:2], rtol=1e-6)


# -- minibatch SGD --------------------------------------------------------------------------


def test_each_seed_draws_its_own_minibatches():
    theta0 = jnp.zeros((8, 2))
    keys = KEYS[:8]
    method, save = rf.GradientDescent(0.1, 200), rf.Save(num=3)
    batch = rf.train_seeds(QUADRATIC, theta0, method, save=save, keys=keys, lanes=8)
    for i in (0, 5):  # alone, in the same program (one lane of eight), and by `train`
        alone = rf.train_seeds(
            QUADRATIC, theta0[i : i + 1], method, save=save, keys=keys[i : i + 1], lanes=8
        )
        assert all(
            np.array_equal(a[0], np.asarray(b)[i])
            for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(batch), strict=True)
        )
        one = rf.train(QUADRATIC, theta0[i], method, save=save, key=keys[i])
        np.testing.assert_array_equal(one.final, batch.final[i])
    assert len({tuple(np.asarray(x)) for x in batch.final}) == 8  # different noise per seed
    with pytest.raises(TypeError, match="give `keys`"):
        rf.train_seeds(QUADRATIC, theta0, method)
    with pytest.raises(TypeError, match="give it a PRNG key"):
        rf.train(QUADRATIC, theta0[0], method)


def test_sgd_stationary_moments_on_a_quadratic():
    eta = 0.2
    save = rf.Save(ts=np.arange(20, 61, 2) * eta, params=True)  # after the transient
    traj = rf.train_seeds(
        QUADRATIC, jnp.zeros((SEEDS, 2)), rf.GradientDescent(eta, 300), save=save, keys=KEYS
    )
    mean, cov, n = _sample_cov(traj)
    expected = eta * C / (B * (2 - eta))
    # Sampling error: about sqrt(2 / samples) of the variances (samples ≈ 21 000, of which
    # the saves every 2 steps are correlated by 0.64: effective ≈ 9 000), the mean's
    # ≈ sqrt(var / 9000); bounds at four times those.
    assert np.all(np.abs(mean - ZBAR) <= 4 * np.sqrt(np.diag(expected) / 9000))
    np.testing.assert_allclose(np.diag(cov), np.diag(expected), rtol=4 * np.sqrt(2 / 9000))


def test_a_sequence_loss_trains_on_minibatches_of_its_sequences():
    model = rf.DenseRNN(3)
    full = rf.SequenceLoss.sample(TEACHER, 5, 12, key=jax.random.key(6), supervise="all").bind(
        model
    )
    loss_fn = full.minibatch(12, replace=False)  # every sequence, in a random order
    params = model.init(key=jax.random.key(7), scale=0.3)
    assert loss_fn(params) == full(params)
    sgd = rf.train(loss_fn, params, rf.GradientDescent(0.02, 30), key=jax.random.key(8))
    gd = rf.train(full, params, rf.GradientDescent(0.02, 30))
    # The whole data set in another order: the full gradient, summed in another order (this
    # run amplifies rounding: 1e-16 after 30 steps, 1e-10 after 60, 1e-3 after 100).
    for a, b in zip(jax.tree.leaves(sgd.final), jax.tree.leaves(gd.final), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert set(sgd.metrics) == {"loss", "relative_imbalance", "extrapolation"}
    with pytest.raises(TypeError, match="no examples"):
        rf.ImpulseLoss(TEACHER, 5).bind(model).minibatch(4)


# -- the stochastic flow --------------------------------------------------------------------


def test_stochastic_flow_stationary_moments_are_the_ornstein_uhlenbeck_ones():
    eta, dt = 0.2, 0.02
    save = rf.Save(ts=np.arange(4.0, 12.01, 0.4), params=True)
    traj = rf.train_seeds(
        QUADRATIC,
        jnp.broadcast_to(jnp.asarray(ZBAR), (SEEDS, 2)),
        rf.StochasticFlow(eta, 12.0, dt0=dt),
        save=save,
        keys=KEYS,
    )
    assert traj.summary() == {"finished": SEEDS}
    mean, cov, n = _sample_cov(traj)
    expected = eta * C / (2 * B)
    # Saves 0.4 apart are correlated by e^{-0.8} = 0.45 (variances by 0.2): effective
    # samples ≈ 15 000; Euler–Maruyama at dt biases the variance by dt/2 = 1%.
    assert np.all(np.abs(mean - ZBAR) <= 4 * np.sqrt(np.diag(expected) / 15_000))
    np.testing.assert_allclose(
        np.diag(cov), np.diag(expected), rtol=4 * np.sqrt(2 / 15_000) + dt / 2
    )
    np.testing.assert_allclose(
        cov[0, 1], expected[0, 1], atol=0.05 * np.sqrt(np.prod(np.diag(expected)))
    )


@pytest.mark.slow
def test_weak_error_of_sgd_against_the_sde_is_first_order():
    # From θ0 = z̄ + 10 to T = 2: the moments of SGD at step η and of the SDE (solved with
    # steps η/10) differ by O(η): the mean by ≈ 10 e^{-2} η, far above the sampling error
    # (≈ 0.01 over 10³ seeds).
    theta0 = jnp.broadcast_to(jnp.asarray(ZBAR) + 10.0, (SEEDS, 2))
    errors = []
    for eta in (0.2, 0.1, 0.05):
        save = rf.Save(ts=[2.0], params=True)
        sgd = rf.train_seeds(
            QUADRATIC, theta0, rf.GradientDescent(eta, round(2 / eta)), save=save, keys=KEYS
        )
        sde = rf.train_seeds(
            QUADRATIC, theta0, rf.StochasticFlow(eta, 2.0, dt0=eta / 10), save=save, keys=KEYS
        )
        a, b = np.asarray(sgd.final) - ZBAR, np.asarray(sde.final) - ZBAR
        errors.append([abs(a.mean() - b.mean()), abs((a**2).mean() - (b**2).mean())])
    errors = np.asarray(errors)
    slopes = np.polyfit(np.log([0.2, 0.1, 0.05]), np.log(errors), 1)[0]
    np.testing.assert_allclose(slopes, [1.0, 1.0], atol=0.2)
    # And against the closed forms: E[θ_T - z̄] = (1 - η)^{T/η} · 10 (SGD), e^{-T} · 10 (SDE).
    exact = 10 * np.abs(
        (1 - np.asarray([0.2, 0.1, 0.05])) ** (2 / np.asarray([0.2, 0.1, 0.05])) - np.exp(-2)
    )
    np.testing.assert_allclose(errors[:, 0], exact, rtol=0.25)


def test_stochastic_flow_needs_noise_and_a_key():
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(rf.DiagonalRNN(3))
    params = rf.DiagonalRNN(3).init(key=jax.random.key(0), scale=0.1)
    with pytest.raises(TypeError, match="noise_factor"):
        rf.train(loss_fn, params, rf.StochasticFlow(0.1, 1.0), key=jax.random.key(0))
    with pytest.raises(TypeError, match="give it a PRNG key"):
        rf.train(QUADRATIC, jnp.zeros(2), rf.StochasticFlow(0.1, 1.0))
    with pytest.raises(ValueError, match="more than max_steps"):
        rf.StochasticFlow(0.1, 1.0, dt0=0.01, max_steps=10)
    with pytest.raises(ValueError, match="`covariance` must be one of"):
        rf.StochasticFlow(0.1, 1.0, covariance="full")
    with pytest.raises(ValueError, match="`batch_size` = 7 exceeds"):
        rf.Minibatch(lambda p, z: 0.0, Z, batch_size=7, replace=False)
