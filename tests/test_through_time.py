"""The gradient of a sequence loss by backpropagation through time written out, for the tanh
and linear dense students.

Ground truth is autodiff of the same loss (the bound loss's `__call__`, which differentiates
the per-sequence model) and finite differences; training with it must take the steps that
training with autodiff takes (`kernel="generic"`), and derivatives through training must be
those of the autodiff path. Float64, so that rounding is far below what a wrong term makes.
"""

import json

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf
from rnnflow._rnn import through_time
from rnnflow._rnn.bound import BoundLoss


def _teacher(in_dim, out_dim):
    model = rf.DenseRNN(2, in_dim=in_dim, out_dim=out_dim)
    return rf.Teacher(model, model.init(key=jax.random.key(5), scale=0.6))


def _problem(model_type, supervise, in_dim=1, out_dim=1, k=4, n=7, d=5, scale=0.5):
    xs = jax.random.normal(jax.random.key(1), (n, k, in_dim))
    loss = rf.SequenceLoss(_teacher(in_dim, out_dim), xs, supervise=supervise)
    model = model_type(d, in_dim=in_dim, out_dim=out_dim)
    return loss, model, model.init(key=jax.random.key(2), scale=scale)


def _close(ours, theirs, rtol):
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max())


@pytest.mark.parametrize(
    "model_type, supervise, in_dim, out_dim, k",
    [
        (rf.TanhRNN, "all", 1, 1, 5),
        (rf.TanhRNN, "last", 2, 3, 3),
        (rf.TanhRNN, "all", 3, 1, 1),
        (rf.TanhRNN, "last", 1, 2, 12),
        (rf.DenseRNN, "all", 2, 3, 3),
        (rf.DenseRNN, "last", 1, 1, 5),
    ],
)
def test_gradient_equals_autodiff(model_type, supervise, in_dim, out_dim, k):
    loss, model, params = _problem(model_type, supervise, in_dim, out_dim, k)
    bound = loss.bind(model)
    assert isinstance(bound, through_time.DenseSequenceLoss)
    value, grad = jax.jit(lambda p: bound.value_and_grad(p))(params)
    ref_value, ref_grad = jax.jit(jax.value_and_grad(BoundLoss(loss, model)))(params)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    _close(grad, ref_grad, 1e-12)


def test_gradient_equals_finite_differences():
    loss, model, params = _problem(rf.TanhRNN, "all", scale=0.8)
    bound = loss.bind(model)
    _, grad = jax.jit(lambda p: bound.value_and_grad(p))(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(grad)[0]
    h = 1e-6
    basis = h * jnp.eye(flat.size)
    value = jax.jit(jax.vmap(lambda x: bound(unravel(x))))
    fd = (value(flat[None] + basis) - value(flat[None] - basis)) / (2 * h)  # central differences
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


class _TanhLike(rf.TanhRNN):
    """A subclass may change the recurrence: it keeps autodiff."""


def test_applies_to_the_dense_students_themselves_and_short_sequences():
    for model_type in (rf.TanhRNN, rf.DenseRNN):
        loss, model, _ = _problem(model_type, "all")
        assert isinstance(loss.bind(model), through_time.DenseSequenceLoss)
    xs = jnp.ones((3, through_time.MAX_TRAIN_LEN + 1, 1))
    long = rf.SequenceLoss(_teacher(1, 1), xs)
    loss, _, _ = _problem(rf.TanhRNN, "all")
    for bound in (
        long.bind(rf.TanhRNN(3)),
        loss.bind(_TanhLike(3)),
        loss.bind(rf.SymmetricRNN(3)),
        loss.bind(rf.DiagonalRNN(3)),
    ):
        assert type(bound) is BoundLoss and not hasattr(bound, "value_and_grad")


@pytest.mark.parametrize(
    "model_type", [rf.TanhRNN, pytest.param(rf.DenseRNN, marks=pytest.mark.slow)]
)
def test_descent_takes_the_steps_of_autodiff(model_type):
    loss, model, _ = _problem(model_type, "all", n=16)
    bound = loss.bind(model)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(3), 6), scale=0.3)
    save = rf.Save(num=5)
    runs = {
        kernel: rf.train_seeds(
            bound, params, rf.GradientDescent(0.05, 200, kernel=kernel), save=save
        )
        for kernel in ("auto", "generic")
    }
    _close(runs["auto"].params, runs["generic"].params, 1e-10)
    _close(runs["auto"].metrics["loss"], runs["generic"].metrics["loss"], 1e-10)

    def hand(p):  # a hand-written loop of autodiff steps
        def step(p, _):
            return jax.tree.map(lambda x, g: x - 0.05 * g, p, jax.grad(bound)(p)), None

        return jax.lax.scan(step, p, None, length=200)[0]

    _close(runs["auto"].final, jax.vmap(hand)(params), 1e-10)


