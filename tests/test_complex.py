"""Complex parameters: a run with complex leaves is the run on their explicit (real,
imaginary) split, for every method and every tool that reads parameters.

Ground truth: the same loss written over real arrays `B_re`, `B_im` (a second
implementation of the parameterisation), run by the same method; JAX's gradient convention
checked against finite differences in the real parts. Before complex leaves were trained as
their split, `train` refused them (`TypeError: params['B'] must be real`).
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnflow as rf

D, K = 3, 6
TARGET = 0.8 ** jnp.arange(K) * jnp.cos(0.7 * jnp.arange(K))


def lru_loss(p):
    """An LRU's impulse response, λ = exp(-exp(ν) + iθ), fitted to a damped oscillation."""
    lam = jnp.exp(-jnp.exp(p["nu"]) + 1j * p["theta"])
    h = jnp.real((p["C"] * p["B"]) @ lam[:, None] ** jnp.arange(K)[None, :])
    return jnp.mean((h - TARGET) ** 2)


def split(p):
    return {
        "nu": p["nu"],
        "theta": p["theta"],
        "B_re": jnp.real(p["B"]),
        "B_im": jnp.imag(p["B"]),
        "C_re": jnp.real(p["C"]),
        "C_im": jnp.imag(p["C"]),
    }


def whole(q):
    return {
        "nu": q["nu"],
        "theta": q["theta"],
        "B": q["B_re"] + 1j * q["B_im"],
        "C": q["C_re"] + 1j * q["C_im"],
    }


def split_loss(q):
    return lru_loss(whole(q))


def init(key):
    k = jax.random.split(key, 6)
    return {
        "nu": jax.random.uniform(k[0], (D,), minval=-1.0, maxval=0.0),
        "theta": jax.random.uniform(k[1], (D,), maxval=1.0),
        "B": 0.5 * (jax.random.normal(k[2], (D,)) + 1j * jax.random.normal(k[3], (D,))),
        "C": 0.5 * (jax.random.normal(k[4], (D,)) + 1j * jax.random.normal(k[5], (D,))),
    }


PARAMS = init(jax.random.key(0))


def assert_same_run(a, b, rtol):
    """Trajectories of the complex run `a` and the split run `b` agree to `rtol`."""
    fa = split(a.final)
    for name in fa:
        np.testing.assert_allclose(fa[name], b.final[name], rtol=rtol, atol=rtol, err_msg=name)
    np.testing.assert_allclose(a.metrics["loss"], b.metrics["loss"], rtol=rtol, atol=1e-15)
    np.testing.assert_array_equal(a.ts, b.ts)
    assert int(a.num_steps) == int(b.num_steps)
    assert a.time_axis == b.time_axis


def test_complex_leaves_are_trained_and_come_back_complex():
    traj = rf.train(lru_loss, PARAMS, rf.GradientDescent(0.05, 10), save=rf.Save(params=True))
    assert traj.final["B"].dtype == jnp.complex128
    assert traj.params["C"].shape == (101, D) and traj.params["C"].dtype == jnp.complex128
    assert float(traj.metrics["loss"][-1]) < float(traj.metrics["loss"][0])


def test_steepest_descent_is_minus_the_conjugate_of_jax_grad():
    # JAX: grad L(z) = ∂L/∂x - i ∂L/∂y for z = x + iy, so -conj(grad) = -(∂L/∂x + i ∂L/∂y).
    g = jax.grad(lru_loss)(PARAMS)["B"]
    eps = 1e-6
    for j in range(D):
        e = jnp.zeros(D).at[j].set(1.0)
        for direction, want in ((e, g[j].real), (1j * e, -g[j].imag)):
            up = lru_loss({**PARAMS, "B": PARAMS["B"] + eps * direction})
            down = lru_loss({**PARAMS, "B": PARAMS["B"] - eps * direction})
            np.testing.assert_allclose((up - down) / (2 * eps), want, rtol=1e-7, atol=1e-12)
    # One gradient step of the engine moves B by -η conj(grad).
    eta = 1e-3
    step = rf.train(lru_loss, PARAMS, rf.GradientDescent(eta, 1), save=rf.Save(num=1))
    np.testing.assert_allclose(step.final["B"], PARAMS["B"] - eta * jnp.conj(g), rtol=1e-13)


