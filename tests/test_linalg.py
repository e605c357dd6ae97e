"""Linear algebra without LAPACK (Jacobi rotations, Householder reflections) against LAPACK
through NumPy, and the point of it: blocks whose metrics use it run on every CPU device."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf
from rnnflow._engine.linalg import _circle

RNG = np.random.default_rng(0)
SIZES = [1, 2, 3, 7, 21]


def _symmetric(n):
    a = RNG.normal(size=(n, n))
    return (a + a.T) / 2


@pytest.mark.parametrize("m", [2, 4, 6, 10, 22])
def test_a_sweep_meets_every_pair_once_and_brings_every_index_home(m):
    order, met = np.arange(m), []
    for _ in range(m - 1):
        h = m // 2
        met += [tuple(sorted(p)) for p in zip(order[:h], order[h:], strict=True)]
        order = np.asarray(_circle(jnp.asarray(order), 0))
    assert sorted(met) == list(itertools.combinations(range(m), 2))
    np.testing.assert_array_equal(order, np.arange(m))


@pytest.mark.parametrize("n", SIZES)
def test_symmetric_eigenvalues_are_lapacks(n):
    for a in (_symmetric(n), np.diag(RNG.normal(size=n)), np.zeros((n, n))):
        got = np.asarray(rf.symmetric_eigenvalues(jnp.asarray(a)))
        want = np.linalg.eigvalsh(a)
        # float64: backward stable, so errors of rounding × the matrix's norm.
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * max(1, np.abs(want).max()))


def test_repeated_and_zero_eigenvalues():
    q = np.linalg.qr(RNG.normal(size=(9, 9)))[0]
    lam = np.array([-2.0, -2.0, 0.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0])
    got = np.asarray(rf.symmetric_eigenvalues(jnp.asarray(q @ np.diag(lam) @ q.T)))
    np.testing.assert_allclose(got, lam, atol=1e-13)


def test_a_nonsymmetric_input_is_symmetrized_as_eigvalsh_does():
    a = RNG.normal(size=(6, 6))
    got = rf.symmetric_eigenvalues(jnp.asarray(a))
    np.testing.assert_allclose(got, jnp.linalg.eigvalsh(jnp.asarray(a)), atol=1e-13)


@pytest.mark.parametrize(
    ("m", "n"), [(1, 1), (1, 5), (5, 1), (2, 2), (7, 7), (20, 20), (9, 4), (4, 9), (30, 11)]
)
def test_singular_values_are_lapacks(m, n):
    a = RNG.normal(size=(m, n))
    got = np.asarray(rf.singular_values(jnp.asarray(a)))
    want = np.linalg.svd(a, compute_uv=False)
    assert got.shape == (min(m, n),)
    # Backward stable: errors of rounding × the largest (LAPACK's own are of that size).
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * want[0])


def test_small_singular_values_keep_their_relative_accuracy():
    # Columns graded over 12 decades: one-sided Jacobi gets each singular value to a few
    # roundings of itself (not of the largest), as a Hankel matrix's tail needs.
    a = RNG.normal(size=(12, 12)) * np.logspace(0, -12, 12)
    got = np.asarray(rf.singular_values(jnp.asarray(a)))
    want = np.linalg.svd(a, compute_uv=False)
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_rank_deficient_and_zero_matrices():
    a = RNG.normal(size=(8, 3)) @ RNG.normal(size=(3, 6))
    got = np.asarray(rf.singular_values(jnp.asarray(a)))
    np.testing.assert_allclose(got[:3], np.linalg.svd(a, compute_uv=False)[:3], rtol=1e-13)
    assert np.all(got[3:] < 1e-13 * got[0])
    np.testing.assert_array_equal(rf.singular_values(jnp.zeros((4, 3))), np.zeros(3))


def test_float32_agrees_with_lapack_to_float32_rounding():
    a = RNG.normal(size=(20, 20)).astype(np.float32)
    s = rf.singular_values(jnp.asarray(a))
    e = rf.symmetric_eigenvalues(jnp.asarray(a + a.T))
    assert s.dtype == e.dtype == jnp.float32
    exact = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s, exact, rtol=0, atol=2e-6 * exact[0])
    exact = np.linalg.eigvalsh((a + a.T).astype(np.float64))
    np.testing.assert_allclose(e, exact, rtol=0, atol=2e-6 * np.abs(exact).max())


@pytest.mark.parametrize(("m", "n"), [(1, 1), (5, 5), (7, 3), (300, 20)])
def test_triangular_factor(m, n):
    a = RNG.normal(size=(m, n)) * np.logspace(0, -6, n)
    r = np.asarray(rf.triangular_factor(jnp.asarray(a)))
    assert r.shape == (n, n)
    np.testing.assert_array_equal(r, np.triu(r))
    np.testing.assert_allclose(r.T @ r, a.T @ a, rtol=1e-12, atol=1e-14 * np.abs(a).max() ** 2)
    # Unique up to the sign of each row: LAPACK's, row by row.
    want = np.linalg.qr(a, mode="r")
    np.testing.assert_allclose(np.abs(r), np.abs(want), atol=1e-13 * np.abs(want).max())
    with pytest.raises(ValueError, match="at least as many rows"):
        rf.triangular_factor(jnp.zeros((2, 3)))


def test_batched_and_compiled_without_lapack():
    a = jnp.asarray(RNG.normal(size=(5, 6, 6)))
    for fn, ref in (
        (rf.symmetric_eigenvalues, jnp.linalg.eigvalsh),
        (rf.singular_values, lambda x: jnp.linalg.svd(x, compute_uv=False)),
    ):
        batched = jax.jit(jax.vmap(fn))
        assert "lapack" not in batched.lower(a).as_text()
        np.testing.assert_allclose(batched(a), jax.vmap(ref)(a), atol=1e-12)
    assert "lapack" not in jax.jit(jax.vmap(rf.triangular_factor)).lower(a).as_text()


def test_rnnflows_own_metrics_keep_every_device(placed_on):
    """The sharpness and the effective dimension, as save metrics, leave a block on every
    CPU device (they called LAPACK before: one device, with a warning), with the results
    of one device, bit for bit."""
    model = rf.DiagonalRNN(4, scan="sequential")
    loss = rf.ImpulseLoss(rf.modes_teacher([0.8, -0.5], [1.0, 0.5]), 7).bind(model)
    metrics = {
        "sharpness": rf.sharpness_metric(loss),
        "dim": rf.effective_dim_metric(model, length=9),
    }
    save = rf.Save(num=3, metrics=metrics)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), 8), scale=0.3)
    method = rf.GradientDescent(0.05, 40)
    # Two lanes a call on one device, as each of the four devices runs by default.
    one = rf.train_seeds(loss, params, method, save=save, devices=jax.devices()[:1], lanes=2)
    placed_on.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        every = rf.train_seeds(loss, params, method, save=save)
    assert placed_on == set(jax.devices())
    for name in metrics:
        np.testing.assert_array_equal(every.metrics[name], one.metrics[name], err_msg=name)
    # And the Hankel singular values are LAPACK's.
    h = jax.vmap(lambda p: model.impulse_response(p, 17))(one.final)  # (seed, 17, 1, 1)
    hankels = np.asarray(h)[:, np.arange(9)[:, None] + np.arange(9)[None, :], 0, 0]
    want = np.linalg.svd(hankels, compute_uv=False)
    got = jax.vmap(lambda x: rf.hankel_singular_values(x, 9))(h)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * want.max())


@pytest.mark.parametrize("n", [1, 2, 9, 40])
def test_cholesky_and_its_solve(n):
    j = RNG.normal(size=(n + 2, n))
    a = np.eye(n) + 0.5 * j.T @ j
    low = np.asarray(rf.cholesky(jnp.asarray(a)))
    np.testing.assert_allclose(low, np.linalg.cholesky(a), atol=1e-13 * np.sqrt(np.abs(a).max()))
    b = RNG.normal(size=n)
    x = rf.cholesky_solve(jnp.asarray(low), jnp.asarray(b))
    np.testing.assert_allclose(a @ np.asarray(x), b, atol=1e-12 * np.abs(b).max())
    assert np.isnan(rf.cholesky(jnp.asarray([[1.0, 2.0], [2.0, 1.0]]))).any()  # not definite


def test_the_stiff_solver_calls_no_lapack():
    """LeastSquaresRosenbrock factors I + cJᵀJ (or I + cJJᵀ) itself: a block of seeds on
    its flow runs on every CPU device."""
    model = rf.DenseRNN(3)
    loss = rf.ImpulseLoss(rf.modes_teacher([0.8, -0.5], [1.0, 0.5]), 12).bind(model)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), 2), scale=0.3)
    method = rf.GradientFlow(5.0, solver=rf.LeastSquaresRosenbrock())
    run = jax.jit(jax.vmap(lambda p: rf.train(loss, p, method).final))
    assert "lapack" not in run.lower(params).as_text()


@pytest.mark.parametrize("n", [1, 2, 7, 12])
def test_symmetric_eigh_decomposes(n):
    a = _symmetric(n)
    values, vectors = (np.asarray(x) for x in rf.symmetric_eigh(jnp.asarray(a)))
    np.testing.assert_allclose(values, np.linalg.eigvalsh(a), atol=1e-13)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(n), atol=1e-13)
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, a, atol=1e-13)
    # Each eigenvector is LAPACK's up to its sign (the eigenvalues here are distinct).
    want = np.linalg.eigh(a)[1]
    np.testing.assert_allclose(np.abs(vectors.T @ want), np.eye(n), atol=1e-10)


def test_a_symmetric_students_learned_measure_is_lapacks():
    model = rf.SymmetricRNN(6)
    params = model.init(key=jax.random.key(3), scale=0.5)
    lam, w = rf.learned_measure(model, params)
    a = np.asarray(model.transition(params))
    want_lam, v = np.linalg.eigh(a)
    b, c = np.asarray(params.b)[:, 0], np.asarray(params.c)[0]
    np.testing.assert_allclose(lam, want_lam, atol=1e-13)
    np.testing.assert_allclose(w, (c @ v) * (v.T @ b), atol=1e-13)
    assert "lapack" not in jax.jit(lambda p: rf.learned_measure(model, p)).lower(params).as_text()
