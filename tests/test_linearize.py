"""The linearized (kernel) model beside the real one: Taylor models, the empirical NTK, the
closed-form lazy dynamics and the laziness metrics.

Ground truth: the diagonal RNN's impulse-response Jacobian in closed form
(∂h_t/∂a_j = t c_j b_j a_j^{t-1}, ∂h_t/∂b_j = c_j a_j^t, ∂h_t/∂c_j = b_j a_j^t), full
Jacobians from jax.jacfwd / jax.jacrev (a second implementation), the linear ODE's solution
e^{-2tK} r₀ and gradient descent's (I - 2ηK)ⁿ r₀ (rnnflow's losses are Σ r², no ½),
separate runs, and, where it imports beside this JAX, neural-tangents.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnflow as rf
from rnnflow import (
    LinearizedLoss,
    SideBySide,
    SideBySideLoss,
    TaylorModel,
    TaylorParams,
    kernel_change_metric,
    linearization_gap_metric,
    linearize,
    ntk,
    ntk_residuals,
    parameter_change_metric,
    side_by_side,
)

TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
K = 5  # training length
DIAGONAL = rf.DiagonalRNN(8)
LOSS = rf.ImpulseLoss(TEACHER, K).bind(DIAGONAL)
P0 = DIAGONAL.init(key=jax.random.key(0), scale=0.5)


def _hand_response(p, lags) -> np.ndarray:
    """h_t = Σ_j c_j b_j a_j^t of a diagonal single-input single-output student, in NumPy."""
    a, b, c = (np.asarray(x, np.float64).ravel() for x in (p.a, p.b, p.c))
    return (c * b * a[None, :] ** np.asarray(lags)[:, None]).sum(axis=1)


def _hand_jacobian(p, lags=range(K)) -> np.ndarray:
    """∂h_t/∂(a, b, c) for t in `lags`, (len(lags), 3d): the residuals' Jacobian for lags < k."""
    a, b, c = (np.asarray(x, np.float64).ravel() for x in (p.a, p.b, p.c))
    t = np.asarray(lags)[:, None]
    power = a[None, :] ** t
    da = t * c * b * np.where(t > 0, a[None, :] ** np.maximum(t - 1, 0), 0.0)
    return np.concatenate([da, c * power, b * power], axis=1)


def _flat_jacobian(jac_tree, m) -> np.ndarray:
    """A Jacobian pytree (leaves shaped `(*out, *leaf)`) as an `(m, n)` matrix, columns in
    leaf order: the layout of `ravel_pytree`."""
    return np.concatenate([np.asarray(x).reshape(m, -1) for x in jax.tree.leaves(jac_tree)], 1)


def _residuals_metric(loss):
    return {"r": lambda t, p: loss.residuals(p)}


# -- the empirical kernel --------------------------------------------------------------------


def test_ntk_of_a_diagonal_rnn_is_its_closed_form_jacobian_squared():
    j = _hand_jacobian(P0)
    # Rounding only: entries are sums of 3d = 24 products of O(1) numbers in float64.
    np.testing.assert_allclose(ntk(LOSS, P0), j @ j.T, rtol=1e-13, atol=1e-15)
    # The loss's residuals are its outputs; a function of the parameters works the same.
    np.testing.assert_array_equal(ntk(LOSS, P0), ntk(LOSS.residuals, P0))