def _minibatch(loss):
    """`loss` as the mean over examples of a per-lag loss (for SGD and the stochastic flow)."""
    data = jnp.arange(K)

    def example(p, k):
        return K * loss(p, k)

    return rf.Minibatch(example, data, batch_size=2)


def _lag_loss(p, k):
    lam = jnp.exp(-jnp.exp(p["nu"]) + 1j * p["theta"])
    h = jnp.real(jnp.sum(p["C"] * p["B"] * lam**k))
    return (h - TARGET[k]) ** 2 / K


def _split_lag_loss(q, k):
    return _lag_loss(whole(q), k)


METHODS = {
    "sgd": (rf.GradientDescent(0.1, 60), 1e-12),
    "momentum": (rf.GradientDescent(0.05, 60, functools.partial(optax.sgd, momentum=0.9)), 1e-12),
    "nesterov": (rf.GradientDescent(0.05, 60, optax.sgd(0.05, momentum=0.5, nesterov=True)), 1e-12),
    "adam": (rf.GradientDescent(0.02, 60, optax.adam), 1e-12),
    "adam_schedule": (
        rf.GradientDescent(
            optax.cosine_decay_schedule(0.02, 60),
            60,
            optax.inject_hyperparams(optax.adam)(
                learning_rate=optax.cosine_decay_schedule(0.02, 60)
            ),
        ),
        1e-12,
    ),
    "rmsprop": (rf.GradientDescent(0.01, 60, optax.rmsprop), 1e-12),
    # An adaptive solve amplifies rounding through its step-size choices: to its tolerance.
    "flow": (rf.GradientFlow(3.0), 1e-9),
    "kvaerno5": (rf.GradientFlow(3.0, solver=diffrax.Kvaerno5()), 1e-9),
    "modified": (rf.ModifiedFlow(0.1, 3.0), 1e-9),
}


# The default run checks one of each kind; the rest (compile-bound, ~10-35 s each on a
# shared 2-core CPU) are slow checks.
SLOW = ("nesterov", "adam_schedule", "rmsprop", "kvaerno5", "modified")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in METHODS]
)
def test_a_complex_run_is_the_run_on_the_real_split(name):
    method, rtol = METHODS[name]
    save = rf.Save(num=7)
    a = rf.train(lru_loss, PARAMS, method, save=save)
    b = rf.train(split_loss, split(PARAMS), method, save=save)
    assert a.summary() == b.summary() == {"finished": 1}
    assert_same_run(a, b, rtol)


def test_optax_adam_on_complex_leaves_is_not_adam_on_the_split():
    # Why the engine steps on the real parts: optax's Adam keeps one second moment |g|² per
    # complex entry, shared by its real and imaginary parts, so it is another optimizer.
    g = jax.grad(lru_loss)(PARAMS)
    opt = optax.adam(0.1)
    direct, _ = opt.update(jax.tree.map(jnp.conj, g), opt.init(PARAMS))
    parts, _ = opt.update(jax.grad(split_loss)(split(PARAMS)), opt.init(split(PARAMS)))
    assert not np.allclose(split(direct)["B_re"], parts["B_re"])
    engine = rf.train(lru_loss, PARAMS, rf.GradientDescent(0.1, 1, optax.adam))
    moved = split(engine.final)
    np.testing.assert_allclose(moved["B_re"] - split(PARAMS)["B_re"], parts["B_re"], rtol=1e-12)
    np.testing.assert_allclose(moved["B_im"] - split(PARAMS)["B_im"], parts["B_im"], rtol=1e-12)


@pytest.mark.parametrize("kind", ["sgd", "stochastic"])
@pytest.mark.slow
def test_minibatch_runs_with_complex_leaves_are_the_split_runs(kind):
    key = jax.random.key(3)
    if kind == "sgd":
        method, save = rf.GradientDescent(0.1, 40), rf.Save(num=5)
    else:
        method, save = rf.StochasticFlow(0.1, 2.0, dt0=0.05), rf.Save(num=5)
    a = rf.train(_minibatch(_lag_loss), PARAMS, method, save=save, key=key)
    b = rf.train(_minibatch(_split_lag_loss), split(PARAMS), method, save=save, key=key)
    assert_same_run(a, b, 1e-11)


