"""Many seeds at once: `train_seeds` == a loop of `train` == `vmap(train)`, whatever the chunk
size or device count; a failing seed is a value that leaves the others alone; and a second
call with new numbers of the same shapes does not retrace.

The seed axis is vmapped, so each seed's arithmetic is its own; but XLA vectorises a batch
of width w differently from one of width w' (and from no batch), which can change the last
bits of reductions. Results are therefore compared bitwise where the batch width (`lanes`)
is the same, whatever the chunks, and to a tight tolerance (`_assert_same(...,
exact=False)`) where it is not.
"""

import functools
import os
import subprocess
import sys
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf

TEACHER = rf.modes_teacher([0.8, -0.5], [1.0, 0.5])
LOSS = rf.ImpulseLoss(TEACHER, train_len=4)
MODEL = rf.DiagonalRNN(4, scan="sequential")  # compiles faster than the associative scan
NUM_SEEDS = 7  # not a multiple of the 4 devices, nor of the chunk sizes below: padding
SAVE = rf.Save(
    num=6,
    params=True,
    metrics={"loss": lambda t, p: LOSS(MODEL, p), "q": lambda t, p: MODEL.imbalance(p)},
)
GD = rf.GradientDescent(lr=0.05, num_steps=100)
GF = rf.GradientFlow(t1=5.0)
# Initial losses of the seeds are 2.6-4.4; seed 0 scaled by 4 starts at 122 and makes
# gradient descent at lr = 0.05 blow up (loss 2.6e10, past Stop.loss_above, after one step).
BAD_FACTOR = 4.0
GF_STOP = rf.Stop(loss_above=50.0)


def _seeds(n=NUM_SEEDS, key=jax.random.key(1)):
    return rf.init_seeds(MODEL, jax.random.split(key, n), scale=0.3)


def _seed(params, i):
    return jax.tree.map(lambda x: x[i], params)


def _stack(trajs):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trajs)


def _assert_same(x, y, *, exact):
    lx, tx = jax.tree.flatten(x)
    ly, ty = jax.tree.flatten(y)
    assert tx == ty
    for a, b in zip(lx, ly):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        if exact or not np.issubdtype(a.dtype, np.floating):
            # Integers (result codes, step counts) must always agree.
            np.testing.assert_array_equal(a, b)
        else:
            # Rounding of differently vectorised reductions, carried through ≤ 100 steps of
            # a well-conditioned map. Measured: bitwise equal with these metrics, ≤ 4e-16
            # with the default ones (on values of order 1e-5 to 1). Another seed's values,
            # or a step more or less, would differ by ≳ 1e-3.
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@functools.cache
def _loop(method, stop=rf.Stop()):
    """The ground truth: one `train` call per seed (one compilation, run NUM_SEEDS times)."""
    params = _seeds()
    return _stack(
        [
            rf.train(LOSS.bind(MODEL), _seed(params, i), method, save=SAVE, stop=stop)
            for i in range(NUM_SEEDS)
        ]
    )


# -- train_seeds == loop == vmap ------------------------------------------------------------


def test_train_seeds_equals_loop_and_vmap():
    params = _seeds()
    batched = rf.train_seeds(LOSS.bind(MODEL), params, GD, save=SAVE)
    assert batched.result.shape == (NUM_SEEDS,)
    assert batched.params.a.shape == (NUM_SEEDS, 6, 4)
    _assert_same(batched, _loop(GD), exact=False)
    # The seeds really differ, so a mix-up of seeds would be caught.
    assert np.ptp(batched.metrics["loss"][:, -1]) > 1e-3
    vmapped = jax.vmap(lambda p: rf.train(LOSS.bind(MODEL), p, GD, save=SAVE))(params)
    _assert_same(vmapped, batched, exact=False)


@pytest.mark.parametrize("method", ["gd", "gf"])
def test_results_are_bitwise_the_same_for_any_chunk_size(method):
    method, stop = (GD, rf.Stop()) if method == "gd" else (GF, GF_STOP)
    params = _seeds()
    one = jax.devices()[:1]
    whole = rf.train_seeds(LOSS.bind(MODEL), params, method, save=SAVE, stop=stop, devices=one)
    # Every chunk size, including ones that do not divide the seeds (7 = 3 + 3 + 1).
    for chunk_size in range(1, NUM_SEEDS + 1):
        traj = rf.train_seeds(
            LOSS.bind(MODEL),
            params,
            method,
            save=SAVE,
            stop=stop,
            devices=one,
            chunk_size=chunk_size,
        )
        _assert_same(traj, whole, exact=True)


