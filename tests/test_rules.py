"""Update rules: any vector field F(θ) trained by the same methods on the same time axis.

Ground truth: the linear field F(θ) = Aθ with a non-symmetric A, whose flow is expm(tA)θ₀,
whose gradient descent is (I + ηA)ⁿθ₀ and whose modified flow is expm(t(A − ηA²/2))θ₀;
convergence orders in η; hand-written optax loops; bitwise equality with the loss path.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import rnnflow as rf

# A decaying rotation coupled to a third mode: eigenvalues -1 ± 2i and about -0.5,
# neither symmetric nor normal.
A = np.array([[-1.0, 2.0, 0.3], [-2.0, -1.0, 0.0], [0.5, 0.0, -0.5]])
THETA0 = {"u": jnp.asarray([1.0, 0.0]), "v": jnp.asarray(0.5)}
TIGHT = diffrax.PIDController(rtol=1e-11, atol=1e-13)


def _flat(p):
    return np.concatenate([np.ravel(p["u"]), np.ravel(p["v"])])


def linear_field(p):
    """F(θ) = Aθ on the pytree {"u": θ[:2], "v": θ[2]}."""
    theta = jnp.concatenate([p["u"], p["v"][None]])
    out = jnp.asarray(A) @ theta
    return {"u": out[:2], "v": out[2]}


RULE = rf.Rule(linear_field)


def test_flow_of_a_linear_field_is_its_matrix_exponential():
    traj = rf.train(
        RULE,
        THETA0,
        rf.GradientFlow(3.0, stepsize_controller=TIGHT),
        save=rf.Save(num=7, params=True),
    )
    for t, u, v in zip(traj.ts, traj.params["u"], traj.params["v"], strict=True):
        exact = scipy.linalg.expm(float(t) * A) @ _flat(THETA0)
        np.testing.assert_allclose(_flat({"u": u, "v": v}), exact, rtol=1e-9, atol=1e-11)
    # No loss: the default metric is ‖θ‖, here at every save.
    norms = [np.linalg.norm(scipy.linalg.expm(float(t) * A) @ _flat(THETA0)) for t in traj.ts]
    np.testing.assert_allclose(traj.metrics["norm"], norms, rtol=1e-9)


def test_descent_on_a_linear_field_is_the_matrix_power():
    lr, n = 0.05, 60
    traj = rf.train(RULE, THETA0, rf.GradientDescent(lr, n), save=rf.Save(every=20, params=True))
    for k, (u, v) in enumerate(zip(traj.params["u"], traj.params["v"], strict=True)):
        exact = np.linalg.matrix_power(np.eye(3) + lr * A, 20 * k) @ _flat(THETA0)
        np.testing.assert_allclose(_flat({"u": u, "v": v}), exact, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(traj.ts, lr * np.arange(0, n + 1, 20), rtol=1e-15)


def test_modified_flow_of_a_linear_field_is_its_closed_form():
    # DF·F = A²θ, so the modified field is (A − ηA²/2)θ.
    lr, t1 = 0.1, 2.0
    method = rf.ModifiedFlow(lr, t1, stepsize_controller=TIGHT)
    traj = rf.train(RULE, THETA0, method)
    exact = scipy.linalg.expm(t1 * (A - 0.5 * lr * A @ A)) @ _flat(THETA0)
    np.testing.assert_allclose(_flat(traj.final), exact, rtol=1e-9, atol=1e-11)


def test_descent_is_first_order_from_the_flow_and_second_order_from_the_modified_flow():
    t1, lrs = 2.0, np.array([0.04, 0.02, 0.01])
    flow = _flat(rf.train(RULE, THETA0, rf.GradientFlow(t1, stepsize_controller=TIGHT)).final)
    to_flow, to_modified = [], []
    for lr in lrs:
        gd = _flat(rf.train(RULE, THETA0, rf.GradientDescent(float(lr), int(round(t1 / lr)))).final)
        mod = rf.train(RULE, THETA0, rf.ModifiedFlow(float(lr), t1, stepsize_controller=TIGHT))
        to_flow.append(np.linalg.norm(gd - flow))
        to_modified.append(np.linalg.norm(gd - _flat(mod.final)))
    slope_flow = np.polyfit(np.log(lrs), np.log(to_flow), 1)[0]
    slope_modified = np.polyfit(np.log(lrs), np.log(to_modified), 1)[0]
    # Euler's global error is C₁η + O(η²); the modified flow removes C₁η, leaving C₂η²
    # (+ O(η³)): over a factor 4 in η the fitted slopes are within 0.1 of 1 and 2.
    assert slope_flow == pytest.approx(1.0, abs=0.1)
    assert slope_modified == pytest.approx(2.0, abs=0.1)
    assert to_modified[-1] < 0.05 * to_flow[-1]


def _loss(p):
    return jnp.sum(jnp.cos(p["u"]) * p["u"] ** 2) + p["v"] ** 4 + p["u"][0] * p["v"]


def _minus_gradient(p):
    return jax.tree.map(jnp.negative, jax.grad(_loss)(p))


@pytest.mark.parametrize(
    "method",
    [
        rf.GradientDescent(0.02, 200),
        rf.GradientDescent(0.02, 200, optax.adam(0.02)),
        rf.GradientFlow(4.0),
        rf.ModifiedFlow(0.1, 4.0),
    ],
    ids=["gd", "adam", "flow", "modified"],
)
def test_minus_the_gradient_as_a_rule_is_the_loss(method):
    save = rf.Save(num=5, params=True)
    as_loss = rf.train(_loss, THETA0, method, save=save)
    as_rule = rf.train(rf.Rule(_minus_gradient, loss=_loss), THETA0, method, save=save)
    # The same operations (negation is exact): bitwise, or the flows within their
    # tolerance's rounding where XLA fuses the two programs differently.
    for a, b in zip(jax.tree.leaves(as_loss), jax.tree.leaves(as_rule), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    if isinstance(method, rf.GradientDescent):
        assert eqx.tree_equal(as_loss, as_rule)
    assert as_rule.metrics["loss"][-1] < as_rule.metrics["loss"][0]


def test_minus_the_gradient_of_an_rnn_loss_as_a_rule_is_the_loss_to_rounding():
    # The diagonal student's loss offers fused steps (`descend`), which a rule does not
    # take: the rule goes through autodiff, bitwise as the loss does with kernel="generic",
    # and to rounding of the fused path.
    model = rf.DiagonalRNN(6)
    loss = rf.ImpulseLoss(rf.modes_teacher([0.9, -0.5], [1.0, 0.5]), 5).bind(model)
    params = model.init(key=jax.random.key(0), scale=0.3)

    def field(p):
        return jax.tree.map(jnp.negative, jax.grad(loss)(p))

    rule = rf.Rule(field, loss=loss)
    as_rule = rf.train(rule, params, rf.GradientDescent(0.05, 300))
    generic = rf.train(loss, params, rf.GradientDescent(0.05, 300, kernel="generic"))
    fused = rf.train(loss, params, rf.GradientDescent(0.05, 300))
    assert eqx.tree_equal(as_rule.final, generic.final)
    for a, b in zip(jax.tree.leaves(as_rule.final), jax.tree.leaves(fused.final), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    assert set(as_rule.metrics) == set(fused.metrics)  # the loss's default metrics


def test_an_optax_transformation_steps_against_minus_the_field():
    opt, steps = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(0.05)), 50
    traj = rf.train(RULE, THETA0, rf.GradientDescent(0.05, steps, opt))
    p, state = THETA0, opt.init(THETA0)
    for _ in range(steps):
        grad = jax.tree.map(jnp.negative, linear_field(p))
        updates, state = opt.update(grad, state, p)
        p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(_flat(traj.final), _flat(p), rtol=1e-12, atol=1e-14)


def test_descent_is_stable_below_the_step_that_max_abs_one_plus_eta_lambda_allows():
    # The rotation's eigenvalues λ = a ± ib (a < 0) give |1 + ηλ| = 1 at η = 2|a|/|λ|²
    # (about 0.41 here; the third mode allows η up to about 4). Descent shrinks θ below
    # that step and grows it above, and the stability metric says which.
    lam = np.linalg.eigvals(A)
    critical = np.min(-2 * lam.real / np.abs(lam) ** 2)
    start = np.linalg.norm(_flat(THETA0))
    for lr in (0.9 * critical, 1.1 * critical):
        traj = rf.train(RULE, THETA0, rf.GradientDescent(lr, 200))
        radius = float(rf.stability_metric(RULE, lr, method="dense")(0.0, THETA0))
        assert radius == pytest.approx(np.max(np.abs(1 + lr * lam)), rel=1e-12)
        grown = float(traj.metrics["norm"][-1]) / start
        assert (radius < 1) == (lr < critical) == (grown < 1e-2)
        assert grown < 1e-2 or grown > 1e2


def test_train_seeds_runs_a_rule_as_separate_runs_would():
    seeds = {
        "u": jnp.asarray([[1.0, 0.0], [0.0, 1.0], [0.3, -0.2]]),
        "v": jnp.asarray([0.5, 0.0, 1.0]),
    }
    method = rf.GradientDescent(0.05, 40)
    batched = rf.train_seeds(RULE, seeds, method, save=rf.Save(num=3))
    for i in range(3):
        one = rf.train(RULE, jax.tree.map(lambda x: x[i], seeds), method, save=rf.Save(num=3))
        np.testing.assert_allclose(batched.final["u"][i], one.final["u"], rtol=1e-14)
        np.testing.assert_allclose(batched.metrics["norm"][i], one.metrics["norm"], rtol=1e-14)


def test_a_rule_with_a_loss_stops_when_it_converges():
    # F = −∇L of L = ½‖θ‖² as a rule with its loss: Stop.loss_below applies.
    def half_square(p):
        return 0.5 * (jnp.sum(p["u"] ** 2) + p["v"] ** 2)

    rule = rf.Rule(lambda p: jax.tree.map(jnp.negative, p), loss=half_square)
    traj = rf.train(rule, THETA0, rf.GradientFlow(50.0), stop=rf.Stop(loss_below=1e-6))
    assert traj.result == rf.Result.converged
    # L(t) = L(0) e^{-2t} falls below 1e-6 at t = ln(L0 / 1e-6) / 2; the run stops at the
    # end of the solver step in which it did, in the state of that time.
    l0, t_stop = 0.5 * (1.0 + 0.25), float(traj.t_stop)
    assert np.log(l0 / 1e-6) / 2 <= t_stop < 10.0
    assert float(half_square(traj.final)) == pytest.approx(l0 * np.exp(-2 * t_stop), rel=1e-5)


def test_jax_grad_passes_through_a_rule():
    # d θ(t)/d θ₀ of a linear flow is expm(tA): its first column by reverse mode.
    method = rf.GradientFlow(1.0, stepsize_controller=TIGHT)

    def first(u0):
        return rf.train(RULE, {"u": u0, "v": jnp.asarray(0.5)}, method).final["u"][0]

    grad = jax.grad(first)(jnp.asarray([1.0, 0.0]))
    np.testing.assert_allclose(grad, scipy.linalg.expm(A)[0, :2], rtol=1e-8)


@pytest.mark.parametrize(
    "method",
    [rf.GradientDescent(0.01, 100), rf.GradientFlow(1.0), rf.ModifiedFlow(0.01, 1.0)],
    ids=["gd", "flow", "modified"],
)
def test_a_complex_rule_is_the_rule_on_its_real_split(method):
    """dz/dt = Az for complex z and A: the run equals the run of the same field written on
    (Re z, Im z), and the flow is expm(tA) z0 (a complex direction is a velocity, not a
    gradient: no conjugate)."""
    a = jnp.array([[-1.0 + 0.5j, 2.0], [-2.0, -1.0 - 0.2j]])
    z0 = jnp.array([1.0 + 0.3j, -0.5j])

    def split_field(p):
        f = a @ (p["re"] + 1j * p["im"])
        return {"re": jnp.real(f), "im": jnp.imag(f)}

    complex_run = rf.train(rf.Rule(lambda z: a @ z), z0, method)
    split_run = rf.train(rf.Rule(split_field), {"re": z0.real, "im": z0.imag}, method)
    np.testing.assert_array_equal(
        complex_run.final, split_run.final["re"] + 1j * split_run.final["im"]
    )
    if isinstance(method, rf.ModifiedFlow):  # dz/dt = (A - (η/2) A²) z
        exact = scipy.linalg.expm(a - 0.005 * a @ a) @ z0
        np.testing.assert_allclose(complex_run.final, exact, atol=1e-6)
    elif isinstance(method, rf.GradientFlow):
        np.testing.assert_allclose(complex_run.final, scipy.linalg.expm(a) @ z0, atol=1e-6)
