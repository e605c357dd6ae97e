"""Gradient descent run to a time `t1` rather than for a number of steps, and every step size
of a sweep in one program.

Ground truth: separate runs at each rate with `round(t1 / lr)` steps (bitwise: the same
steps, stopping step, end time and result), the closed-form flow of a quadratic that
momentum follows at its flow time, and the modified flow at each rate solved alone.
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

TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
LRS = (0.04, 0.02, 0.01)
SAVE = rf.Save((0.0, 1.0, 2.0, 5.0))


def _equal(x, y) -> bool:
    return all(
        bool(jnp.array_equal(a, b))
        for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)
    )


def _problem(model=None):
    model = rf.DenseRNN(4) if model is None else model
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    keys = jax.random.split(jax.random.key(2), 3)
    return loss_fn, jax.vmap(lambda k: model.init(key=k, scale=0.3))(keys)


def test_a_constant_rate_to_t1_is_round_t1_over_lr_steps():
    method = rf.GradientDescent(0.04, t1=5.0)
    assert method.num_steps == 125 and method.t1 == pytest.approx(5.0)
    # With momentum β the flow time of a step is η/(1-β): t1 = 2 is 2 steps of 0.1 at β = 0.9.
    heavy = rf.GradientDescent(0.1, t1=2.0, optimizer=functools.partial(optax.sgd, momentum=0.9))
    assert heavy.num_steps == 2 and heavy.t1 == pytest.approx(2.0)
    loss_fn, params = _problem()
    p0 = jax.tree.map(lambda x: x[0], params)
    a = rf.train(loss_fn, p0, method, save=SAVE)
    b = rf.train(loss_fn, p0, rf.GradientDescent(0.04, 125), save=SAVE)
    assert _equal(a, b)


@pytest.mark.parametrize(
    "kernel, save",
    [
        pytest.param("generic", rf.Save(num=5), marks=pytest.mark.slow),
        pytest.param("auto", SAVE, marks=pytest.mark.slow),  # small_step's default run has it
        pytest.param("generic", SAVE, marks=pytest.mark.slow),
        pytest.param("auto", rf.Save(num=5), marks=pytest.mark.slow),
    ],
    ids=["generic-num", "fused-ts", "generic-ts", "fused-num"],
)
def test_vmapped_rates_each_take_their_own_steps_bitwise(kernel, save):
    # Every lane runs as the run at its rate alone would: the same steps (bitwise, against the
    # same batch of seeds at a constant rate), the same count, end time and result.
    model = rf.DiagonalRNN(6) if kernel == "auto" else rf.DenseRNN(4)  # fused or autodiff
    loss_fn, params = _problem(model)

    def to_time(p, lr):
        method = rf.GradientDescent(lr, t1=5.0, max_steps=500, kernel=kernel)
        return rf.train(loss_fn, p, method, save=save)

    rates = jnp.asarray(LRS)
    together = eqx.filter_jit(jax.vmap(to_time))(params, rates)
    for i, lr in enumerate(LRS):

        def alone(p, lr=lr):
            return rf.train(
                loss_fn, p, rf.GradientDescent(lr, round(5.0 / lr), kernel=kernel), save=save
            )

        # The same rate in every lane of a batch as wide: the lanes compute as `together`'s.
        same = eqx.filter_jit(jax.vmap(to_time))(params, jnp.full(3, lr))
        each = eqx.filter_jit(jax.vmap(alone))(params)
        assert _equal(same, each)
        assert _equal(jax.tree.map(lambda x: x[i], together), jax.tree.map(lambda x: x[i], each))
        assert int(together.num_steps[i]) == round(5.0 / lr)
        np.testing.assert_allclose(together.t_stop[i], 5.0, rtol=1e-6)


def test_a_stop_ends_each_rate_at_its_own_step():
    loss_fn, _ = _problem()
    stop = rf.Stop(loss_below=0.05)  # reached at about t = 48
    p0 = rf.DenseRNN(4).init(key=jax.random.key(2), scale=0.5)

    def to_time(lr):
        return rf.train(loss_fn, p0, rf.GradientDescent(lr, t1=100.0, max_steps=4000), stop=stop)

    together = jax.vmap(to_time)(jnp.asarray((0.05, 0.025)))
    for i, lr in enumerate((0.05, 0.025)):
        alone = rf.train(loss_fn, p0, rf.GradientDescent(lr, round(100.0 / lr)), stop=stop)
        assert int(alone.result) == rf.Result.converged
        assert int(together.num_steps[i]) == int(alone.num_steps) < round(100.0 / lr)
        assert int(together.result[i]) == rf.Result.converged
        np.testing.assert_allclose(together.final.a[i], alone.final.a, rtol=1e-12)


def test_momentum_to_t1_follows_the_closed_form_flow_at_every_rate():
    a, theta0 = jnp.asarray([1.0, 3.0]), jnp.asarray([1.0, -0.5])

    def quadratic(theta):
        return 0.5 * jnp.sum(a * theta**2)

    heavy = functools.partial(optax.sgd, momentum=0.5)

    def run(lr):
        method = rf.GradientDescent(lr, t1=2.0, optimizer=heavy, max_steps=4000)
        return rf.train(quadratic, theta0, method, save=rf.Save(num=2)).final

    rates = jnp.asarray([4e-3, 2e-3, 1e-3])
    errors = np.linalg.norm(jax.vmap(run)(rates) - (jnp.exp(-a * 2.0) * theta0)[None], axis=-1)
    slopes = np.diff(np.log(errors)) / np.diff(np.log(np.asarray(rates)))
    np.testing.assert_allclose(slopes, 1.0, atol=0.05)  # first order in η, at flow time t1


def test_too_few_max_steps_is_max_steps_reached_under_vmap_and_refused_in_a_sweep(tmp_path):
    loss_fn, params = _problem()
    p0 = jax.tree.map(lambda x: x[0], params)

    # `max_steps` bounds the whole run, however many saves cut it into segments.
    for save in (rf.Save(num=3), rf.Save(num=101)):

        def short(lr, save=save):
            method = rf.GradientDescent(lr, t1=5.0, max_steps=200, kernel="generic")
            return rf.train(loss_fn, p0, method, save=save)

        out = jax.vmap(short)(jnp.asarray(LRS))
        np.testing.assert_array_equal(out.result, [0] + [rf.Result.max_steps_reached] * 2)
        np.testing.assert_array_equal(out.num_steps, [125, 200, 200])
        np.testing.assert_allclose(out.t_stop, [5.0, 4.0, 2.0], rtol=1e-12)

    def setup(point, key):
        method = rf.GradientDescent(point["lr"], t1=5.0, max_steps=200)
        return loss_fn, rf.DenseRNN(4).init(key=key, scale=0.3), method

    sweep = rf.Sweep({"lr": LRS}, 2, setup, jax.random.key(0), rf.Save(num=3))
    with pytest.raises(ValueError, match=r"`lr` = 0.02 takes 250 steps, above `max_steps` = 200"):
        rf.run_sweep(sweep, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_a_sweep_runs_every_rate_in_one_program_as_a_loop_over_them(tmp_path):
    pytest.importorskip("zarr")
    loss_fn, _ = _problem()
    model = rf.DenseRNN(4)

    def setup(point, key):
        method = rf.GradientDescent(point["lr"], t1=5.0, max_steps=500)
        return loss_fn, model.init(key=key, scale=0.3), method

    def looped(point, key):
        return loss_fn, model.init(key=key, scale=0.3), rf.GradientDescent(point["lr"], t1=5.0)

    key = jax.random.key(0)
    one = rf.Sweep({"lr": LRS}, 4, setup, key, SAVE)
    loop = rf.Sweep({"lr": LRS}, 4, looped, key, SAVE, looped=("lr",))
    assert one.vmapped() == ("lr",) and loop.vmapped() == ()
    a = rf.run_sweep(one, tmp_path / "one.zarr", lanes=4)  # a point's 4 seeds per call
    b = rf.run_sweep(loop, tmp_path / "loop.zarr", lanes=4)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    np.testing.assert_array_equal(a.num_steps.values[:, 0], [125, 250, 500])


@pytest.mark.slow
def test_the_modified_flow_vmaps_over_its_rate():
    loss_fn, params = _problem()
    p0 = jax.tree.map(lambda x: x[0], params)
    ctl = diffrax.PIDController(rtol=1e-9, atol=1e-12)

    def run(lr):
        return rf.train(loss_fn, p0, rf.ModifiedFlow(lr, 1.0, stepsize_controller=ctl)).final.a

    together = jax.vmap(run)(jnp.asarray(LRS))
    np.testing.assert_allclose(together[-1], run(LRS[-1]), rtol=1e-8, atol=1e-11)
    assert not np.allclose(together[0], together[-1], rtol=1e-6)  # the rate matters


@pytest.mark.slow
def test_the_modified_flow_differentiates_in_its_rate():
    loss_fn, params = _problem()
    p0 = jax.tree.map(lambda x: x[0], params)
    ctl = diffrax.PIDController(rtol=1e-10, atol=1e-13)

    @jax.jit
    def f(lr):
        method = rf.ModifiedFlow(lr, 1.0, stepsize_controller=ctl)
        return jnp.sum(rf.train(loss_fn, p0, method, save=rf.Save(num=2)).final.a)

    h = 1e-4
    np.testing.assert_allclose(jax.grad(f)(0.02), (f(0.02 + h) - f(0.02 - h)) / (2 * h), rtol=1e-5)


def test_bad_combinations_are_refused_with_what_to_give():
    with pytest.raises(TypeError, match="either `num_steps` or `t1`"):
        rf.GradientDescent(0.1)
    with pytest.raises(TypeError, match="not both"):
        rf.GradientDescent(0.1, 10, t1=1.0)
    with pytest.raises(TypeError, match="give one of them"):
        rf.GradientDescent(0.1, 10, max_steps=5)
    with pytest.raises(TypeError, match="`t1` must be a number"):
        jax.vmap(lambda t: rf.GradientDescent(0.1, t1=t, max_steps=50).num_steps)(jnp.ones(2))
    with pytest.raises(ValueError, match="with a schedule"):
        rf.GradientDescent(optax.constant_schedule(0.1), t1=1.0)
    with pytest.raises(ValueError, match="needs `max_steps`"):
        jax.vmap(lambda lr: rf.GradientDescent(lr, t1=1.0).num_steps)(jnp.asarray(LRS))
    with pytest.raises(ValueError, match="not one step"):
        rf.GradientDescent(2.0, t1=1.0)
    with pytest.raises(ValueError, match="above `max_steps` = 5"):
        rf.GradientDescent(0.1, t1=1.0, max_steps=5)
    with pytest.raises(ValueError, match=r"`t1` must be positive"):
        rf.GradientDescent(0.1, t1=-1.0)
    loss_fn, params = _problem()
    p0 = jax.tree.map(lambda x: x[0], params)
    with pytest.raises(ValueError, match="Save\\(every=...\\)"):
        jax.vmap(
            lambda lr: (
                rf.train(
                    loss_fn,
                    p0,
                    rf.GradientDescent(lr, t1=1.0, max_steps=200),
                    save=rf.Save(every=10),
                ).final
            )
        )(jnp.asarray(LRS))