def test_results_do_not_depend_on_devices_and_barely_on_lanes():
    assert len(jax.devices()) == 4  # tests/conftest.py: four virtual CPU devices
    params = _seeds()
    one = jax.devices()[:1]
    # Sharded over the 4 devices (the default), 2 lanes per device (7 padded to 8).
    sharded = rf.train_seeds(LOSS.bind(MODEL), params, GD, save=SAVE, lanes=2)
    # The same 2 lanes on one device, in any chunks: bitwise the same, since only the
    # placement changed.
    for chunk_size in (None, 2, 5):
        traj = rf.train_seeds(
            LOSS.bind(MODEL), params, GD, save=SAVE, devices=one, lanes=2, chunk_size=chunk_size
        )
        _assert_same(traj, sharded, exact=True)
    # Other batch widths on one device: 3 lanes (7 padded to 9), 5 (padded to 10), 7.
    for lanes in (3, 5, None):
        traj = rf.train_seeds(LOSS.bind(MODEL), params, GD, save=SAVE, devices=one, lanes=lanes)
        _assert_same(traj, sharded, exact=False)
        _assert_same(traj, _loop(GD), exact=False)


def test_gradient_flow_train_seeds_equals_loop():
    batched = rf.train_seeds(LOSS.bind(MODEL), _seeds(), GF, save=SAVE, stop=GF_STOP)
    loop = _loop(GF, GF_STOP)
    # Adaptive steps: every seed takes its own number (46-52 here), the same as alone.
    np.testing.assert_array_equal(batched.num_steps, loop.num_steps)
    assert np.ptp(np.asarray(batched.num_steps)) > 0
    _assert_same(batched, loop, exact=False)
    assert batched.summary() == {"finished": NUM_SEEDS}


# -- failures are per-seed values -----------------------------------------------------------


def _with_bad_seed(params):
    return jax.tree.map(lambda x: x.at[0].multiply(BAD_FACTOR), params)


@pytest.mark.parametrize("method", ["gd", "gf"])
def test_a_diverging_seed_leaves_the_others_alone(method):
    method, stop = (GD, rf.Stop()) if method == "gd" else (GF, GF_STOP)
    params = _seeds()
    bad = rf.train_seeds(LOSS.bind(MODEL), _with_bad_seed(params), method, save=SAVE, stop=stop)
    good = rf.train_seeds(LOSS.bind(MODEL), params, method, save=SAVE, stop=stop)

    assert bad.result[0] == rf.Result.diverged and not bool(bad.ok[0])
    assert float(bad.t_stop[0]) < method.t1
    assert bad.summary() == {"finished": NUM_SEEDS - 1, "diverged": 1}
    messages = bad.messages()
    assert len(messages) == NUM_SEEDS
    assert messages[0] == rf.Result.diverged.message and "smaller learning rate" in messages[0]
    assert messages[1:] == [rf.Result.finished.message] * (NUM_SEEDS - 1)
    if method is GD:
        # Gradient descent really blew up: over Stop.loss_above (1e10) after one step.
        assert 0 < float(bad.t_stop[0]) < 1.0
        assert float(bad.metrics["loss"][0, -1]) > 1e10
    else:
        # A gradient flow only decreases the loss, so its divergence is the threshold: the
        # bad seed starts above Stop.loss_above (122 > 50) and is stopped at t = 0.
        assert float(bad.t_stop[0]) == 0.0
        assert int(bad.num_steps[0]) == 0
    # The stopped seed holds the state it stopped in at every later save.
    np.testing.assert_array_equal(bad.params.a[0, -1], bad.final.a[0])
    # Every other seed: bitwise what it is when seed 0 is a normal seed (the same batch
    # width, so the same vectorisation), and what it is trained alone.
    _assert_same(_seed_slice(bad), _seed_slice(good), exact=True)
    _assert_same(_seed_slice(bad), _seed_slice(_loop(method, stop)), exact=False)


def _seed_slice(traj):
    return jax.tree.map(lambda x: np.asarray(x)[1:], traj)


def test_one_percent_diverging_seeds_leave_the_statistics_of_the_rest_unchanged():
    xr = pytest.importorskip("xarray")
    from rnnflow.experiments._stats import final, seed_median

    params = _seeds(100, key=jax.random.key(2))
    bad = rf.train_seeds(LOSS.bind(MODEL), _with_bad_seed(params), GD, save=SAVE)
    good = rf.train_seeds(LOSS.bind(MODEL), params, GD, save=SAVE)
    assert bad.summary() == {"finished": 99, "diverged": 1}
    # What the experiments report: statistics over the seeds of a labelled Dataset, failed
    # ones masked out (and counted in the summary). They are those of the other 99 seeds
    # alone, exactly.
    ds = xr.Dataset(
        {
            "loss": (("seed", "time"), np.asarray(bad.metrics["loss"], np.float64)),
            "result": ("seed", np.asarray(bad.result)),
        }
    )
    final_bad, final_good = bad.metrics["loss"][:, -1], good.metrics["loss"][:, -1]
    kept = final(ds, "loss")
    assert np.isnan(kept.values[0]) and float(final_bad[0]) > 1e10
    others = np.asarray(final_good, np.float64)[1:]
    assert float(seed_median(kept)) == np.median(others)
    assert np.nanmean(kept.values) == np.mean(others)
    # ... which differ from those of all 100 normal seeds: the mask is doing the work.
    assert float(seed_median(kept)) != np.median(np.asarray(final_good, np.float64))