def test_sharpness_of_complex_parameters_is_that_of_the_real_split():
    n = 6 * D  # ν, θ, and two parts each of B and C
    got = rf.hessian_eigenvalues(lru_loss, PARAMS, k=n)
    flat, unravel = jax.flatten_util.ravel_pytree(split(PARAMS))
    dense = jax.hessian(lambda x: split_loss(unravel(x)))(flat)
    np.testing.assert_allclose(got, np.linalg.eigvalsh(dense)[::-1], rtol=1e-9, atol=1e-12)
    metric = rf.sharpness_metric(lru_loss, k=2)(0.0, PARAMS)
    np.testing.assert_allclose(metric, got[:2], rtol=1e-9)


def test_ntk_and_linearization_of_complex_parameters_are_the_split_ones():
    def response(p):
        lam = jnp.exp(-jnp.exp(p["nu"]) + 1j * p["theta"])
        return jnp.real((p["C"] * p["B"]) @ lam[:, None] ** jnp.arange(K)[None, :])

    def split_response(q):
        return response(whole(q))

    k_complex = rf.ntk(response, PARAMS)
    k_split = rf.ntk(split_response, split(PARAMS))
    np.testing.assert_allclose(k_complex, k_split, rtol=1e-12, atol=1e-14)
    # The Taylor model, and a run of it: the same as the split's.
    lin, lin_split = rf.linearize(response), rf.linearize(split_response)

    def loss(p):
        return jnp.mean((lin(p) - TARGET) ** 2)

    def loss_split(p):
        return jnp.mean((lin_split(p) - TARGET) ** 2)

    method = rf.GradientDescent(0.1, 30)
    a = rf.train(loss, rf.TaylorParams(PARAMS), method)
    b = rf.train(loss_split, rf.TaylorParams(split(PARAMS)), method)
    for name, value in split(a.final.delta).items():
        np.testing.assert_allclose(value, b.final.delta[name], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(a.final.theta0["B"], PARAMS["B"])  # held


@pytest.mark.slow
def test_train_seeds_checkpoints_resume_complex_runs(tmp_path):
    params = jax.vmap(init)(jax.random.split(jax.random.key(1), 4))
    method, save = rf.GradientDescent(0.05, 20, optax.adam), rf.Save(num=3, params=True)
    first = rf.train_seeds(lru_loss, params, method, save=save, chunk_size=2, checkpoint=tmp_path)
    again = rf.train_seeds(lru_loss, params, method, save=save, chunk_size=2, checkpoint=tmp_path)
    assert first.final["B"].dtype == jnp.complex128 and first.params["B"].shape == (4, 3, D)
    for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(x, y)
    split_run = rf.train_seeds(split_loss, jax.vmap(split)(params), method, save=save)
    for name, value in split(first.final).items():
        np.testing.assert_allclose(value, split_run.final[name], rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_a_sweep_of_complex_parameters_stores_the_split_sweep(tmp_path):
    def setup(point, key, as_split=False):
        p = jax.tree.map(lambda x: x * point["scale"], init(key))
        loss = split_loss if as_split else lru_loss
        return loss, split(p) if as_split else p, rf.GradientDescent(point["lr"], 30)

    def sweep(fn):
        return rf.Sweep(
            {"scale": [0.5, 1.0], "lr": [0.05, 0.1]}, 3, fn, jax.random.key(0), rf.Save(num=3)
        )

    a = rf.run_sweep(sweep(setup), tmp_path / "a.zarr", progress=False)
    b = rf.run_sweep(
        sweep(functools.partial(setup, as_split=True)), tmp_path / "b.zarr", progress=False
    )
    np.testing.assert_allclose(a.loss.values, b.loss.values, rtol=1e-12)
    np.testing.assert_array_equal(a.result.values, b.result.values)


@pytest.mark.slow
def test_a_loss_with_its_own_complex_gradient_is_read_in_jax_convention():
    class Own(eqx.Module):
        def __call__(self, p):
            return lru_loss(p)

        def value_and_grad(self, p):
            return jax.value_and_grad(lru_loss)(p)

    method = rf.GradientDescent(0.05, 20)
    a = rf.train(Own(), PARAMS, method)
    b = rf.train(lru_loss, PARAMS, method)
    for x, y in zip(jax.tree.leaves(a.final), jax.tree.leaves(b.final), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-13)