def test_ntk_matches_the_full_jacobian_in_both_orientations():
    # m < n (6 lags, 24 parameters): rf.ntk takes m reverse-mode products; the reference
    # is forward mode.
    dense = rf.DenseRNN(4)
    loss = rf.ImpulseLoss(TEACHER, 6).bind(dense)
    p = dense.init(key=jax.random.key(1), scale=0.4)
    j = _flat_jacobian(jax.jit(jax.jacfwd(loss.residuals))(p), 6)
    assert j.shape == (6, 24)
    np.testing.assert_allclose(ntk(loss, p), j @ j.T, rtol=1e-12, atol=1e-15)

    # m > n (25 outputs, 10 parameters) over an equinox MLP with a fixed leaf (tanh): rf.ntk
    # takes n forward-mode products; the reference is reverse mode over the module.
    mlp = eqx.nn.MLP(1, 1, width_size=3, depth=1, activation=jnp.tanh, key=jax.random.key(2))
    xs = jnp.linspace(-2, 2, 25)[:, None]

    def outputs(model):
        return jax.vmap(model)(xs)[:, 0]

    diff, static = eqx.partition(mlp, eqx.is_inexact_array)
    j = _flat_jacobian(jax.jit(jax.jacrev(lambda d: outputs(eqx.combine(d, static))))(diff), 25)
    assert j.shape == (25, 10)
    np.testing.assert_allclose(ntk(outputs, mlp), j @ j.T, rtol=1e-12, atol=1e-14)


# -- the Taylor model ------------------------------------------------------------------------


def test_taylor_model_is_f0_plus_jacobian_times_displacement_and_keeps_its_kernel():
    dense = rf.DenseRNN(3)
    p0 = dense.init(key=jax.random.key(3), scale=0.5)
    delta = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), p0)

    def response(p):  # a pytree output: the first 7 lags, shape (7, 1, 1)
        return dense.impulse_response(p, 7)

    f_lin = linearize(response)
    assert isinstance(f_lin, TaylorModel)
    j = _flat_jacobian(jax.jit(jax.jacfwd(response))(p0), 7)
    step = np.concatenate([np.ravel(x) for x in jax.tree.leaves(delta)])
    expected = np.ravel(response(p0)) + j @ step
    # Rounding: a Jacobian-vector product against a product of the formed Jacobian.
    np.testing.assert_allclose(
        np.ravel(f_lin(TaylorParams(p0, delta))), expected, rtol=1e-13, atol=1e-15
    )
    np.testing.assert_allclose(f_lin(TaylorParams(p0)), response(p0), rtol=1e-15, atol=0)
    # A linear model's kernel is the same everywhere: K(θ₀), whatever δ (its Jacobian in
    # θ₀ is zero, as θ₀ is held fixed).
    np.testing.assert_allclose(
        ntk(f_lin, TaylorParams(p0, delta)), ntk(response, p0), rtol=1e-13, atol=1e-15
    )


def test_a_least_squares_loss_linearizes_to_a_loss_of_its_linearized_residuals():
    lin = linearize(LOSS)
    assert isinstance(lin, LinearizedLoss)
    start = TaylorParams(P0)
    np.testing.assert_allclose(lin.residuals(start), LOSS.residuals(P0), rtol=1e-15)
    np.testing.assert_allclose(lin(start), LOSS(P0), rtol=1e-14)
    assert set(lin.default_metrics()) == {"loss", "parameter_change"}
    np.testing.assert_array_equal(start.theta.a, P0.a)


# -- the closed form of the linearized dynamics -------------------------------------------


def _linear_run(method, save):
    lin = linearize(LOSS)
    traj = rf.train(lin, TaylorParams(P0), method, save=save)
    closed = ntk_residuals(ntk(LOSS, P0), LOSS.residuals(P0), traj.ts, method)
    # θ₀ is held by stop_gradient: every method leaves it exactly where it was.
    for got, start in zip(jax.tree.leaves(traj.final.theta0), jax.tree.leaves(P0), strict=True):
        np.testing.assert_array_equal(got, start)
    scale = float(jnp.linalg.norm(LOSS.residuals(P0)))
    return float(jnp.max(jnp.abs(traj.metrics["r"] - closed))) / scale


