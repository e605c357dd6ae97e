"""The fused gradient-descent step for a diagonal student on the impulse loss.

Ground truth is the generic path: autodiff of the same loss, vmapped seed by seed. The
closed-form gradient must equal autodiff's, and every kernel must take the same steps, stop
the same seeds the same way and reach the same values (float64, as in every test, so that
rounding is far below the differences a wrong formula or a step more or less would make).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnflow as rf
from rnnflow._rnn import fused as _fused
from rnnflow._rnn.losses import fused_applies

TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])


@pytest.mark.parametrize("d, k", [(1, 1), (3, 2), (10, 5), (7, 32)])
def test_closed_form_gradient_equals_autodiff(d, k):
    model = rf.DiagonalRNN(d)
    loss = rf.ImpulseLoss(TEACHER, k)
    keys = jax.random.split(jax.random.key(d * k), 5)
    # Modes up to |a| = 1.05, so that the higher powers matter.
    params = rf.init_seeds(model, keys, scale=0.6, dtype=jnp.float64)
    value, grad = jax.vmap(jax.value_and_grad(lambda p: loss(model, p)))(params)
    assert fused_applies(loss.bind(model))
    y = loss.target[:, 0, 0]  # the teacher's impulse response: what the fused step fits
    v, (ga, gb, gc) = _fused.value_and_grad(params.a, params.b[..., 0], params.c[:, 0], y)
    np.testing.assert_allclose(v, value, rtol=1e-13)
    for ours, theirs in [(ga, grad.a), (gb, grad.b[..., 0]), (gc, grad.c[:, 0])]:
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14 * np.abs(theirs).max())


class _ImpulseLike(rf.AbstractLoss):
    """The impulse loss under another type: the same values, but no closed form is known
    for it."""

    teacher: rf.Teacher
    train_len: int = eqx.field(static=True)

    def __call__(self, model, params):
        return rf.ImpulseLoss(self.teacher, self.train_len)(model, params)


def test_applies_only_to_the_diagonal_single_input_impulse_loss():
    loss = rf.ImpulseLoss(TEACHER, 4)
    bound = loss.bind(rf.DiagonalRNN(3))
    assert fused_applies(bound)
    assert isinstance(bound, _fused.DiagonalImpulseLoss) and callable(bound.descend)
    for other in (
        loss.bind(rf.DenseRNN(3)),
        _ImpulseLike(TEACHER, 4).bind(rf.DiagonalRNN(3)),
        rf.ImpulseLoss(TEACHER, _fused.MAX_TRAIN_LEN + 1).bind(rf.DiagonalRNN(3)),
        rf.SequenceLoss.sample(TEACHER, 4, 8, key=jax.random.key(0)).bind(rf.DiagonalRNN(3)),
    ):
        assert not fused_applies(other)
        assert not isinstance(other, _fused.DiagonalImpulseLoss)
        assert not hasattr(other, "descend")
    # A plain function of the parameters offers no fused loop either.
    assert not hasattr(lambda p: loss(rf.DiagonalRNN(3), p), "descend")


MODEL = rf.DiagonalRNN(6)
LOSS = rf.ImpulseLoss(TEACHER, 5)
SAVE = rf.Save(num=5, params=True)
# Converge at 1e-3; seed 3 starts with a mode at a = 3, whose loss runs past loss_above.
STOP = rf.Stop(loss_below=1e-3, loss_above=1e6)


def _seeds(n=9):
    # Large enough an initialization that no seed lingers at a saddle: leaving one
    # amplifies rounding (a seed from scale 0.3 ends 6e-7 apart on the two paths, in the
    # same number of steps).
    params = rf.init_seeds(MODEL, jax.random.split(jax.random.key(2), n), scale=0.7)
    return eqx.tree_at(lambda p: p.a, params, params.a.at[3, 0].set(3.0))


def _assert_close(x, y):
    for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if not np.issubdtype(a.dtype, np.floating):
            np.testing.assert_array_equal(a, b)  # result codes and step counts
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)  # measured 3e-13


@pytest.mark.parametrize("kernel", ["auto", "pallas"])
def test_fused_kernels_equal_the_generic_path(kernel):
    params = _seeds()
    generic = rf.GradientDescent(0.05, 1500, kernel="generic")
    fused = rf.GradientDescent(0.05, 1500, kernel=kernel)
    ref = rf.train_seeds(LOSS.bind(MODEL), params, generic, save=SAVE, stop=STOP)
    # The run exercises every way a seed can end, and seeds that stop at different steps.
    assert ref.summary() == {"finished": 1, "converged": 7, "diverged": 1}
    assert len(np.unique(ref.num_steps)) == 8
    out = rf.train_seeds(LOSS.bind(MODEL), params, fused, save=SAVE, stop=STOP)
    _assert_close(_without_counts(out), _without_counts(ref))
    # The work done differs in one place: the fused loop's last pass evaluates the
    # gradient at the state its last step lands in; the generic loop does so only where
    # it must look before a step (a seed that stops), and takes the final loss forward.
    stopped = np.asarray(ref.result) != rf.Result.finished
    np.testing.assert_array_equal(ref.num_grad_evals, ref.num_steps + stopped)
    np.testing.assert_array_equal(out.num_grad_evals, ref.num_steps + 1)
    # One seed on its own is a batch of one.
    one = rf.train(
        LOSS.bind(MODEL), jax.tree.map(lambda x: x[5], params), fused, save=SAVE, stop=STOP
    )
    _assert_close(_without_counts(one), _without_counts(jax.tree.map(lambda x: x[5], ref)))


def _without_counts(traj):
    return eqx.tree_at(lambda t: t.num_grad_evals, traj, None)


def _uses_fused_step(method, model=MODEL, loss=LOSS):
    # One seed: under vmap (train_seeds, which is vmapped `train`) the custom_vmap call is
    # replaced by its batched rule when traced, and leaves no trace of its own.
    params = model.init(key=jax.random.key(0), scale=0.3)
    jaxpr = jax.make_jaxpr(lambda p: rf.train(loss.bind(model), p, method))(params)
    return "custom_vmap" in str(jaxpr)


def test_the_fused_step_is_used_automatically_where_it_applies():
    assert _uses_fused_step(rf.GradientDescent(0.05, 10))
    assert not _uses_fused_step(rf.GradientDescent(0.05, 10, kernel="generic"))
    assert not _uses_fused_step(rf.GradientDescent(0.05, 10, optax.sgd(0.05)))
    assert not _uses_fused_step(rf.GradientDescent(0.05, 10), model=rf.SymmetricRNN(6))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_the_pallas_kernel_lowers_to_triton_for_gpus(dtype):
    # Lowering (Pallas -> Triton IR) runs in Python and needs no GPU: it catches any
    # operation or block shape that Triton does not support. Compiling the IR needs one.
    x, v, y = jnp.zeros((20, 100), dtype), jnp.zeros(20, dtype), jnp.zeros(10, dtype)
    count = jnp.zeros(20, jnp.int32)
    kernel = functools.partial(
        _fused._descend_pallas, interpret=False, lr=0.01, running=lambda v: v <= 1e10
    )
    traced = jax.jit(kernel).trace(x, x, x, v, count, y)
    assert "xla.gpu.triton" in traced.lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("kernel", ["auto", "generic"])
def test_vmapping_over_teachers_works(kernel):
    # Per-seed targets take the same path, with one column of targets per seed.
    teachers = [TEACHER, rf.modes_teacher([-0.6, 0.3], [1.0, 2.0])]
    losses = jax.tree.map(lambda *x: jnp.stack(x), *[rf.ImpulseLoss(t, 5) for t in teachers])
    params = _seeds(2)
    method = rf.GradientDescent(0.05, 300, kernel=kernel)

    def run(loss, p):
        return rf.train(loss.bind(MODEL), p, method, save=SAVE, stop=STOP)

    both = jax.vmap(run)(losses, params)
    for i, teacher in enumerate(teachers):
        one = run(rf.ImpulseLoss(teacher, 5), _seed(params, i))
        _assert_close(jax.tree.map(lambda x: x[i], both), one)


def _seed(params, i):
    return jax.tree.map(lambda x: x[i], params)
