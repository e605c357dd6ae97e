"""The built-in rules and the field spectrum, against ground truth: Oja's fixed points (the
covariance's top eigenvector), feedback alignment equal to backpropagation where B = W₂ᵀ,
a preconditioned flow on a quadratic (expm(−tPA)), and DF's eigenvalues against numpy's
`eig` of the Jacobian from `jax.jacfwd`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import rnnflow as rf

TIGHT = diffrax.PIDController(rtol=1e-10, atol=1e-12)


# -- Oja's rule -------------------------------------------------------------------------------


def _data(key, n=200, scales=(3.0, 2.0, 1.0, 0.5)):
    """Gaussian inputs with distinct variances along a random rotation."""
    k1, k2 = jax.random.split(key)
    q = jnp.linalg.qr(jax.random.normal(k1, (len(scales), len(scales))))[0]
    return (jax.random.normal(k2, (n, len(scales))) * jnp.asarray(scales)[None, :]) @ q.T


def test_oja_converges_to_plus_or_minus_the_top_eigenvector(key):
    x = _data(key)
    rule = rf.Oja(x)
    c = np.asarray(x.T @ x / x.shape[0])
    values, vectors = np.linalg.eigh(c)
    v1 = vectors[:, -1]
    w0 = 0.1 * jax.random.normal(jax.random.fold_in(key, 3), (8, 4))
    traj = rf.train_seeds(rule, w0, rf.GradientFlow(20.0), save=rf.Save(num=3))
    final = np.asarray(traj.final)
    # ±v₁ to the solver's tolerance: the slowest mode decays as e^{-(λ₁-λ₂)t}, λ₁ - λ₂ ≈ 5.
    np.testing.assert_allclose(np.abs(final @ v1), 1.0, atol=1e-6)
    signs = np.sign(final @ v1)
    np.testing.assert_allclose(final, signs[:, None] * v1[None, :], atol=1e-6)
    assert set(signs) == {-1.0, 1.0}  # both signs are reached, from the side each starts on
    np.testing.assert_allclose(traj.metrics["rayleigh"][:, -1], values[-1], rtol=1e-9)
    np.testing.assert_allclose(traj.metrics["alignment"][:, -1], 1.0, atol=1e-9)


def test_oja_jacobian_at_the_top_eigenvector_has_the_known_eigenvalues(key):
    # At w = v₁: DF = C − λ₁I − 2λ₁v₁v₁ᵀ, eigenvalues λᵢ − λ₁ (i > 1) and −2λ₁.
    x = _data(key)
    c = np.asarray(x.T @ x / x.shape[0])
    lam, vectors = np.linalg.eigh(c)
    rule = rf.Oja(x)
    got = np.sort(np.asarray(rf.field_eigenvalues(rule, jnp.asarray(vectors[:, -1]), k=4)).real)
    want = np.sort(np.append(lam[:-1] - lam[-1], -2 * lam[-1]))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# -- feedback alignment -----------------------------------------------------------------------


def _two_layer(key, activation, reg=0.1, width=16):
    kx, ky, kp, kb = jax.random.split(key, 4)
    x, y = jax.random.normal(kx, (4, 6)), jax.random.normal(ky, (4, 2))
    loss = rf.TwoLayerLoss(x, y, reg=reg, activation=activation)
    return loss, loss.init(key=kp, width=width), jax.random.normal(kb, (width, 2))


@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_feedback_alignment_is_backpropagation_where_the_feedback_is_w2_transposed(key, activation):
    loss, params, feedback = _two_layer(key, activation)
    minus_grad = jax.tree.map(jnp.negative, jax.grad(loss)(params))
    # At W₂ = Bᵀ the two fields agree; elsewhere only on the output layer.
    same = rf.FeedbackAlignment(loss, params["w2"].T).direction(params)
    other = rf.FeedbackAlignment(loss, feedback).direction(params)
    for name in ("w1", "w2"):
        np.testing.assert_allclose(same[name], minus_grad[name], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(other["w2"], minus_grad["w2"], rtol=1e-12, atol=1e-14)
    assert not np.allclose(other["w1"], minus_grad["w1"])


def test_feedback_alignment_hidden_update_uses_the_feedback_matrix(key):
    # Written out for a linear network: Ẇ₁ = −B Eᵀ X / √p with E = (Ŷ − Y)/n.
    loss, params, feedback = _two_layer(key, "linear")
    p = params["w1"].shape[0]
    out = loss.x @ params["w1"].T @ params["w2"].T / np.sqrt(p)
    e = (out - loss.y) / loss.x.shape[0]
    want = -feedback @ e.T @ loss.x / np.sqrt(p)
    got = rf.FeedbackAlignment(loss, feedback).direction(params)["w1"]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_feedback_alignment_metrics(key):
    loss, params, feedback = _two_layer(key, "tanh")
    rule = rf.FeedbackAlignment(loss, feedback)
    metrics = {name: float(f(0.0, params)) for name, f in rule.default_metrics().items()}
    w2t, b = np.asarray(params["w2"]).T.ravel(), np.asarray(feedback).ravel()
    assert metrics["alignment"] == pytest.approx(
        w2t @ b / np.linalg.norm(w2t) / np.linalg.norm(b), rel=1e-12
    )
    assert metrics["loss"] == pytest.approx(
        metrics["error"] + 0.05 * float(np.sum(np.asarray(params["w2"]) ** 2)), rel=1e-12
    )
    # The hidden-unit signals of BP and FA coincide where B = W₂ᵀ.
    aligned = rf.FeedbackAlignment(loss, params["w2"].T)
    assert float(aligned.update_alignment(params)) == pytest.approx(1.0, rel=1e-12)


def test_feedback_alignment_trains_and_aligns_with_regularization(key):
    # Overparameterized (4 examples, 6 inputs, 16 hidden units): the error falls by orders
    # of magnitude under both rules; weight decay drives W₂ᵀ towards B.
    loss, params, feedback = _two_layer(key, "linear", reg=0.0)
    kept = {}
    for reg in (0.0, 0.1):
        loss = rf.TwoLayerLoss(loss.x, loss.y, reg=reg)
        traj = rf.train(rf.FeedbackAlignment(loss, feedback), params, rf.GradientDescent(0.1, 3000))
        kept[reg] = traj.metrics
    assert kept[0.0]["error"][-1] < 1e-6 * kept[0.0]["error"][0]
    assert kept[0.1]["alignment"][-1] > 0.9 > 0.5 > kept[0.0]["alignment"][-1]


# -- preconditioned gradient ------------------------------------------------------------------


def test_a_constant_preconditioner_flows_as_expm_of_minus_t_p_a():
    a = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    p = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.0], [0.0, 0.0, 2.0]])
    theta0 = jnp.asarray([1.0, -1.0, 0.5])
    rule = rf.Preconditioned(
        lambda t: 0.5 * t @ jnp.asarray(a) @ t, lambda t, g: jnp.asarray(p) @ g
    )
    traj = rf.train(rule, theta0, rf.GradientFlow(2.0, stepsize_controller=TIGHT))
    exact = scipy.linalg.expm(-2.0 * p @ a) @ np.asarray(theta0)
    np.testing.assert_allclose(traj.final, exact, rtol=1e-8, atol=1e-10)
    assert set(traj.metrics) == {"loss"}
    assert np.all(np.diff(np.asarray(traj.metrics["loss"])) < 0)  # L̇ = −∇Lᵀ P ∇L < 0


def test_a_state_dependent_preconditioner_steps_as_written():
    def loss(t):
        return jnp.sum(jnp.sin(t) + 0.5 * t**2)

    def precondition(t, g):
        return g / (1.0 + t**2)

    theta0, lr = jnp.asarray([0.3, -1.2, 2.0]), 0.1
    traj = rf.train(rf.Preconditioned(loss, precondition), theta0, rf.GradientDescent(lr, 20))
    t = np.asarray(theta0)
    for _ in range(20):
        t = t - lr * (np.cos(t) + t) / (1 + t**2)
    np.testing.assert_allclose(traj.final, t, rtol=1e-13)


# -- the field spectrum -----------------------------------------------------------------------


def _nonlinear_field(key, n):
    a = jax.random.normal(key, (n, n)) / np.sqrt(n) - 0.5 * jnp.eye(n)

    def field(p):
        return {
            "x": jnp.tanh(a @ p["x"]) + 0.1 * p["x"] ** 2 - p["y"] * p["x"],
            "y": -(p["y"] ** 3),
        }

    return rf.Rule(field)


def _sorted(values):
    values = np.asarray(values)
    return values[np.lexsort((values.imag, -np.abs(values)))]


@pytest.mark.parametrize("method", ["dense", "arnoldi"])
def test_field_eigenvalues_are_numpys_eig_of_the_jacobian(key, method):
    n = 30
    rule = _nonlinear_field(key, n)
    params = {"x": 0.3 * jax.random.normal(jax.random.fold_in(key, 1), (n,)), "y": jnp.asarray(0.7)}
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    jac = jax.jacfwd(lambda f: jax.flatten_util.ravel_pytree(rule.direction(unravel(f)))[0])(flat)
    want = _sorted(np.linalg.eigvals(np.asarray(jac)))
    assert np.abs(want.imag).max() > 0.1  # complex eigenvalues: DF is not symmetric
    # Arnoldi with as many steps as parameters spans the whole space: exact to rounding.
    got = rf.field_eigenvalues(rule, params, k=n + 1, method=method, iters=n + 1)
    np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want), rtol=1e-9, atol=1e-10)
    mu = rf.step_eigenvalues(rule, params, 0.3, k=4, method=method, iters=n + 1)
    want_mu = _sorted(1 + 0.3 * np.linalg.eigvals(np.asarray(jac)))[:4]
    np.testing.assert_allclose(np.abs(mu), np.abs(want_mu), rtol=1e-9)


def test_arnoldi_with_few_steps_finds_the_largest_eigenvalues(key):
    # An operator with a few large, well-separated eigenvalues (a rotation among them)
    # and a bulk of small ones: 20 Arnoldi steps find the large ones.
    n = 200
    q = np.linalg.qr(np.asarray(jax.random.normal(key, (n, n))))[0]
    block = np.diag(np.concatenate([[-10.0, -6.0], -0.1 * np.linspace(0.1, 1.0, n - 2)]))
    block[2:4, 2:4] = [[-3.0, 4.0], [-4.0, -3.0]]
    a = q @ block @ q.T
    rule = rf.Rule(lambda t: jnp.asarray(a) @ t)
    got = rf.field_eigenvalues(rule, jnp.ones(n), k=4, method="arnoldi", iters=20)
    want = _sorted(np.linalg.eigvals(a))[:4]  # -10, -6, -3 ± 4i
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_the_spectrum_of_a_loss_is_minus_its_hessians(key):
    def loss(p):
        return jnp.sum(jnp.cos(p) * p**2) + jnp.sum(p) ** 2

    p = 0.5 * jax.random.normal(key, (6,))
    want = -np.sort(np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(p))))[::-1]
    got = rf.field_eigenvalues(loss, p, k=6)
    np.testing.assert_allclose(np.sort(np.asarray(got).real), np.sort(want), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(got).imag, 0.0, atol=1e-10)


def test_the_eigenvalues_save_as_a_metric_over_seeds(key):
    n = 10
    rule = _nonlinear_field(key, n)
    seeds = {"x": 0.3 * jax.random.normal(key, (3, n)), "y": jnp.asarray([0.5, 0.7, 0.9])}
    save = rf.Save(num=2, metrics={"df": rf.field_eigenvalue_metric(rule, k=2)})
    one_device = jax.devices()[:1]  # eig is LAPACK: see train_seeds on CPU devices
    traj = rf.train_seeds(rule, seeds, rf.GradientDescent(0.1, 5), save=save, devices=one_device)
    assert traj.metrics["df"].shape == (3, 2, 2) and jnp.iscomplexobj(traj.metrics["df"])
    first = jax.tree.map(lambda x: x[1], seeds)
    np.testing.assert_allclose(traj.metrics["df"][1, 0], rf.field_eigenvalues(rule, first, k=2))
