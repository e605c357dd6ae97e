"""The training methods against ground truth (facts 1 and 2 on the science page).

- gradient descent with `optax.sgd(η)` is the explicit Euler discretisation of the gradient
  flow, to rounding;
- GD → gradient flow at first order in η, GD → modified flow at second order;
- the imbalance Q is conserved by the flow and drifts by O(η) under GD;
- a scalar flow with a closed form (a logistic equation);
- the time axis, early stopping, what `Save` records, and the work counters.

Everything runs in float64 (tests/conftest.py), on small problems. Each distinct method,
`Save` or `Stop` is one compilation, so the module shares them where it can.
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

TEACHER = rf.modes_teacher([0.8, -0.5], [1.0, 0.5])
LOSS = rf.ImpulseLoss(TEACHER, train_len=4)
# The sequential scan compiles faster than the associative one (the scans agree: see
# tests/test_scan.py).
DIAG = rf.DiagonalRNN(4, scan="sequential")
DENSE = rf.DenseRNN(3, scan="sequential")
MODELS = {"diagonal": DIAG, "dense": DENSE}
# Unbalanced random start of entry scale 0.3: far enough from zero that the loss falls fast
# (no plateau), and unbalanced, so that Q is not trivially zero.
SCALE = 0.3
# Tight enough that solver error (≲ 1e-10 on these problems) is far below every effect
# measured against the flow below (≥ 2e-4).
TIGHT = diffrax.PIDController(rtol=1e-12, atol=1e-12)


def _params(model):
    return model.init(key=jax.random.key(0), scale=SCALE)


def _dist(x, y) -> float:
    """Euclidean distance between two parameter pytrees."""
    sq = sum(
        np.sum((np.asarray(u) - np.asarray(v)) ** 2)
        for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y))
    )
    return float(np.sqrt(sq))


def _slope(etas, errors) -> float:
    return float(np.polyfit(np.log(etas), np.log(errors), 1)[0])


# The work counters (num_grad_evals) are checked against a loss that counts its own
# gradients, used in place of LOSS wherever a test trains anyway.
_GRADS = [0]


def _count_gradient():
    _GRADS[0] += 1


@jax.custom_vjp
def _counted(x):
    """The identity, whose backward pass counts (on the host) each gradient evaluation."""
    return x


def _counted_fwd(x):
    return x, None


def _counted_bwd(_, g):
    jax.debug.callback(_count_gradient)
    return (g,)


_counted.defvjp(_counted_fwd, _counted_bwd)


class _GradientCountingLoss(rf.AbstractLoss):
    """The impulse loss, counting how often its gradient is taken: ground truth for the
    counters. Loss values alone (stop checks, metrics) run no backward pass."""

    teacher: rf.Teacher
    train_len: int = eqx.field(static=True)

    def __call__(self, model, params):
        h = model.impulse_response(params, self.train_len)
        return _counted(jnp.sum((h - self.teacher.impulse_response(self.train_len)) ** 2))


COUNTING = _GradientCountingLoss(TEACHER, 4)


def _train_counted(model, method, params, **kwargs):
    """Train on COUNTING (numerically LOSS); also return how many gradients were taken."""
    _GRADS[0] = 0
    traj = rf.train(COUNTING.bind(model), params, method, **kwargs)
    jax.effects_barrier()
    return traj, _GRADS[0]


@functools.cache
def _metrics_with_q(model):
    """Loss, Q and the non-conserved ‖B‖², for one model. Cached: a `Save` holding fresh
    lambdas would hash differently and recompile."""
    return {
        "loss": lambda t, p: LOSS(model, p),
        "q": lambda t, p: model.imbalance(p),
        "b_sq": lambda t, p: jnp.sum(p.b**2),
    }


# The start and t = 2, where GD, the flow and the modified flow are compared. One Save for
# all of them, so that runs which differ only in their method share what can be shared.
SAVE_T2 = rf.Save(ts=[0.0, 2.0], metrics=_metrics_with_q(DIAG))
# The flow to t = 20 in ten saves (t = 2 among them), with tight tolerances: it shows
# conservation and is the reference for the convergence orders.
SAVE_T20 = {
    name: rf.Save(num=11, metrics=_metrics_with_q(m), params=True) for name, m in MODELS.items()
}


@functools.cache
def _flow(name):
    method = rf.GradientFlow(t1=20.0, stepsize_controller=TIGHT)
    return rf.train(LOSS.bind(MODELS[name]), _params(MODELS[name]), method, save=SAVE_T20[name])


# -- gradient descent is explicit Euler -------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_gradient_descent_is_euler_on_the_flow(name):
    model = MODELS[name]
    eta, n = 0.05, 40
    params = _params(model)
    # Every fifth step, so the saved times are step ends of both methods.
    save = rf.Save(ts=np.arange(0, n + 1, 5) * eta, params=True, metrics=_metrics_with_q(model))
    sgd = rf.GradientDescent(lr=eta, num_steps=n, optimizer=optax.sgd(eta))
    gd, gd_grads = _train_counted(model, sgd, params, save=save)
    euler = rf.GradientFlow(
        t1=n * eta, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=eta
    )
    gf, gf_grads = _train_counted(model, euler, params, save=save)

    np.testing.assert_array_equal(gd.ts, gf.ts)
    # One gradient per step for both, and the counters say so: a seed that never stops
    # takes no gradient beyond its steps (the loss at the last state is a forward pass).
    assert int(gd.num_steps) == int(gf.num_steps) == n
    assert int(gd.num_grad_evals) == gd_grads == n
    assert int(gf.num_grad_evals) == gf_grads == n
    # Both compute θ - η∇L(θ) with the same operations. What differs is rounding only:
    # diffrax takes dt = t_{k+1} - t_k from accumulated times (η perturbed by ~1e-17 per
    # step) and reads saves by linear interpolation at step ends. Over 40 steps with
    # parameters of order 1 that is a few ulps (measured: ≤ 4e-16); 1e-13 leaves room for
    # error growth, while being one step off would differ by η‖∇L‖ ~ 1e-2.
    for f in ("a", "b", "c"):
        np.testing.assert_allclose(getattr(gd.params, f), getattr(gf.params, f), rtol=0, atol=1e-13)
        np.testing.assert_allclose(getattr(gd.final, f), getattr(gf.final, f), rtol=0, atol=1e-13)
    # The metrics too (the loss falls by two orders over the run, so this is not comparing
    # constants).
    assert gd.metrics["loss"][-1] < 0.02 * gd.metrics["loss"][0]
    for metric in gd.metrics:
        np.testing.assert_allclose(gd.metrics[metric], gf.metrics[metric], rtol=1e-12, atol=1e-15)


# -- convergence orders -----------------------------------------------------------------------

ETAS = (0.04, 0.02, 0.01, 0.005)


def _flow_final():
    """The tight gradient flow at t = 2 (its second save): the reference."""
    traj = _flow("diagonal")
    assert float(traj.ts[1]) == 2.0
    return jax.tree.map(lambda x: x[1], traj.params)


@functools.cache
def _gd(model, eta):
    method = rf.GradientDescent(lr=eta, num_steps=round(2.0 / eta))
    save = SAVE_T2 if model is DIAG else rf.Save(ts=[0.0, 2.0], metrics=_metrics_with_q(model))
    return rf.train(LOSS.bind(model), _params(model), method, save=save)


def _gd_final(eta):
    return _gd(DIAG, eta).final


@functools.cache
def _modified_final(eta):
    method = rf.ModifiedFlow(lr=eta, t1=2.0, stepsize_controller=TIGHT)
    return rf.train(LOSS.bind(DIAG), _params(DIAG), method, save=SAVE_T2).final


def test_gradient_descent_converges_to_flow_at_first_order():
    # By t = 2 the loss has fallen from 3.3 to 0.04 and the parameters moved by 1.3: the
    # error is measured along a real trajectory, not near a fixed point.
    errors = [_dist(_gd_final(eta), _flow_final()) for eta in ETAS]
    assert np.all(np.diff(errors) < 0), errors
    # GD is explicit Euler (first order): global error C·η + O(η²). Measured slope 0.988
    # (pairwise 0.979, 0.989, 0.994, tending to 1); ±0.2 admits the O(η²) term at the
    # largest η and rejects order 0 or 2.
    assert abs(_slope(ETAS, errors) - 1.0) < 0.2, errors


def test_modified_flow_tracks_gradient_descent_at_second_order():
    etas = ETAS[:3]
    errors = [_dist(_gd_final(eta), _modified_final(eta)) for eta in etas]
    # Backward error analysis: one GD step is the time-η map of the flow of
    # L + (η/4)‖∇L‖² up to O(η³), so over a fixed time the gap is O(η²), against O(η) for
    # the plain flow. Measured slope 1.995 (pairwise 1.993, 1.996); ±0.3 admits the O(η³)
    # term and rejects first order. Solver error (≲ 1e-10) is far below the smallest gap
    # (2e-4).
    assert abs(_slope(etas, errors) - 2.0) < 0.3, errors
    # And the modified flow is much closer to GD than the plain flow is.
    assert errors[0] < 0.2 * _dist(_gd_final(etas[0]), _flow_final())


def test_modified_flow_with_tiny_lr_is_the_gradient_flow():
    eta = 1e-8
    # The modified flow differs from the flow by O(η) (measured 0.90·η here, for η from 1e-9
    # to 1e-6), plus solver error ≲ 1e-10: 1e-7 is 10× that, while at η = 0.04 the gap is
    # 3e-2, so the bound does tell the flows apart.
    assert _dist(_modified_final(eta), _flow_final()) < 1e-7
    assert _dist(_modified_final(ETAS[0]), _flow_final()) > 1e-3


# -- the least-squares Rosenbrock solver -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tableau", "order", "dts"),
    [("ros2", 2, (0.005, 0.0025, 0.00125)), ("ros34pw2", 3, (0.02, 0.01, 0.005))],
)
def test_least_squares_rosenbrock_order(tableau, order, dts):
    # W-methods, with the Gauss-Newton matrix 2JᵀJ, which is not the Hessian here (the
    # residuals are O(1) along the way): a W-method keeps its order for any such matrix.
    # Constant steps to t = 2 against the tight flow. Pairwise slopes measured from
    # dt = 0.08 down: ROS2 1.43, 1.61, 1.76, 1.86, 1.93, fitted over the three steps here
    # 1.94; ROS34PW2 2.68, 2.82, 2.90, 2.95, 2.97, fitted here 2.93. ±0.15 rejects the
    # orders next to each.
    errors = []
    for dt in dts:
        method = rf.GradientFlow(
            t1=2.0,
            solver=rf.LeastSquaresRosenbrock(tableau),
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=dt,
        )
        errors.append(
            _dist(
                rf.train(LOSS.bind(DIAG), _params(DIAG), method, save=SAVE_T2).final, _flow_final()
            )
        )
    assert abs(_slope(dts, errors) - order) < 0.15, errors
    # The smallest error (measured: ROS2 1.2e-5, ROS34PW2 8.0e-7) is far above the
    # reference's ≲ 1e-10, so the slope is not fitted to the reference's own error.
    assert errors[-1] > 1e-9


@pytest.mark.parametrize("m", [1, 5, 8, 12, 33])
def test_gauss_newton_solve_matches_a_dense_solve(m):
    # (I + cJᵀJ)⁻¹v by Woodbury: unrolled Cholesky up to m = 8 residuals, LAPACK above;
    # with more residuals than the n = 20 parameters (m = 33), the n × n system itself.
    # Against a direct solve of the n × n system; J of O(1) entries and c = 3 make the
    # system far from the identity (condition numbers 41 to 172 up to m = 12).
    from rnnflow._engine.methods.rosenbrock import _gauss_newton_solver

    n, c = 20, 3.0
    jac = jax.random.normal(jax.random.key(m), (m, n))
    v = jax.random.normal(jax.random.key(100 + m), (n,))
    expected = np.linalg.solve(np.eye(n) + c * np.asarray(jac.T @ jac), np.asarray(v))
    solve = jax.jit(lambda jac, v: _gauss_newton_solver(jac, c)(v))
    np.testing.assert_allclose(solve(jac, v), expected, rtol=1e-11, atol=1e-13)
    # Batched as train_seeds runs it.
    batched = jax.vmap(solve)(jnp.stack([jac, 2 * jac]), jnp.stack([v, v]))
    np.testing.assert_allclose(batched[0], expected, rtol=1e-11, atol=1e-13)


class _LinearLeastSquares(eqx.Module):
    """L(w) = ‖Xw − y‖², offering its residuals."""

    x: jax.Array
    y: jax.Array

    def residuals(self, params):
        return self.x @ params["w"] - self.y

    def __call__(self, params):
        return jnp.sum(self.residuals(params) ** 2)


def test_least_squares_rosenbrock_with_more_residuals_than_parameters():
    # 24 residuals, 10 parameters (the solves are 10 × 10): the flow w' = −2Xᵀ(Xw − y) is
    # w(t) = w* + exp(−2XᵀX t)(w0 − w*), w* the least-squares solution. The rates (the
    # eigenvalues of 2XᵀX) span 0.61-8.7, so by t = 3 the slowest mode has fallen to a
    # sixth and the fastest by 10⁻¹¹. (The solve itself is checked against a dense one
    # above; a W-method keeps its accuracy for any W, so this checks the plumbing.)
    m, n = 24, 10
    x = jax.random.normal(jax.random.key(0), (m, n)) / np.sqrt(m) + jnp.eye(m, n)
    y = jax.random.normal(jax.random.key(1), (m,))
    w0 = jax.random.normal(jax.random.key(2), (n,))
    loss = _LinearLeastSquares(x, y)
    method = rf.GradientFlow(
        t1=3.0,
        solver=rf.LeastSquaresRosenbrock(),
        stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-12),
    )
    traj = rf.train(loss, {"w": w0}, method, save=rf.Save(ts=[0.0, 1.0, 3.0], params=True))
    xn, w0n = np.asarray(x), np.asarray(w0)
    w_star = np.linalg.lstsq(xn, np.asarray(y), rcond=None)[0]
    rates, vectors = np.linalg.eigh(2 * xn.T @ xn)
    for t, w in zip((0.0, 1.0, 3.0), np.asarray(traj.params["w"]), strict=True):
        exact = w_star + vectors @ (np.exp(-rates * t) * (vectors.T @ (w0n - w_star)))
        np.testing.assert_allclose(w, exact, atol=1e-7)
    assert np.linalg.norm(np.asarray(traj.params["w"])[-1] - w0n) > 0.5  # it moved


@pytest.mark.parametrize(
    ("name", "tableau"),
    [
        ("diagonal", "ros2"),
        ("diagonal", "ros34pw2"),
        pytest.param("dense", "ros34pw2", marks=pytest.mark.slow),
    ],
)
def test_least_squares_rosenbrock_follows_the_flow(name, tableau):
    # Adaptive steps to t = 20, where the loss has fallen by five orders or more and the
    # flow is stiff; the tight Tsit5 flow is the reference (its error ≲ 1e-9).
    model = MODELS[name]
    solver = rf.LeastSquaresRosenbrock(tableau)
    method = rf.GradientFlow(
        t1=20.0,
        solver=solver,
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10),
    )
    traj = rf.train(LOSS.bind(model), _params(model), method, save=SAVE_T20[name])
    ref = _flow(name)
    assert traj.result == rf.Result.finished
    np.testing.assert_array_equal(traj.ts, ref.ts)
    # At rtol 1e-8 the global error stays near the tolerance at every save, interpolated
    # ones included: measured 1.7e-8 (ROS2, diagonal, 69 667 steps), 1.2e-8 and 1.3e-8
    # (ROS34PW2, diagonal and dense, about 1 300 steps), on parameters of order 1 that
    # move by O(1).
    for f in ("a", "b", "c"):
        np.testing.assert_allclose(getattr(traj.params, f), getattr(ref.params, f), atol=1e-7)
    assert int(traj.num_grad_evals) == solver.stages * int(traj.num_steps) + 1


# -- the conserved imbalance ------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_flow_conserves_imbalance(name):
    traj = _flow(name)
    assert traj.result == rf.Result.finished
    loss = np.asarray(traj.metrics["loss"])
    q = np.asarray(traj.metrics["q"])
    # The dynamics are far from trivial: the loss falls by more than five orders (measured
    # 3.3 → 9e-7 diagonal, → 1e-18 dense), Q is of order 0.1-0.5, and ‖B‖², which is not
    # conserved, changes by an amount of order 0.1-1.
    assert loss[-1] < 1e-5 * loss[0]
    assert np.max(np.abs(q[0])) > 0.1
    assert abs(traj.metrics["b_sq"][-1] - traj.metrics["b_sq"][0]) > 0.05
    # Q is exactly conserved by the flow; what is left is solver error. With rtol = atol =
    # 1e-12 over ~700 steps the parameters are accurate to ≲ 1e-9, and Q (quadratic in
    # parameters of order 1) to the same. Measured drift: 4e-13 (diagonal), 2e-13 (dense).
    np.testing.assert_allclose(q, np.broadcast_to(q[0], q.shape), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_gradient_descent_imbalance_drift_is_first_order(name):
    drifts = []
    for eta in ETAS:
        q = np.asarray(_gd(MODELS[name], eta).metrics["q"])
        drifts.append(float(np.max(np.abs(q[-1] - q[0]))))
    # One GD step changes Q by η² times a quadratic form in the gradient (the first-order
    # term is the flow's, which conserves Q); over the T/η steps to T = 2 that sums to
    # O(η). Measured slopes 0.990 (diagonal) and 0.999 (dense), pairwise within 0.98-1.00;
    # ±0.15 rejects both conservation (no drift) and O(1) or O(η²) drift.
    assert abs(_slope(ETAS, drifts) - 1.0) < 0.15, drifts
    assert drifts[-1] > 1e-4  # well above rounding: the slope is not fitted to noise


# -- a closed-form flow -----------------------------------------------------------------------


def test_scalar_flow_matches_logistic_closed_form():
    # DiagonalRNN(1) at train_len = 1: only h_0 = c·b is trained, so L = (cb - p)² and `a`
    # gets no gradient. From b = c = u the flow keeps b = c (∂L/∂b = 2(cb - p)c and
    # ∂L/∂c = 2(cb - p)b), du/dt = -2(u² - p)u, and w = u² = cb solves the logistic
    # equation dw/dt = -4w(w - p):  w(t) = p·w0 / (w0 + (p - w0)·exp(-4pt)).
    p, u0, a0 = 2.0, 0.05, 0.7
    model = rf.DiagonalRNN(1, scan="sequential")
    loss = rf.ImpulseLoss(rf.modes_teacher([0.5], [p]), train_len=1)
    params = rf.RNNParams(a=jnp.array([a0]), b=jnp.array([[u0]]), c=jnp.array([[u0]]))
    method = rf.GradientFlow(
        t1=2.0, stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12)
    )
    traj = rf.train(loss.bind(model), params, method, save=rf.Save(num=21, params=True, metrics={}))
    ts = np.asarray(traj.ts)
    w0 = u0**2
    exact = p * w0 / (w0 + (p - w0) * np.exp(-4 * p * ts))
    b = np.asarray(traj.params.b)[:, 0, 0]
    c = np.asarray(traj.params.c)[:, 0, 0]
    # w rises from 0.0025 to p = 2 (the sigmoid's midpoint is at t ≈ 0.84), so a wrong
    # gradient or time scale would be off by O(1). With rtol = 1e-10 the global relative
    # error stays near 1e-9 (the logistic flow does not amplify relative error); measured
    # 2e-10. 1e-8 is the bound.
    assert exact[-1] > 0.99 * p and exact[0] < 0.01 * p
    np.testing.assert_allclose(b * c, exact, rtol=1e-8)
    # Symmetry keeps b = c exactly (the two gradients are the same floating operations),
    # and `a` never moves.
    np.testing.assert_array_equal(b, c)
    np.testing.assert_array_equal(np.asarray(traj.params.a), np.full((ts.size, 1), a0))


# -- time axis, early stop, saving ------------------------------------------------------------


STOP = rf.Stop(loss_below=1e-4)
SAVE_STOP = rf.Save(num=41, params=True, metrics=_metrics_with_q(DIAG))


def _assert_holds_the_stopped_state(traj, t1):
    assert traj.result == rf.Result.converged and bool(traj.ok)
    t_stop = float(traj.t_stop)
    # The loss reaches 1e-4 near t = 13.1 (measured 13.05 for GD, 13.09 for the flows).
    assert 5.0 < t_stop < t1
    final_loss = float(LOSS(DIAG, traj.final))
    assert final_loss < 1e-4
    after = np.asarray(traj.ts) > t_stop
    assert after.sum() >= 10
    loss = np.asarray(traj.metrics["loss"])
    # After the stop every save holds the stopped state: the same values, bitwise (one
    # compiled function of one state), equal to the final parameters and their loss.
    assert np.all(loss[after] == loss[after][0])
    np.testing.assert_allclose(loss[after], final_loss, rtol=1e-13)
    for f in ("a", "b", "c"):
        saved = np.asarray(getattr(traj.params, f))[after]
        np.testing.assert_array_equal(saved, np.broadcast_to(getattr(traj.final, f), saved.shape))


@pytest.mark.parametrize(
    "method",
    [rf.GradientDescent(lr=0.01, num_steps=2000), rf.GradientFlow(t1=20.0)],
    ids=["gd", "gf"],
)
def test_early_stop_holds_the_stopped_state(method):
    params = _params(DIAG)
    traj, grads = _train_counted(DIAG, method, params, save=SAVE_STOP, stop=STOP)
    _assert_holds_the_stopped_state(traj, method.t1)
    ts, t_stop, loss = np.asarray(traj.ts), float(traj.t_stop), np.asarray(traj.metrics["loss"])
    if isinstance(method, rf.GradientDescent):
        # GD checks the loss before each step: it stops at the first step below 1e-4, so
        # every earlier save is at or above it, and t_stop is a whole number of steps.
        assert np.all(loss[ts < t_stop] >= 1e-4)
        assert int(traj.num_steps) == round(t_stop / method.lr)
        # The steps taken, plus the gradient evaluated at the step that found convergence.
        assert int(traj.num_grad_evals) == grads == int(traj.num_steps) + 1
    else:
        # Tsit5: 7 stages, first same as last, so 6 new gradients per step (accepted or
        # rejected), plus the first stage of the first step. Adaptive: the count is the
        # solver's, not a constant.
        assert int(traj.num_steps) > 20
        assert int(traj.num_grad_evals) == grads == 6 * int(traj.num_steps) + 1


@pytest.mark.slow
def test_rosenbrock_early_stop_holds_the_stopped_state():
    # The Rosenbrock solver steps on the flattened parameters: the saves, the stop check
    # and the final state must come back as parameter pytrees, and match the flow.
    method = rf.GradientFlow(t1=20.0, solver=rf.LeastSquaresRosenbrock())
    traj = rf.train(LOSS.bind(DIAG), _params(DIAG), method, save=SAVE_STOP, stop=STOP)
    assert jax.tree.structure(traj.final) == jax.tree.structure(_params(DIAG))
    _assert_holds_the_stopped_state(traj, method.t1)
    tsit5 = rf.train(
        LOSS.bind(DIAG), _params(DIAG), rf.GradientFlow(t1=20.0), save=SAVE_STOP, stop=STOP
    )
    # Both at rtol 1e-6. Each stops at the end of the step that crosses 1e-4 (measured
    # 13.107 and 13.089, with steps of about 0.04), and the saves before that agree to
    # the tolerance (measured 2.9e-6 apart).
    assert abs(float(traj.t_stop) - float(tsit5.t_stop)) < 0.1
    before = np.asarray(traj.ts) < min(float(traj.t_stop), float(tsit5.t_stop))
    for f in ("a", "b", "c"):
        np.testing.assert_allclose(
            np.asarray(getattr(traj.params, f))[before],
            np.asarray(getattr(tsit5.params, f))[before],
            atol=3e-5,
        )


def test_gradient_descent_diverging_on_its_last_step_is_diverged():
    # lr = 1 overshoots: the loss goes 3.3 → 1.4 → 16 → 2e16. The third step lands beyond
    # Stop.loss_above (1e10), and only a check of the final state can see that.
    params = _params(DIAG)
    save = rf.Save(num=4, metrics={})
    traj = rf.train(LOSS.bind(DIAG), params, rf.GradientDescent(lr=1.0, num_steps=3), save=save)
    assert LOSS(DIAG, traj.final) > 1e10
    assert traj.result == rf.Result.diverged and not bool(traj.ok)
    # One step fewer ends at loss 16: finished, as the check must not fire spuriously.
    traj = rf.train(LOSS.bind(DIAG), params, rf.GradientDescent(lr=1.0, num_steps=2), save=save)
    assert traj.result == rf.Result.finished


NAMED = {
    "loss": lambda t, p: LOSS(DIAG, p),
    "t": lambda t, p: t,
    "a0": lambda t, p: p.a[0],
    "h": lambda t, p: DIAG.impulse_response(p, 3),
}


def test_save_variants_gradient_descent():
    eta, n = 0.01, 1000
    params = _params(DIAG)
    method = rf.GradientDescent(lr=eta, num_steps=n)

    traj, grads = _train_counted(
        DIAG, method, params, save=rf.Save(num=7, metrics=NAMED, params=True)
    )
    # n steps, n gradients (the final state's loss is a forward pass).
    assert int(traj.num_steps) == n and int(traj.num_grad_evals) == grads == n
    # The time axis is step × lr, at the steps nearest the asked-for times.
    np.testing.assert_array_equal(traj.ts, np.rint(np.linspace(0, 10, 7) / eta) * eta)
    # Custom metrics: fn(t, params) at each save, any shape, t the saved time.
    assert set(traj.metrics) == set(NAMED)
    np.testing.assert_array_equal(traj.metrics["t"], traj.ts)
    np.testing.assert_array_equal(traj.metrics["a0"], traj.params.a[:, 0])
    assert traj.metrics["h"].shape == (7, 3, 1, 1)
    # Saved parameters: a leading save axis on every field; the first save is the start.
    assert traj.params.a.shape == (7, 4)
    assert traj.params.b.shape == (7, 4, 1)
    assert traj.params.c.shape == (7, 1, 4)
    np.testing.assert_array_equal(traj.params.a[0], params.a)
    np.testing.assert_array_equal(traj.params.a[-1], traj.final.a)
    # The loss at time 0 is the initial loss (jitted and eager evaluation may round
    # differently, hence 1e-14 rather than bitwise), and it falls afterwards.
    initial = float(LOSS(DIAG, params))
    np.testing.assert_allclose(traj.metrics["loss"][0], initial, rtol=1e-14)
    assert traj.metrics["loss"][-1] < 1e-3 * initial

    # Every 7th step, and the last step, as 1000 is not a multiple of 7.
    traj_every = rf.train(LOSS.bind(DIAG), params, method, save=rf.Save(every=7, metrics=NAMED))
    steps = np.append(np.arange(0, n + 1, 7), n)
    np.testing.assert_array_equal(traj_every.ts, steps * eta)
    # The same steps give the same values, whichever Save asked for them (steps 0 and 1000).
    for i, j in ((0, 0), (-1, -1)):
        np.testing.assert_array_equal(traj_every.metrics["a0"][i], traj.metrics["a0"][j])

    # Log spacing: 0, then num - 1 times from t1·10⁻⁴ to t1, rounded to whole steps (the
    # earliest ones round to step 0 or 1).
    traj_log = rf.train(
        LOSS.bind(DIAG), params, method, save=rf.Save(num=9, spacing="log", metrics=NAMED)
    )
    times = np.concatenate([[0.0], np.geomspace(10.0 * 1e-4, 10.0, 8)])
    np.testing.assert_array_equal(traj_log.ts, np.rint(times / eta) * eta)
    assert traj_log.ts[1] == 0.0 and traj_log.ts[-1] == 10.0
    np.testing.assert_array_equal(traj_log.metrics["a0"][1], traj_log.metrics["a0"][0])
    np.testing.assert_array_equal(traj_log.metrics["a0"][-1], traj.metrics["a0"][-1])


def test_save_variants_gradient_flow():
    params = _params(DIAG)
    method = rf.GradientFlow(t1=10.0)
    save = rf.Save(num=9, spacing="log", decades=3, metrics=NAMED)
    traj, grads = _train_counted(DIAG, method, params, save=save)
    assert int(traj.num_grad_evals) == grads == 6 * int(traj.num_steps) + 1  # Tsit5, as above
    # The flow saves at exactly the asked-for times, and fn(t, params) sees them.
    times = np.concatenate([[0.0], np.geomspace(10.0 * 1e-3, 10.0, 8)])
    np.testing.assert_array_equal(traj.ts, times)
    np.testing.assert_array_equal(traj.metrics["t"], times)
    np.testing.assert_allclose(traj.metrics["loss"][0], float(LOSS(DIAG, params)), rtol=1e-14)
    assert np.all(np.diff(traj.metrics["loss"]) < 0)  # the flow decreases the loss
    assert traj.params is None  # not asked for
    with pytest.raises(ValueError, match="Save.every"):
        rf.train(LOSS.bind(DIAG), params, method, save=rf.Save(every=3))
