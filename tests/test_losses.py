"""Teachers, losses and the extrapolation error, against closed forms computed independently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf

K = 5  # training length used throughout (one compiled shape per teacher)


def _markov(a, b, c, length):
    """h_i = C A^i B with explicit matrix powers, in numpy: shape (length, out_dim, in_dim)."""
    a = np.diag(a) if np.ndim(a) == 1 else np.asarray(a)
    return np.stack([c @ np.linalg.matrix_power(a, i) @ b for i in range(length)])


def _student_markov(model, params, length):
    return _markov(
        np.asarray(model.transition(params)), np.asarray(params.b), np.asarray(params.c), length
    )


def _modes(lam, p, length):
    """ĥ_i = Σ_j p_j λ_j^i, shape (length,)."""
    i = np.arange(length)[:, None]
    return (np.asarray(p)[None, :] * np.asarray(lam, float)[None, :] ** i).sum(axis=1)


def _stable_student(model, seed=0, radius=0.8):
    """Gaussian parameters (numpy: drawing with JAX compiles a sampler per shape), with the
    transition rescaled to spectral radius `radius`; not fitted to any teacher."""
    rng = np.random.default_rng(seed)
    a = 0.4 * rng.normal(size=model.a_shape)
    b = 0.4 * rng.normal(size=(model.state_dim, model.in_dim))
    c = 0.4 * rng.normal(size=(model.out_dim, model.state_dim))
    transition = np.asarray(model.transition(rf.RNNParams(jnp.asarray(a), None, None)))
    dense = np.diag(transition) if transition.ndim == 1 else transition
    a = a * (radius / np.max(np.abs(np.linalg.eigvals(dense))))
    return rf.RNNParams(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c))


SISO = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
MIMO = rf.random_teacher(jax.random.key(1), 2, in_dim=2, out_dim=3)


def _setups():
    """(teacher, student model, student params) for one and several inputs/outputs."""
    siso_model = rf.DenseRNN(4)
    mimo_model = rf.DenseRNN(4, in_dim=2, out_dim=3)
    return [
        (SISO, siso_model, _stable_student(siso_model, 0)),
        (MIMO, mimo_model, _stable_student(mimo_model, 1)),
    ]


# -- teachers --------------------------------------------------------------------------------


def test_modes_teacher_impulse_response():
    # Eigenvalue 1 (constant memory), a negative eigenvalue (sign alternation), and a negative
    # weight (not balanced, still realized exactly).
    lam, p = [1.0, -0.7, 0.5], [0.3, 1.0, -0.4]
    teacher = rf.modes_teacher(lam, p)
    assert teacher.state_dim == 3
    h = np.asarray(teacher.impulse_response(60))
    assert h.shape == (60, 1, 1)
    # float64: each ĥ_i is a sum of three rounded powers (up to 60 multiplications each).
    np.testing.assert_allclose(h[:, 0, 0], _modes(lam, p, 60), rtol=0, atol=1e-13)
    # The modes separately: constant memory never decays, a negative eigenvalue alternates.
    const = np.asarray(rf.modes_teacher([1.0], [0.5]).impulse_response(60))[:, 0, 0]
    np.testing.assert_allclose(const, 0.5, rtol=1e-15)  # sqrt(0.5)^2 rounds to 1 ulp
    alt = np.asarray(rf.modes_teacher([-0.8], [2.0]).impulse_response(20))[:, 0, 0]
    assert np.all(np.sign(alt) == (-1.0) ** np.arange(20))
    neg = np.asarray(rf.modes_teacher([0.9], [-2.0]).impulse_response(20))[:, 0, 0]
    np.testing.assert_allclose(neg, -2.0 * 0.9 ** np.arange(20), rtol=1e-14)


def test_modes_teacher_is_balanced_for_positive_weights():
    teacher = rf.modes_teacher([0.9, 0.2], [1.0, 0.5])
    params = teacher.params
    assert np.array_equal(np.asarray(params.b).T, np.asarray(params.c))
    assert float(jnp.max(jnp.abs(teacher.model.imbalance(params)))) == 0.0


@pytest.mark.parametrize("radius", [0.5, 0.9, 1.0])
def test_random_teacher_spectral_radius(key, radius):
    teacher = rf.random_teacher(key, 3, in_dim=2, out_dim=3, spectral_radius=radius)
    assert isinstance(teacher.model, rf.DenseRNN)
    assert teacher.params.a.shape == (3, 3)
    assert teacher.params.b.shape == (3, 2) and teacher.params.c.shape == (3, 3)
    eig = np.linalg.eigvals(np.asarray(teacher.params.a))
    # float64: rescaling by radius/ρ is exact up to rounding of the eigenvalue computation.
    assert abs(np.max(np.abs(eig)) - radius) < 1e-12
    again = rf.random_teacher(key, 3, in_dim=2, out_dim=3, spectral_radius=radius)
    assert np.array_equal(np.asarray(again.params.a), np.asarray(teacher.params.a))
    other = rf.random_teacher(jax.random.key(1), 3, in_dim=2, out_dim=3, spectral_radius=radius)
    assert not np.allclose(np.asarray(other.params.a), np.asarray(teacher.params.a))


# -- impulse loss ----------------------------------------------------------------------------


def test_impulse_loss_closed_form():
    for teacher, model, params in _setups():
        h = _student_markov(model, params, K)
        target = _markov(
            np.asarray(teacher.model.transition(teacher.params)),
            np.asarray(teacher.params.b),
            np.asarray(teacher.params.c),
            K,
        )
        expected = np.sum((h - target) ** 2)
        assert expected > 1e-2  # a student that does not fit: the comparison is not 0 == 0
        got = float(rf.ImpulseLoss(teacher, train_len=K)(model, params))
        # float64 rounding of a sum of K O(1) squares.
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # The SISO target is the modes formula.
    np.testing.assert_allclose(
        rf.ImpulseLoss(SISO, K).target[:, 0, 0], _modes([0.9, -0.5], [1.0, 0.5], K), rtol=1e-14
    )


def _one_hot_inputs(train_len, in_dim):
    """The k·in_dim impulses, one per (time, input), scaled by sqrt(N) so that the empirical
    input covariance (1/N) Σ_n x_t x_tᵀ is the identity at every step."""
    n = train_len * in_dim
    xs = np.zeros((n, train_len, in_dim))
    for t in range(train_len):
        for j in range(in_dim):
            xs[t * in_dim + j, t, j] = np.sqrt(n)
    return jnp.asarray(xs)


def test_sequence_loss_on_impulses_equals_impulse_loss():
    # Last-step supervision: the impulse at time t is read at lag k-1-t, so the N impulse
    # sequences together give each lag once, with the 1/N cancelled by the sqrt(N)² scaling.
    for teacher, model, params in _setups():
        xs = _one_hot_inputs(K, model.in_dim)
        impulse = float(rf.ImpulseLoss(teacher, K)(model, params))
        last = float(rf.SequenceLoss(teacher, xs, supervise="last")(model, params))
        # float64: both are sums of the same K·in_dim squares in different orders.
        np.testing.assert_allclose(last, impulse, rtol=1e-12)

        # All steps supervised: lag i is seen at the k - i steps t' ≥ t with t' - t = i.
        h = _student_markov(model, params, K)
        target = np.asarray(teacher.impulse_response(K))
        per_lag = np.sum((h - target) ** 2, axis=(1, 2))
        weighted = np.sum((K - np.arange(K)) * per_lag)
        assert weighted > impulse * 1.5  # the reweighting is visible
        got = float(rf.SequenceLoss(teacher, xs, supervise="all")(model, params))
        np.testing.assert_allclose(got, weighted, rtol=1e-12)


@pytest.mark.parametrize("supervise", ["last", "all"])
def test_gaussian_sequence_loss_matches_impulse_loss_in_expectation(key, supervise):
    model = rf.DiagonalRNN(4)
    params = _stable_student(model)
    n = 20000
    loss = rf.SequenceLoss.sample(SISO, K, n, key=key, supervise=supervise)
    assert loss.xs.shape == (n, K, 1) and loss.train_len == K

    # Per-sequence losses, computed outside the loss: their mean is the loss value.
    preds = jax.jit(jax.vmap(model, in_axes=(None, 0)))(params, loss.xs)
    sq = np.asarray((preds - loss.ys) ** 2)[..., 0]  # (n, K)
    per_seq = sq[:, -1] if supervise == "last" else sq.sum(axis=1)
    np.testing.assert_allclose(float(loss(model, params)), per_seq.mean(), rtol=1e-12)

    # Expectation over N(0, I) inputs: the impulse loss, with lag i weighted by k - i when all
    # steps are supervised (each step t sees lags 0..t).
    err = _student_markov(model, params, K)[:, 0, 0] - _modes([0.9, -0.5], [1.0, 0.5], K)
    weights = np.ones(K) if supervise == "last" else K - np.arange(K)
    expected = np.sum(weights * err**2)
    if supervise == "last":
        np.testing.assert_allclose(expected, float(rf.ImpulseLoss(SISO, K)(model, params)), 1e-12)
    # The sample mean of i.i.d. per-sequence losses has standard error std/sqrt(n)
    # (last-step: a scaled χ²₁, std = √2·L, so SE ≈ 1% of L). 5 standard errors: a chance
    # failure has probability < 1e-6 (near-Gaussian mean at n = 20000), and any error in the
    # expectation above ~10% is caught (e.g. "all" without the k - i weights is off by ~2x).
    se = per_seq.std(ddof=1) / np.sqrt(n)
    assert se < 0.02 * expected  # the resolution claimed above
    assert abs(per_seq.mean() - expected) < 5 * se


# -- the overparameterized shift register (fact 4 on the science page) -----------------------


@pytest.mark.parametrize("d, scan", [(K, "sequential"), (2 * K, "associative")])
def test_shift_register_fits_but_does_not_extrapolate(d, scan):
    teacher = rf.modes_teacher([0.9], [1.0])
    target = np.asarray(teacher.impulse_response(K))[:, 0, 0]
    a = np.zeros((d, d))
    a[np.arange(1, d), np.arange(d - 1)] = 1.0  # down-shift: A e_i = e_{i+1}
    b = np.zeros((d, 1))
    b[0, 0] = 1.0
    c = np.zeros((1, d))
    c[0, :K] = target  # the rest is free; zeros here
    model = rf.DenseRNN(d, scan=scan)
    params = rf.RNNParams(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c))
    # A^i B = e_{i+1} is computed exactly (products of 0s and 1s), so h_i = ĥ_i exactly:
    # zero training loss to the last bit.
    assert float(rf.ImpulseLoss(teacher, K)(model, params)) == 0.0
    # But h_i = 0 for i ≥ k: the whole response beyond training is missed, relative error 1
    # (float64 rounding of one division).
    rel = float(
        rf.extrapolation_error(model, params, teacher, train_len=K, horizon=10 * K, relative=True)
    )
    assert abs(rel - 1.0) < 1e-12


# -- extrapolation error ---------------------------------------------------------------------


def test_extrapolation_error_absolute_and_relative():
    q = 10 * K
    for teacher, model, params in _setups():
        h = _student_markov(model, params, q)
        target = np.asarray(teacher.impulse_response(q))
        absolute = np.sum((h[K:] - target[K:]) ** 2)
        norm = np.sum(target[K:] ** 2)
        got_abs = float(rf.extrapolation_error(model, params, teacher, train_len=K, horizon=q))
        got_rel = float(
            rf.extrapolation_error(model, params, teacher, train_len=K, horizon=q, relative=True)
        )
        # float64 rounding of sums of q O(1) squares.
        np.testing.assert_allclose(got_abs, absolute, rtol=1e-12)
        np.testing.assert_allclose(got_rel, absolute / norm, rtol=1e-12)
        np.testing.assert_allclose(got_rel * norm, got_abs, rtol=1e-12)
        # Equivalently: the impulse loss at length q minus the one at the training length.
        loss_q = float(rf.ImpulseLoss(teacher, q)(model, params))
        loss_k = float(rf.ImpulseLoss(teacher, K)(model, params))
        np.testing.assert_allclose(got_abs, loss_q - loss_k, rtol=1e-10)  # mild cancellation


def test_student_equal_to_teacher_extrapolates():
    teacher = rf.modes_teacher([1.0, 0.9, -0.5], [0.2, 1.0, -0.3])
    q = 10 * K
    # The teacher itself: exactly zero.
    same = rf.extrapolation_error(teacher.model, teacher.params, teacher, train_len=K, horizon=q)
    assert float(same) == 0.0
    # The same system as a dense student in other coordinates (A → GAG⁻¹, B → GB, C → CG⁻¹):
    # same Markov parameters (fact 1 on the science page), so zero error up to float64
    # rounding of the change of basis, amplified at most linearly in q by the eigenvalue 1
    # (~1e-14 relative).
    g = np.random.default_rng(0).normal(size=(3, 3)) + 3 * np.eye(3)  # well conditioned
    g_inv = np.linalg.inv(g)
    a = g @ np.diag([1.0, 0.9, -0.5]) @ g_inv
    params = rf.RNNParams(
        jnp.asarray(a),
        jnp.asarray(g @ np.asarray(teacher.params.b)),
        jnp.asarray(np.asarray(teacher.params.c) @ g_inv),
    )
    model = rf.DenseRNN(3)
    rel = rf.extrapolation_error(model, params, teacher, train_len=K, horizon=q, relative=True)
    assert float(rel) < 1e-24  # squared errors of ~1e-13 relative
    assert float(rf.ImpulseLoss(teacher, K)(model, params)) < 1e-24
    # Control: a slightly wrong eigenvalue is seen (so the bound above is not vacuous).
    wrong = rf.RNNParams(params.a * (1 - 1e-6), params.b, params.c)
    rel_wrong = rf.extrapolation_error(model, wrong, teacher, train_len=K, horizon=q, relative=True)
    assert float(rel_wrong) > 1e-14