def test_max_steps_reached_is_a_value():
    max_steps = 5
    method = rf.GradientFlow(t1=5.0, max_steps=max_steps)
    traj = rf.train_seeds(LOSS.bind(MODEL), _seeds(), method, save=SAVE)  # no exception
    assert traj.summary() == {"max_steps_reached": NUM_SEEDS}
    np.testing.assert_array_equal(traj.result, rf.Result.max_steps_reached)
    np.testing.assert_array_equal(traj.num_steps, max_steps)
    assert not np.any(np.asarray(traj.ok))
    t_stop = np.asarray(traj.t_stop)
    assert np.all((0 < t_stop) & (t_stop < method.t1))
    assert "max_steps" in traj.messages()[0]
    # Saves after the seed stopped hold its last state (not diffrax's inf padding).
    assert np.all(np.isfinite(np.asarray(traj.metrics["loss"])))
    np.testing.assert_array_equal(traj.params.a[:, -1], traj.final.a)
    # An unbatched trajectory reports one line.
    single = jax.tree.map(lambda x: x[0], traj)
    assert single.summary() == {"max_steps_reached": 1} and len(single.messages()) == 1


# -- no recompilation -----------------------------------------------------------------------

_TRACES = [0]


class _TraceCountingLoss(rf.AbstractLoss):
    """The impulse loss, counting how often its Python body runs, i.e. how often it is traced
    (compiled code does not run Python)."""

    teacher: rf.Teacher
    train_len: int = eqx.field(static=True)

    def __call__(self, model, params):
        _TRACES[0] += 1
        h = model.impulse_response(params, self.train_len)
        return jnp.sum((h - self.teacher.impulse_response(self.train_len)) ** 2)


def _traces(fn):
    before = _TRACES[0]
    jax.block_until_ready(fn())
    return _TRACES[0] - before


def test_second_call_does_not_retrace():
    method = rf.GradientDescent(lr=0.05, num_steps=20)
    save = rf.Save(num=3, metrics={})
    loss = _TraceCountingLoss(TEACHER, 4)
    # New numbers of the same shapes: other seeds, and another teacher.
    other_loss = _TraceCountingLoss(rf.modes_teacher([0.3, 0.9], [2.0, 0.1]), 4)
    params = _seeds(4)
    other = _seeds(4, jax.random.key(7))
    # Each call runs the loss once in Python for its argument check (jax.eval_shape); a
    # trace of the training loop runs it again (the objective, the final stop check): 3
    # calls in all today. A second call may only do the check.
    first = _traces(lambda: rf.train(loss.bind(MODEL), _seed(params, 0), method, save=save))
    assert first >= 2
    assert (
        _traces(lambda: rf.train(other_loss.bind(MODEL), _seed(other, 1), method, save=save)) <= 1
    )
    first = _traces(lambda: rf.train_seeds(loss.bind(MODEL), params, method, save=save))
    assert first >= 2
    assert _traces(lambda: rf.train_seeds(other_loss.bind(MODEL), other, method, save=save)) <= 1
    # The count does see a retrace: a model of another size has other shapes.
    big = rf.DiagonalRNN(5, scan="sequential")
    big_params = big.init(key=jax.random.key(3), scale=0.3)
    assert _traces(lambda: rf.train(loss.bind(big), big_params, method, save=save)) >= 2


def test_default_lanes_fit_transition_matrices_in_a_cpu_cache():
    from rnnflow._engine.blocks import _default_lanes

    def lanes(shape_a, n, platform="cpu", dtype=jnp.float32):
        a = jax.ShapeDtypeStruct((n,) + shape_a, dtype)
        return _default_lanes(rf.RNNParams(a, None, None), n, platform)

    # Diagonal transitions: up to 1024 side by side, in blocks of equal width.
    assert lanes((100,), 1000) == 1000
    assert lanes((100,), 1500) == 750  # two blocks of 750, not 1024 + 476 padded to 1024
    assert lanes((100,), 3000) == 1000
    # Transition matrices: 256 KiB of them per block, at least 64 seeds.
    assert lanes((32, 32), 1000) == 63  # 16 blocks: 64 seeds of 4 KiB fit
    assert lanes((16, 16), 1000) == 250  # 4 blocks: 256 seeds of 1 KiB fit
    assert lanes((32, 32), 1000, dtype=jnp.float64) == 63  # 32 would fit; 64 at least
    assert lanes((32, 32), 10) == 10
    # Accelerators: wide blocks whatever the transition.
    assert lanes((32, 32), 1000, "gpu") == 1000
    assert lanes((32, 32), 100_000, "gpu") == 50_000


