"""The open engine: any loss over any pytree, strategies a loss offers, and training runs
that compose with jax.grad, jax.jvp and jax.vmap.

Ground truth: hand-written gradient-descent loops, central finite differences (float64),
closed forms (a quadratic's flow and its gradient descent under a schedule), and bitwise
equality with separate runs.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnflow as rf

TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])


def _equal(x, y) -> bool:
    return all(
        bool(jnp.array_equal(a, b))
        for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)
    )


def _hand_gd(loss_fn, params, lr, steps):
    """Plain gradient descent, written out: θ ← θ − η ∇L(θ)."""

    def body(_, p):
        return jax.tree.map(lambda x, g: x - lr * g, p, jax.grad(loss_fn)(p))

    return jax.lax.fori_loop(0, steps, body, params)


# -- any pytree, any loss -----------------------------------------------------------------


def _matrix_factorization(params):
    # A rank-2 factorization of a fixed 3 × 4 matrix: U Vᵀ ≈ M.
    m = jnp.arange(12.0).reshape(3, 4) / 10
    return jnp.sum((params["u"] @ params["v"].T - m) ** 2)


def test_a_dict_of_arrays_trains_as_hand_written_gradient_descent():
    key = jax.random.key(0)
    params = {
        "u": 0.3 * jax.random.normal(key, (3, 2)),
        "v": 0.3 * jax.random.normal(jax.random.fold_in(key, 1), (4, 2)),
    }
    traj = rf.train(_matrix_factorization, params, rf.GradientDescent(0.05, 300))
    hand = _hand_gd(_matrix_factorization, params, 0.05, 300)
    for name in ("u", "v"):
        np.testing.assert_allclose(traj.final[name], hand[name], rtol=1e-13, atol=1e-15)
    assert traj.metrics["loss"][-1] < 1e-2 * traj.metrics["loss"][0]
    assert set(traj.metrics) == {"loss"}  # a plain function's default metric


def test_tuples_and_equinox_modules_keep_their_fixed_leaves():
    mlp = eqx.nn.MLP(2, 1, width_size=4, depth=1, activation=jnp.tanh, key=jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (8, 2))

    def loss_fn(params):
        model, scale = params
        return jnp.mean((jax.vmap(model)(xs)[:, 0] * scale - xs[:, 0]) ** 2)

    params = (mlp, 2.0)  # the Python float is a fixed leaf, not trained
    traj = rf.train(loss_fn, params, rf.GradientDescent(0.05, 50))
    final_mlp, scale = traj.final
    assert scale == 2.0 and final_mlp.activation is jnp.tanh
    assert not jnp.array_equal(final_mlp.layers[0].weight, mlp.layers[0].weight)
    diff = eqx.filter(params, eqx.is_inexact_array)
    hand = _hand_gd(lambda d: loss_fn(eqx.combine(d, params)), diff, 0.05, 50)
    for a, b in zip(jax.tree.leaves(traj.final), jax.tree.leaves(hand), strict=False):
        if eqx.is_array(a):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_train_seeds_trains_equinox_modules_made_by_filter_vmap():
    xs = jnp.linspace(-1, 1, 16)[:, None]

    def loss_fn(mlp):
        return jnp.mean((jax.vmap(mlp)(xs) - xs**2) ** 2)

    def make(key):
        return eqx.nn.MLP(1, 1, width_size=8, depth=1, activation=jax.nn.relu, key=key)

    mlps = eqx.filter_vmap(make)(jax.random.split(jax.random.key(3), 5))
    method = rf.GradientDescent(0.1, 40)
    trajs = rf.train_seeds(loss_fn, mlps, method, save=rf.Save(num=3), chunk_size=2, lanes=2)
    assert trajs.final.activation is jax.nn.relu
    assert trajs.metrics["loss"].shape == (5, 3)
    for i in range(5):
        one = jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, mlps)
        alone = rf.train(loss_fn, one, method, save=rf.Save(num=3))
        np.testing.assert_allclose(trajs.metrics["loss"][i], alone.metrics["loss"], rtol=1e-12)


def test_rnn_losses_are_functions_of_the_parameters():
    model = rf.DenseRNN(5)
    loss = rf.ImpulseLoss(TEACHER, 6)
    loss_fn = loss.bind(model)
    params = model.init(key=jax.random.key(0), scale=0.3)
    assert loss_fn(params) == loss(model, params)
    metrics = loss_fn.default_metrics()
    assert set(metrics) == {"loss", "relative_imbalance", "extrapolation"}
    with pytest.raises(ValueError, match="in_dim, out_dim"):
        loss.bind(rf.DenseRNN(5, in_dim=2))


def test_ready_made_metrics_record_rnn_diagnostics():
    model = rf.DiagonalRNN(8)
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    params = model.init(key=jax.random.key(4), scale=0.5)
    save = rf.Save(
        num=3,
        metrics={
            "loss": rf.loss_metric(loss_fn),
            "imbalance": rf.imbalance_metric(model),
            "extrapolation": rf.extrapolation_metric(model, TEACHER, train_len=5, horizon=50),
            "hankel": rf.hankel_metric(model, length=9),
            "dim": rf.effective_dim_metric(model, length=9),
        },
    )
    traj = rf.train(loss_fn, params, rf.GradientDescent(0.05, 200), save=save)
    final = traj.final
    assert traj.metrics["hankel"].shape == (3, 5)
    np.testing.assert_allclose(traj.metrics["imbalance"][-1], model.relative_imbalance(final))
    expected = rf.effective_dim(model.impulse_response(final, 9))
    assert traj.metrics["dim"][-1] == expected
    with pytest.raises(ValueError, match="`horizon` must exceed"):
        rf.extrapolation_metric(model, TEACHER, train_len=5, horizon=5)


# -- fast paths are strategies a loss offers ------------------------------------------------


class _ClosedFormQuadratic(eqx.Module):
    """L(θ) = ½ Σ λ_i θ_i², offering its gradient in closed form."""

    lam: jax.Array
    calls: list = eqx.field(static=True)

    def __call__(self, theta):
        return 0.5 * jnp.sum(self.lam * theta**2)

    def value_and_grad(self, theta):
        self.calls.append("value_and_grad")  # at trace time: proves the engine used it
        return self(theta), self.lam * theta


def test_gradient_descent_uses_an_offered_value_and_grad():
    loss_fn = _ClosedFormQuadratic(jnp.asarray([1.0, 3.0]), [])
    theta0 = jnp.asarray([1.0, -2.0])
    traj = rf.train(loss_fn, theta0, rf.GradientDescent(0.1, 20))
    assert loss_fn.calls  # used
    # θ_n = (1 − ηλ)^n θ_0 exactly.
    np.testing.assert_allclose(traj.final, (1 - 0.1 * loss_fn.lam) ** 20 * theta0, rtol=1e-13)
    loss_fn.calls.clear()
    rf.train(loss_fn, theta0, rf.GradientDescent(0.1, 20, kernel="generic"))
    assert not loss_fn.calls  # "generic" always differentiates by autodiff


def test_the_diagonal_impulse_loss_offers_a_fused_descent_that_is_used_automatically():
    model = rf.DiagonalRNN(6)
    bound = rf.ImpulseLoss(TEACHER, 5).bind(model)
    assert callable(getattr(bound, "descend", None))
    assert not hasattr(rf.ImpulseLoss(TEACHER, 5).bind(rf.DenseRNN(6)), "descend")
    params = model.init(key=jax.random.key(0), scale=0.3)

    def jaxpr(method):
        return str(jax.make_jaxpr(lambda p: rf.train(bound, p, method))(params))

    assert "custom_vmap" in jaxpr(rf.GradientDescent(0.05, 10))
    assert "custom_vmap" not in jaxpr(rf.GradientDescent(0.05, 10, kernel="generic"))
    assert "custom_vmap" not in jaxpr(rf.GradientDescent(0.05, 10, optax.sgd(0.05)))


# -- differentiable training ----------------------------------------------------------------


def _central(f, x, rel=1e-5):
    """Central differences at h = rel |x| and h/2, Richardson-extrapolated: error O(h⁴)."""
    h = rel * abs(x)

    def d(h):
        return (f(x + h) - f(x - h)) / (2 * h)

    return (4 * d(h / 2) - d(h)) / 3


@pytest.mark.parametrize(
    "model",
    [rf.DiagonalRNN(6), pytest.param(rf.DenseRNN(4), marks=pytest.mark.slow)],
    ids=["diagonal", "dense"],
)
def test_grad_through_gradient_descent_matches_finite_differences(model):
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    p0 = model.init(key=jax.random.key(0), scale=0.3)

    def final(scale, lr=0.05):
        p = jax.tree.map(lambda x: scale * x, p0)
        traj = rf.train(loss_fn, p, rf.GradientDescent(lr, 60), save=rf.Save(num=3))
        return traj.metrics["loss"][1] + jnp.sum(traj.final.c)

    # Extrapolated differences: truncation O(h⁴), rounding eps f / h; both measured below 1e-7.
    for f, x in [(final, 1.0), (lambda lr: final(1.0, lr), 0.05)]:
        grad, fd = jax.grad(f)(x), _central(f, x)
        np.testing.assert_allclose(grad, fd, rtol=1e-6)
    # And against the hand-written loop, differentiated by JAX (fused or not, same steps).
    hand = jax.grad(
        lambda s: jnp.sum(_hand_gd(loss_fn, jax.tree.map(lambda x: s * x, p0), 0.05, 60).c)
    )
    mine = jax.grad(
        lambda s: jnp.sum(
            rf.train(
                loss_fn, jax.tree.map(lambda x: s * x, p0), rf.GradientDescent(0.05, 60)
            ).final.c
        )
    )
    np.testing.assert_allclose(mine(1.0), hand(1.0), rtol=1e-12)


def test_grad_with_respect_to_the_teacher():
    model = rf.DiagonalRNN(5)
    p0 = model.init(key=jax.random.key(1), scale=0.4)

    def final(w):
        t = rf.Teacher(
            TEACHER.model, eqx.tree_at(lambda p: p.b, TEACHER.params, w * TEACHER.params.b)
        )
        traj = rf.train(rf.ImpulseLoss(t, 5).bind(model), p0, rf.GradientDescent(0.05, 80))
        return jnp.sum(traj.final.c)

    np.testing.assert_allclose(jax.grad(final)(1.0), _central(final, 1.0), rtol=1e-6)


def test_grad_through_early_stopping_is_that_of_the_steps_taken():
    model = rf.DenseRNN(4)
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    p0 = model.init(key=jax.random.key(2), scale=0.5)
    method = rf.GradientDescent(0.05, 2000)
    stop = rf.Stop(loss_below=0.05)  # reached after about 1000 of the 2000 steps
    taken = int(rf.train(loss_fn, p0, method, stop=stop).num_steps)
    assert 0 < taken < 2000  # it stopped early

    def stopped(p):
        return jnp.sum(rf.train(loss_fn, p, method, stop=stop).final.a)

    def hand(p):
        return jnp.sum(_hand_gd(loss_fn, p, 0.05, taken).a)

    for mine, theirs in zip(
        jax.tree.leaves(jax.grad(stopped)(p0)), jax.tree.leaves(jax.grad(hand)(p0))
    ):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-13)


@pytest.mark.slow
def test_saving_at_the_end_only_takes_the_same_steps_and_derivative():
    # Saves at the start and end (or the end) run one loop written out; more saves run a
    # loop per segment. The steps, the stopping step and the derivatives are the same.
    model = rf.DenseRNN(4)
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    p0 = model.init(key=jax.random.key(2), scale=0.5)
    stop = rf.Stop(loss_below=0.05)  # reached after about 1000 of the 2000 steps

    def run(lr, save):
        return rf.train(loss_fn, p0, rf.GradientDescent(lr, 2000), save=save, stop=stop)

    few, many = rf.Save(num=2), rf.Save(num=101)
    ends, steps = run(0.05, few), run(0.05, many)
    assert 0 < int(ends.num_steps) < 2000 and int(ends.result) == rf.Result.converged
    assert _equal(ends.final, steps.final) and _equal(ends.num_steps, steps.num_steps)
    assert _equal(ends.metrics["loss"][-1], steps.metrics["loss"][-1])

    # The hypergradient: the stopping step fixed, as for the hand-written loop of as many.
    taken = int(ends.num_steps)

    def final(lr, save):
        return jnp.sum(run(lr, save).final.a)

    def hand(lr):
        return jnp.sum(_hand_gd(loss_fn, p0, lr, taken).a)

    np.testing.assert_allclose(jax.grad(final)(0.05, few), jax.grad(hand)(0.05), rtol=1e-10)

    # Without a loss to stop at, the loop runs to the end (a seed that diverges stops).
    def to_end(s, save, lr=0.05):
        p = jax.tree.map(lambda x: s * x, p0)
        return rf.train(loss_fn, p, rf.GradientDescent(lr, 200), save=save)

    assert _equal(to_end(1.0, few).final, to_end(1.0, many).final)
    blown = to_end(1.0, few, lr=5.0)
    assert int(blown.result) == rf.Result.diverged and int(blown.num_steps) < 200
    f = jax.jit(lambda s: to_end(s, few).metrics["loss"][-1])
    np.testing.assert_allclose(jax.grad(f)(1.0), _central(f, 1.0), rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(lambda s: jnp.sum(to_end(s, few).final.a))(1.0),
        jax.grad(
            lambda s: jnp.sum(_hand_gd(loss_fn, jax.tree.map(lambda x: s * x, p0), 0.05, 200).a)
        )(1.0),
        rtol=1e-12,
    )


@pytest.mark.slow
def test_forward_mode_through_gradient_descent_and_the_flow():
    model = rf.DenseRNN(3)
    loss_fn = rf.ImpulseLoss(TEACHER, 4).bind(model)
    p0 = model.init(key=jax.random.key(3), scale=0.5)
    ctl = diffrax.PIDController(rtol=1e-10, atol=1e-12)
    for forward, reverse in [
        (
            rf.GradientDescent(0.05, 100, adjoint=diffrax.ForwardMode()),
            rf.GradientDescent(0.05, 100),
        ),
        (
            rf.GradientFlow(3.0, stepsize_controller=ctl, adjoint=diffrax.ForwardMode()),
            rf.GradientFlow(3.0, stepsize_controller=ctl),
        ),
    ]:

        def f(s, method):
            return jnp.sum(rf.train(loss_fn, jax.tree.map(lambda x: s * x, p0), method).final.a)

        jvp = jax.jvp(lambda s: f(s, forward), (1.0,), (1.0,))[1]
        np.testing.assert_allclose(jvp, jax.grad(lambda s: f(s, reverse))(1.0), rtol=1e-9)
        np.testing.assert_allclose(jvp, _central(lambda s: f(s, forward), 1.0), rtol=1e-6)


@pytest.mark.slow
def test_backsolve_agrees_with_checkpointing_on_a_short_horizon():
    # Backsolve rebuilds the path backwards in time, which for a gradient flow runs its
    # contraction in reverse: accurate on short horizons only (docs, "Bring your own model").
    model = rf.DiagonalRNN(6)
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    p0 = model.init(key=jax.random.key(0), scale=1.0)
    ctl = diffrax.PIDController(rtol=1e-10, atol=1e-12)

    def f(s, adjoint):
        method = rf.GradientFlow(0.5, stepsize_controller=ctl, adjoint=adjoint)
        traj = rf.train(loss_fn, jax.tree.map(lambda x: s * x, p0), method, save=rf.Save(num=3))
        return jnp.sum(traj.final.a) + traj.metrics["loss"][1]

    backsolve = diffrax.BacksolveAdjoint(stepsize_controller=ctl)
    np.testing.assert_allclose(
        jax.grad(lambda s: f(s, backsolve))(0.3),
        jax.grad(lambda s: f(s, diffrax.RecursiveCheckpointAdjoint()))(0.3),
        rtol=1e-7,
    )


# -- vmap over hyperparameters --------------------------------------------------------------


def _two_layer(params):  # elementwise: no reductions for XLA to reorder under vmap
    return jnp.sum((params["w2"] * params["w1"] - jnp.asarray([3.0, 1.0, 0.5])) ** 2)


_TWO_LAYER_P0 = {"w1": jnp.asarray([0.1, 0.2, 0.05]), "w2": jnp.asarray([0.1, 0.1, 0.2])}


def _same(batched, alone):
    """The training is bitwise that of the separate run. A save metric that contracts a
    long impulse response over the state (the extrapolation error to 10 k, through a scan
    and an einsum) is reduced by XLA in another order in a batch: an ulp in the response,
    up to ten in the error, a sum of squared differences (measured 2e-15 relative)."""
    metrics = batched.metrics.pop("extrapolation", None)
    expected = alone.metrics.pop("extrapolation", None)
    if metrics is not None:
        np.testing.assert_allclose(metrics, expected, rtol=1e-14, atol=0)
    assert _equal(batched, alone)


@pytest.mark.parametrize(
    "loss_fn, params",
    [
        (_two_layer, _TWO_LAYER_P0),
        (
            rf.ImpulseLoss(TEACHER, 5).bind(rf.DiagonalRNN(6)),
            rf.DiagonalRNN(6).init(key=jax.random.key(0), scale=0.4),
        ),
        pytest.param(
            rf.ImpulseLoss(TEACHER, 5).bind(rf.DenseRNN(4)),
            rf.DenseRNN(4).init(key=jax.random.key(0), scale=0.4),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["two-layer", "diagonal", "dense"],
)
def test_vmap_over_learning_rates_and_scales_equals_separate_runs(loss_fn, params):
    def run(lr, scale):
        p = jax.tree.map(lambda x: scale * x, params)
        return rf.train(loss_fn, p, rf.GradientDescent(lr, 100), save=rf.Save(num=3))

    lrs = jnp.asarray([0.01, 0.03, 0.05])
    by_lr = jax.vmap(lambda lr: run(lr, 1.0))(lrs)
    by_scale = jax.vmap(lambda s: run(0.03, s))(lrs * 20)
    for i in range(3):
        _same(jax.tree.map(lambda x: x[i], by_lr), run(float(lrs[i]), 1.0))
        _same(jax.tree.map(lambda x: x[i], by_scale), run(0.03, float(lrs[i] * 20)))


@pytest.mark.slow
def test_vmap_over_teachers_and_flow_tolerances_equals_separate_runs():
    model = rf.DiagonalRNN(4)
    params = model.init(key=jax.random.key(5), scale=0.4)
    weights = jnp.asarray([0.5, 1.0, 2.0])

    def by_weight(w, method):
        teacher = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
        teacher = eqx.tree_at(lambda t: t.params.c, teacher, w * teacher.params.c)
        return rf.train(rf.ImpulseLoss(teacher, 5).bind(model), params, method)

    for method in (rf.GradientDescent(0.05, 100), rf.GradientFlow(2.0)):
        batched = jax.vmap(lambda w: by_weight(w, method))(weights)
        for i, w in enumerate(weights):
            _same(jax.tree.map(lambda x: x[i], batched), by_weight(float(w), method))

    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    rtols = jnp.asarray([1e-4, 1e-6, 1e-8])

    def flow(rtol):
        ctl = diffrax.PIDController(rtol=rtol, atol=1e-10)
        return rf.train(loss_fn, params, rf.GradientFlow(5.0, stepsize_controller=ctl))

    batched = jax.vmap(flow)(rtols)
    steps = [int(flow(float(r)).num_steps) for r in rtols]
    assert steps[0] < steps[1] < steps[2]  # tighter tolerances, more steps
    for i, r in enumerate(rtols):
        _same(jax.tree.map(lambda x: x[i], batched), flow(float(r)))


# -- one time axis under schedules ----------------------------------------------------------


def test_a_schedule_moves_along_the_flow_time_it_travels():
    # L = ½ λ θ²: gradient descent multiplies θ by (1 − η_j λ) at step j; the flow gives
    # θ(t) = e^{−λ t} θ₀. At the flow time T_n = Σ_{j<n} η_j they agree to O(max η).
    lam, theta0, n = 2.0, jnp.asarray(1.0), 400
    schedule = optax.linear_schedule(0.02, 0.002, n)
    # The rates the steps are taken at: the schedule at float64 step counts.
    etas = np.asarray(schedule(jnp.arange(n, dtype=jnp.float64)), np.float64)
    flow_time = np.concatenate([[0.0], np.cumsum(etas)])
    method = rf.GradientDescent(schedule, n)
    np.testing.assert_allclose(method.t1, flow_time[-1], rtol=1e-12)
    save = rf.Save(ts=[0.0, 1.0, 2.0, float(flow_time[-1])])

    def loss_fn(theta):
        return 0.5 * lam * theta**2

    traj = rf.train(loss_fn, theta0, method, save=save, stop=rf.Stop())
    steps = np.argmin(np.abs(flow_time[None, :] - np.asarray(save.ts)[:, None]), axis=1)
    np.testing.assert_allclose(traj.ts, flow_time[steps], rtol=1e-12)
    np.testing.assert_allclose(traj.t_stop, flow_time[-1], rtol=1e-12)
    gd = np.cumprod(np.concatenate([[1.0], 1 - lam * etas]))[steps]
    np.testing.assert_allclose(np.sqrt(2 * np.asarray(traj.metrics["loss"]) / lam), gd, rtol=1e-12)
    ctl = diffrax.PIDController(rtol=1e-10, atol=1e-14)
    flow = rf.train(
        loss_fn,
        theta0,
        rf.GradientFlow(float(flow_time[-1]), stepsize_controller=ctl),
        save=rf.Save(ts=np.asarray(traj.ts)),
    )
    log_gf = 0.5 * np.log(2 * np.asarray(flow.metrics["loss"]) / lam)
    np.testing.assert_allclose(log_gf, -lam * flow_time[steps], rtol=1e-8, atol=1e-12)
    # On the flow-time axis, gradient descent is below the flow by exactly
    # Σ_{j<n} [−log(1 − λη_j) − λη_j] ≈ Σ λ²η_j²/2: O(η) per unit of time.
    excess = np.concatenate([[0.0], np.cumsum(-np.log1p(-lam * etas) - lam * etas)])[steps]
    np.testing.assert_allclose(log_gf - np.log(gd), excess, rtol=1e-6, atol=1e-12)
    # Against the step count times the first rate, the gap would be λ(nη₀ − T_n), 30×
    # larger at the end:
    assert lam * (n * 0.02 - flow_time[-1]) > 30 * excess[-1]