@pytest.mark.slow
def test_derivatives_through_training_are_those_of_autodiff():
    loss, model, params = _problem(rf.TanhRNN, "all", n=8)
    bound = loss.bind(model)

    def final_loss(lr, kernel):
        method = rf.GradientDescent(lr, 30, kernel=kernel)
        return bound(rf.train(bound, params, method, save=rf.Save(num=2)).final)

    for kernel in ("auto", "generic"):
        assert eqx.is_array(jax.grad(final_loss)(0.05, kernel))
    np.testing.assert_allclose(
        jax.grad(final_loss)(0.05, "auto"), jax.grad(final_loss)(0.05, "generic"), rtol=1e-10
    )
    tangent = jax.jvp(lambda lr: final_loss(lr, "auto"), (0.05,), (1.0,))[1]
    np.testing.assert_allclose(tangent, jax.grad(final_loss)(0.05, "generic"), rtol=1e-10)


def test_lanes_fit_a_step_of_many_values_in_cache(tmp_path):
    """A student whose gradient makes over a megabyte per seed (the nonlinear experiment's
    tanh student on 256 sequences) runs in blocks of fewer seeds on a CPU; models of small
    steps keep the default."""
    from rnnflow._engine import blocks
    from rnnflow._engine.objective import Objective, split_real

    def gradient_bytes(loss_fn, params):
        trainable, fixed = split_real(params)
        return blocks.gradient_bytes(Objective(loss_fn, fixed), trainable)

    xs = jnp.ones((256, 5, 1), jnp.float32)
    big = rf.SequenceLoss(_teacher(1, 1), xs, supervise="all").bind(rf.TanhRNN(20))
    params = rf.TanhRNN(20).init(key=jax.random.key(0), scale=0.1, dtype=jnp.float32)
    step = gradient_bytes(big, params)
    # The 5 states and 5 deltas of 20 × 256 float32 values alone are 200 kB.
    assert step > 2e5
    assert blocks.cache_lanes(step) == blocks._CPU_STEP_BYTES // step < blocks._MIN_LANES
    small = rf.ImpulseLoss(_teacher(1, 1), 5).bind(rf.DenseRNN(8))
    p = rf.DenseRNN(8).init(key=jax.random.key(0), scale=0.1)
    assert blocks.cache_lanes(gradient_bytes(small, p)) > 1024
    # In a sweep, as in train_seeds: calls of at most that many lanes a device.
    sweep = rf.Sweep(
        {"init_scale": [0.1, 0.2]},
        40,
        lambda point, key: (
            big,
            rf.TanhRNN(20).init(key=key, scale=point["init_scale"], dtype=jnp.float32),
            rf.GradientDescent(0.01, 2),
        ),
        jax.random.key(0),
        rf.Save(num=2),
    )
    # One device: the default, a core's share of 64 lanes, is above the cache's limit.
    ds = rf.run_sweep(sweep, tmp_path / "s.zarr", devices=jax.devices()[:1], progress=False)
    assert ds.sizes["seed"] == 40
    units = (tmp_path / "s.zarr" / ".rnnflow").glob("unit-*")
    lanes = {json.loads(u.read_text())["lanes"] for u in units}
    assert lanes == {blocks.cache_lanes(step)}