# -- several CPU devices and LAPACK ---------------------------------------------------------

# A save metric that calls LAPACK (jaxlib's batched eigh) under vmap.
EIGH_SAVE = rf.Save(num=3, metrics={"eig": lambda t, p: jnp.linalg.eigh(jnp.diag(p.a))[0]})


def test_lapack_in_a_metric_runs_on_one_cpu_device_with_a_warning(placed_on):
    params = _seeds(8)
    one = rf.train_seeds(LOSS.bind(MODEL), params, GD, save=EIGH_SAVE, devices=jax.devices()[:1])
    placed_on.clear()
    with pytest.warns(RuntimeWarning, match="one CPU device instead of 4"):
        traj = rf.train_seeds(LOSS.bind(MODEL), params, GD, save=EIGH_SAVE)
    assert placed_on == {jax.devices()[0]}
    _assert_same(traj, one, exact=True)
    # Without LAPACK the seeds are spread over the four devices, and nothing is said.
    placed_on.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rf.train_seeds(LOSS.bind(MODEL), params, GD, save=SAVE)
    assert placed_on == set(jax.devices())


# Ten seeds per device, with a LAPACK metric on 20 x 20 matrices: with four CPU devices
# running at once on two cores this deadlocked in jaxlib's batched eigh in about one run
# of two (with two devices at ten seeds each, in every run tried).
_DEADLOCK = """
import jax, jax.numpy as jnp, rnnflow as rf
model = rf.SymmetricRNN(20)
loss = rf.ImpulseLoss(rf.modes_teacher([0.8, -0.5], [1.0, 0.5]), 7)
params = rf.init_seeds(model, jax.random.split(jax.random.key(0), 40), scale=0.1)
save = rf.Save(num=10, metrics={"eig": lambda t, p: jnp.linalg.eigh(p.a)[0]})
traj = rf.train_seeds(loss.bind(model), params, rf.GradientDescent(0.01, 300), save=save)
print(traj.summary())
"""


@pytest.mark.slow
def test_lapack_with_several_cpu_devices_finishes():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-c", _DEADLOCK], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "{'finished': 40}"


@pytest.mark.parametrize("transform", ["jit", "grad", "vmap"])
def test_train_seeds_under_a_transformation_says_to_vmap_train(transform):
    params = rf.init_seeds(MODEL, jax.random.split(jax.random.key(0), 3), scale=0.3)
    loss_fn = LOSS.bind(MODEL)

    def final(lr, p=params):
        traj = rf.train_seeds(loss_fn, p, rf.GradientDescent(lr, 5), save=rf.Save(num=2))
        return traj.metrics["loss"][:, -1].mean()

    call = {
        "jit": lambda: jax.jit(final)(0.05),
        "grad": lambda: jax.grad(final)(0.05),
        "vmap": lambda: jax.vmap(lambda p: final(0.05, p), in_axes=1)(
            jax.tree.map(lambda x: jnp.stack([x, x], 1), params)
        ),
    }[transform]
    with pytest.raises(TypeError, match=r"under a transformation use jax.vmap\(rnnflow.train\)"):
        call()
    # What it says works, and is what train_seeds computes.
    direct = rf.train_seeds(loss_fn, params, rf.GradientDescent(0.05, 5), save=rf.Save(num=2))
    by_vmap = jax.jit(
        lambda lr: jax.vmap(
            lambda p: rf.train(loss_fn, p, rf.GradientDescent(lr, 5), save=rf.Save(num=2))
        )(params)
    )(0.05)
    np.testing.assert_allclose(by_vmap.metrics["loss"], direct.metrics["loss"], rtol=1e-12)


@pytest.mark.parametrize("num_seeds", [7, 8])  # padded, and a whole block
def test_results_come_back_on_one_device_like_fresh_arrays(num_seeds):
    # Spread over this process's 4 CPU devices, the results are gathered: the user's next
    # computations run on one device and mix with arrays placed on the first.
    assert len(jax.devices()) == 4
    params = rf.init_seeds(MODEL, jax.random.split(jax.random.key(0), num_seeds), scale=0.3)
    traj = rf.train_seeds(LOSS.bind(MODEL), params, rf.GradientDescent(0.05, 5))
    for x in jax.tree.leaves(traj):
        assert len(x.devices()) == 1 and not x.committed
    on_first = jax.device_put(jnp.ones_like(traj.final.a), jax.devices()[0])
    assert (traj.final.a + on_first).shape == (num_seeds, 4)