@pytest.mark.parametrize(
    "solver, rtol",
    [(diffrax.Tsit5(), 1e-12), (rf.LeastSquaresRosenbrock(), 1e-9)],
    ids=["tsit5", "rosenbrock"],
)
def test_linearized_gradient_flow_is_exp_of_minus_2tk(solver, rtol):
    # The kernel's eigenvalues span 1e-3 to 3.3: by t = 5 the fast directions have
    # converged and the slow ones have barely moved, so every part of e^{-2tK} is tested.
    method = rf.GradientFlow(
        5.0, solver=solver, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol * 1e-2)
    )
    save = rf.Save(num=11, metrics=_residuals_metric(linearize(LOSS)))
    # 1e-8 of ‖r₀‖, as asked of the flow; at these tolerances the solves are within 3e-14
    # (Tsit5) and 4e-10 (Rosenbrock, third order, 1600 steps) of the closed form.
    assert _linear_run(method, save) < 1e-8


def test_linearized_modified_flow_is_exp_of_minus_2tk_times_one_plus_eta_k():
    # L̃ = Σr² + (η/4)‖2Jᵀr‖² = rᵀr + η rᵀKr, so ṙ = -2K(I + ηK) r.
    method = rf.ModifiedFlow(
        0.05, 5.0, stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-14)
    )
    save = rf.Save(num=11, metrics=_residuals_metric(linearize(LOSS)))
    assert _linear_run(method, save) < 1e-8  # measured 1.1e-13


def test_linearized_gradient_descent_is_powers_of_one_minus_2_eta_k():
    method = rf.GradientDescent(0.01, 500)
    save = rf.Save(num=11, metrics=_residuals_metric(linearize(LOSS)))
    # Exact up to rounding: 500 steps of a contraction, each with a few ulps of error
    # (measured 1.4e-15).
    assert _linear_run(method, save) < 1e-12


def test_closed_forms_start_at_r0_and_gradient_descent_follows_the_modified_flow():
    k, r0, ts = ntk(LOSS, P0), LOSS.residuals(P0), jnp.asarray([0.5, 2.0])
    gf = ntk_residuals(k, r0, ts, rf.GradientFlow(1.0))
    np.testing.assert_allclose(
        ntk_residuals(k, r0, 0.0, rf.GradientFlow(1.0)), r0, rtol=1e-14, atol=1e-15
    )  # e^0 = I, to the rounding of V Vᵀ

    # Backward error analysis, on the closed forms: n log(I − 2ηK) = −2nηK(I + ηK) + O(nη³),
    # so gradient descent is O(η) from the flow and O(η²) from the modified flow over a
    # fixed time. Halving η (ηλ_max ≤ 0.017) halves and quarters the gaps.
    def gaps(eta):
        gd = ntk_residuals(k, r0, ts, rf.GradientDescent(eta, 10))
        mf = ntk_residuals(k, r0, ts, rf.ModifiedFlow(eta, 1.0))
        return np.asarray([jnp.max(jnp.abs(gd - gf)), jnp.max(jnp.abs(gd - mf))])

    flow, modified = gaps(0.005) / gaps(0.0025)
    assert 1.9 < flow < 2.1 and 3.7 < modified < 4.3  # measured 2.0005 and 3.92


# -- many seeds, each linearized at its own start ----------------------------------------------


def test_train_seeds_linearizes_each_seed_at_its_own_initialization():
    keys = jax.random.split(jax.random.key(5), 3)
    params0 = rf.init_seeds(DIAGONAL, keys, scale=0.5)
    lin = linearize(LOSS)
    method = rf.GradientDescent(0.01, 200)
    save = rf.Save(num=5, metrics=_residuals_metric(lin))
    trajs = rf.train_seeds(lin, TaylorParams(params0), method, save=save)
    kernels = jax.vmap(lambda p: ntk(LOSS, p))(params0)
    r0 = jax.vmap(LOSS.residuals)(params0)
    closed = jax.vmap(lambda k, r: ntk_residuals(k, r, trajs.ts[0], method))(kernels, r0)
    # A seed linearized at another seed's start would be off by O(1).
    np.testing.assert_allclose(trajs.metrics["r"], closed, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(trajs.final.theta0.a, params0.a)
    for i in range(3):
        one = jax.tree.map(lambda x: x[i], params0)
        alone = rf.train(lin, TaylorParams(one), method, save=save)
        # Batched and single runs differ by a few ulps per step at most.
        np.testing.assert_allclose(
            trajs.metrics["r"][i], alone.metrics["r"], rtol=1e-12, atol=1e-14
        )


def test_a_loss_of_yours_over_a_taylor_model_trains_like_the_linearized_loss():
    f_lin = linearize(lambda p: DIAGONAL.impulse_response(p, K)[:, 0, 0])
    target = TEACHER.impulse_response(K)[:, 0, 0]

    def loss(p):
        return jnp.sum((f_lin(p) - target) ** 2)

    method = rf.GradientDescent(0.01, 100)
    final = rf.train(loss, TaylorParams(P0), method).final
    closed = ntk_residuals(ntk(LOSS, P0), LOSS.residuals(P0), 1.0, method)
    # (I − 2ηK)¹⁰⁰ r₀ to rounding, as for the linearized loss (measured 1e-15).
    np.testing.assert_allclose(f_lin(final) - target, closed, rtol=1e-12, atol=1e-14)


# -- side by side, and the laziness metrics ----------------------------------------------------


def test_side_by_side_gradient_descent_is_the_two_runs_at_once():
    method = rf.GradientDescent(0.02, 300)
    both = rf.train(side_by_side(LOSS), SideBySide(P0), method, save=rf.Save(num=2))
    real = rf.train(LOSS, P0, method, save=rf.Save(num=2))
    # The separate real run uses the diagonal loss's closed-form gradient, the pair autodiff:
    # equal to rounding, which 300 steps of a non-linear map amplify little.
    for a, b in zip(jax.tree.leaves(both.final.real), jax.tree.leaves(real.final), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    # The linear twin: (I − 2ηK)³⁰⁰ r₀, to rounding.
    closed = ntk_residuals(ntk(LOSS, P0), LOSS.residuals(P0), 6.0, method)
    np.testing.assert_allclose(
        linearize(LOSS).residuals(both.final.linear), closed, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_array_equal(both.final.linear.theta0.a, P0.a)
    # Its default metrics, which start alike.
    m = {k: np.asarray(v) for k, v in both.metrics.items()}
    assert set(m) == {
        "loss",
        "linear_loss",
        "parameter_change",
        "kernel_change",
        "linearization_gap",
    }
    np.testing.assert_allclose(m["loss"], real.metrics["loss"], rtol=1e-11)
    assert m["loss"][0] == m["linear_loss"][0] and m["linearization_gap"][0] == 0


def test_laziness_metrics_match_hand_computations_per_seed():
    keys = jax.random.split(jax.random.key(6), 2)
    params0 = rf.init_seeds(DIAGONAL, keys, scale=0.3)
    beyond = range(K, 20)

    def horizon(p):  # the extrapolation beyond training, linearized too
        return DIAGONAL.impulse_response(p, 20)[K:]

    save = rf.Save(
        num=4,
        params=True,
        metrics={
            "param": parameter_change_metric(),
            "dist": parameter_change_metric(relative=False),
            "kernel": kernel_change_metric(LOSS),
            "gap": linearization_gap_metric(LOSS),
            "gap_beyond": linearization_gap_metric(horizon),
        },
    )
    trajs = rf.train_seeds(
        side_by_side(LOSS), SideBySide(params0), rf.GradientDescent(0.02, 300), save=save
    )
    trajs, params0 = jax.device_get((trajs, params0))
    target = _hand_response(TEACHER.params, range(K))
    for i in range(2):
        theta0 = jax.tree.map(lambda x: x[i], params0)
        size0 = np.sqrt(sum(np.sum(x**2) for x in jax.tree.leaves(theta0)))
        j0 = _hand_jacobian(theta0)
        k0 = j0 @ j0.T
        jh = _hand_jacobian(theta0, beyond)
        for s in range(4):
            real = jax.tree.map(lambda x: x[i, s], trajs.params.real)
            delta = jax.tree.map(lambda x: x[i, s], trajs.params.linear.delta)
            step = np.concatenate([x.ravel() for x in jax.tree.leaves(delta)])
            pairs = zip(jax.tree.leaves(real), jax.tree.leaves(theta0), strict=True)
            moved = np.sqrt(sum(np.sum((x - y) ** 2) for x, y in pairs))
            j = _hand_jacobian(real)
            linear_r = _hand_response(theta0, range(K)) - target + j0 @ step
            linear_h = _hand_response(theta0, beyond) + jh @ step
            expected = {
                "param": moved / size0,
                "dist": moved,
                "kernel": np.linalg.norm(j @ j.T - k0) / np.linalg.norm(k0),
                "gap": np.linalg.norm(_hand_response(real, range(K)) - target - linear_r),
                "gap_beyond": np.linalg.norm(_hand_response(real, beyond) - linear_h),
            }
            got = {k: float(v[i, s]) for k, v in trajs.metrics.items()}
            for name, value in expected.items():
                # Rounding only: sums of a few dozen float64 terms, and the gaps a difference
                # of nearby numbers (1e-10 of a gap of 1e-2 is 1e-12 absolute).
                np.testing.assert_allclose(got[name], value, rtol=1e-10, atol=1e-14, err_msg=name)
            if s == 0:  # both start at θ₀: nothing has moved yet
                assert all(v == 0 for v in got.values())
    # This run leaves the kernel regime: its kernel changes by more than a tenth.
    assert np.all(trajs.metrics["kernel"][:, -1] > 0.1)


def test_parameter_change_of_a_linearized_run_is_its_displacement():
    delta = jax.tree.map(lambda x: 0.5 * x, P0)
    fn = parameter_change_metric()
    np.testing.assert_allclose(fn(0.0, TaylorParams(P0, delta)), 0.5, rtol=1e-15)


# -- neural-tangents, where it installs beside this JAX ---------------------------------------


def _neural_tangents():
    # Not installed, or written for an older JAX: 0.6.5 (the newest) imports jax.core.Jaxpr
    # and jax.util, which jax 0.10 no longer has, and pulls in TensorFlow.
    try:
        import neural_tangents as nt
    except Exception as e:
        pytest.skip(
            f"neural-tangents does not import beside jax {jax.__version__} "
            f"({type(e).__name__}: {e}); jax.jacfwd/jacrev are the second implementation here"
        )
    return nt


def test_ntk_and_the_closed_form_agree_with_neural_tangents():
    nt = _neural_tangents()
    dense = rf.DenseRNN(4)
    p = dense.init(key=jax.random.key(7), scale=0.4)
    length = 6

    def apply_fn(params, x):  # one "input" per training lag: outputs of shape (k, 1)
        return dense.impulse_response(params, length)[:, 0, :]

    x = jnp.zeros((length, 1))
    kernel_fn = nt.empirical_ntk_fn(
        apply_fn, vmap_axes=None, implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION
    )
    k_nt = kernel_fn(x, None, p)  # the output axis (of size 1) traced out: (k, k)
    np.testing.assert_allclose(ntk(lambda q: apply_fn(q, x), p), k_nt, rtol=1e-12, atol=1e-15)

    y = TEACHER.impulse_response(length)[:, 0, :]
    f0 = apply_fn(p, x)
    # neural-tangents' loss is (1/2N) Σ (f − y)², N = y.size: rate ηK/N, against our 2K.
    predict = nt.predict.gradient_descent_mse(k_nt, y, learning_rate=2.0 * y.size)
    ts = jnp.asarray([0.0, 0.1, 1.0, 5.0])
    f_nt = predict(ts, f0)[..., 0]
    ours = y[:, 0] + ntk_residuals(k_nt, (f0 - y)[:, 0], ts, rf.GradientFlow(1.0))
    np.testing.assert_allclose(ours, f_nt, rtol=1e-12, atol=1e-14)


# -- the centered model -----------------------------------------------------------------------


def test_centered_pair_starts_at_output_zero_with_the_uncentered_jacobian():
    pair = side_by_side(LOSS, centered=True)
    target = _hand_response(TEACHER.params, range(K))
    p0 = SideBySide(P0)

    def horizon(p):
        return DIAGONAL.impulse_response(p, 20)

    # At θ = θ₀ both models output exactly zero, so both residuals are exactly -y.
    for out in (pair.real_output(horizon, p0), pair.linear_output(horizon, p0)):
        np.testing.assert_array_equal(out, np.zeros((20, 1, 1)))
    y = np.ravel(TEACHER.impulse_response(K))
    np.testing.assert_array_equal(pair.residuals(p0), np.concatenate([-y, -y]))
    # Elsewhere the real model is h(θ) − h(θ₀), the linearization J(θ₀)δ (in NumPy).
    moved = jax.tree.map(lambda x: 1.3 * x, P0)
    delta = jax.tree.map(jnp.subtract, moved, P0)
    p1 = SideBySide(moved, TaylorParams(P0, delta))
    lags = range(K)
    np.testing.assert_allclose(
        pair.real_residuals(p1),
        _hand_response(moved, lags) - _hand_response(P0, lags) - target,
        rtol=1e-12,
        atol=1e-15,
    )
    flat_delta = np.concatenate([np.ravel(x) for x in (delta.a, delta.b, delta.c)])
    np.testing.assert_allclose(
        pair.linear_residuals(p1), _hand_jacobian(P0) @ flat_delta - target, rtol=1e-12
    )
    # The Jacobian in θ is the uncentered one (closed form); θ₀ gets none.
    for p, point in ((p0, P0), (p1, moved)):
        jac = jax.jacrev(pair.real_residuals)(p)
        np.testing.assert_allclose(
            _flat_jacobian(jac.real, K), _hand_jacobian(point), rtol=1e-12, atol=1e-15
        )
        assert not any(np.any(x) for x in jax.tree.leaves(jac.linear))
    jac = jax.jacrev(pair.linear_residuals)(p1)
    np.testing.assert_allclose(_flat_jacobian(jac.linear.delta, K), _hand_jacobian(P0), rtol=1e-12)
    assert not any(np.any(x) for x in jax.tree.leaves((jac.real, jac.linear.theta0)))
    # The kernel and the gap are the uncentered model's: the metrics need no change.
    gap = linearization_gap_metric(LOSS)(0.0, p1)
    np.testing.assert_allclose(
        gap, np.linalg.norm(pair.real_residuals(p1) - pair.linear_residuals(p1)), rtol=1e-12
    )


def test_centered_run_is_the_run_against_the_shifted_target_and_keeps_theta0():
    keys = jax.random.split(jax.random.key(7), 2)
    params0 = rf.init_seeds(DIAGONAL, keys, scale=0.5)
    method = rf.GradientDescent(0.02, 300)
    pair = side_by_side(LOSS, centered=True)
    trajs = rf.train_seeds(pair, SideBySide(params0), method, save=rf.Save(num=2))
    # θ₀ is held: bitwise where it started, by gradient descent and by the stiff flow.
    for a, b in zip(jax.tree.leaves(trajs.final.linear.theta0), jax.tree.leaves(params0)):
        np.testing.assert_array_equal(a, b)
    flow = rf.GradientFlow(5.0, solver=rf.LeastSquaresRosenbrock())
    one = jax.tree.map(lambda x: x[0], params0)
    moved = rf.train(pair, SideBySide(one), flow, save=rf.Save(num=2)).final
    for a, b in zip(jax.tree.leaves(moved.linear.theta0), jax.tree.leaves(one)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(moved.real.a, one.a)
    y = TEACHER.impulse_response(K)
    for i in range(2):
        start = jax.tree.map(lambda x: x[i], params0)
        shift = DIAGONAL.impulse_response(start, K)

        def shifted(p, shift=shift):  # f(θ) against the target y + f(θ₀): a second program
            return jnp.sum((DIAGONAL.impulse_response(p, K) - shift - y) ** 2)

        alone = rf.train(shifted, start, method).final
        for a, b in zip(jax.tree.leaves(trajs.final.real), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-11, atol=1e-13)
        # The linear twin starts from r = -y: (I − 2ηK₀)³⁰⁰ (−y).
        closed = ntk_residuals(ntk(LOSS, start), -jnp.ravel(y), 6.0, method)
        last = jax.tree.map(lambda x: x[i], trajs.final)
        np.testing.assert_allclose(pair.linear_residuals(last), closed, rtol=1e-12, atol=1e-14)


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_is_refused_before_compiling():
    with pytest.raises(TypeError, match="`f`"):
        linearize(3)
    with pytest.raises(TypeError, match="`loss_fn`.*residuals"):
        side_by_side(lambda p: jnp.sum(p**2))
    with pytest.raises(ValueError, match="`theta0`"):
        TaylorParams({"n": jnp.arange(3)})
    with pytest.raises(ValueError, match="`delta`"):
        TaylorParams(P0, delta={"a": P0.a})
    with pytest.raises(ValueError, match=r"`delta\.a`"):
        TaylorParams(P0, delta=rf.RNNParams(P0.a[:3], P0.b, P0.c))
    with pytest.raises(TypeError, match="`linear`"):
        SideBySide(P0, linear=P0)
    gd = rf.GradientDescent(0.01, 10)
    with pytest.raises(TypeError, match=r"TaylorParams\(params0\)"):
        rf.train(linearize(LOSS), P0, gd)
    with pytest.raises(TypeError, match=r"SideBySide\(params0\)"):
        rf.train(side_by_side(LOSS), P0, gd)
    with pytest.raises(TypeError, match=r"TaylorParams\(params0\)"):  # no `check` to run it
        rf.train(linearize(lambda p: p["w"]), {"w": jnp.ones(2)}, gd)
    with pytest.raises(ValueError, match="one seed"):
        rf.train_seeds(linearize(LOSS), TaylorParams(P0), gd)
    with pytest.raises(TypeError, match="`f`"):
        ntk(3, P0)
    with pytest.raises(ValueError, match="`params`"):
        ntk(lambda p: p, {"n": jnp.arange(3)})
    with pytest.raises(TypeError, match="real floating"):
        ntk(lambda p: p["w"] > 0, {"w": jnp.ones(2)})
    k, r0, ts, gf = ntk(LOSS, P0), LOSS.residuals(P0), jnp.zeros(2), rf.GradientFlow(1.0)
    with pytest.raises(ValueError, match="`kernel`"):
        ntk_residuals(k[:, :3], r0, ts, gf)
    with pytest.raises(ValueError, match="`residuals0`"):
        ntk_residuals(k, r0[:3], ts, gf)
    with pytest.raises(TypeError, match="`method`"):
        ntk_residuals(k, r0, ts, rf.GradientDescent(optax.constant_schedule(0.1), 10))
    with pytest.raises(TypeError, match="`method`"):
        ntk_residuals(k, r0, ts, rf.GradientDescent(0.1, 10, optax.adam(0.1)))
    with pytest.raises(TypeError, match="`method`"):
        ntk_residuals(k, r0, ts, "flow")
    with pytest.raises(TypeError, match="`relative`"):
        parameter_change_metric(relative=1)
    with pytest.raises(TypeError, match="`f`"):
        kernel_change_metric(None)
    with pytest.raises(TypeError, match="SideBySide"):
        kernel_change_metric(LOSS)(0.0, P0)
    with pytest.raises(TypeError, match="SideBySide or TaylorParams"):
        parameter_change_metric()(0.0, P0)
    with pytest.raises(TypeError, match="SideBySide"):
        linearization_gap_metric(LOSS)(0.0, TaylorParams(P0))
    with pytest.raises(TypeError, match="`centered`"):
        side_by_side(LOSS, centered=1)
    assert isinstance(side_by_side(LOSS), SideBySideLoss)
