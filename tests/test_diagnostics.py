import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf


@pytest.mark.parametrize("eigenvalues", [(0.9,), (0.9, -0.5), (1.0, 0.5, -0.7)])
def test_effective_dim_is_teacher_dim(eigenvalues):
    # Kronecker: a minimal realization of dimension r has a Hankel matrix of rank r.
    teacher = rf.modes_teacher(eigenvalues, np.ones(len(eigenvalues)))
    h = teacher.impulse_response(41)
    assert int(rf.effective_dim(h)) == len(eigenvalues)


def test_hankel_singular_values_match_numpy(key):
    h = jax.random.normal(key, (9,))
    hankel = np.array([[h[i + j] for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(
        rf.hankel_singular_values(h), np.linalg.svd(hankel, compute_uv=False), rtol=1e-12
    )


def test_effective_dim_ignores_tiny_modes():
    # A second mode whose Hankel singular value is ~1e-6 of the first sits below rtol = 1e-3.
    i = jnp.arange(41)
    h = 0.9**i + 1e-6 * (-0.5) ** i
    assert int(rf.effective_dim(h)) == 1
    assert int(rf.effective_dim(h, rtol=1e-9)) == 2


@pytest.mark.parametrize("cls", [rf.DenseRNN, rf.SymmetricRNN, rf.DiagonalRNN])
def test_learned_measure_reproduces_impulse_response(cls, key):
    model = cls(6)
    params = model.init(key=key, scale=0.3)
    lam, w = rf.learned_measure(model, params)
    h = model.impulse_response(params, 12)[:, 0, 0]
    moments = jnp.stack([jnp.sum(w * lam**i) for i in range(12)])
    # Eigendecomposition in float64: agreement to rounding, amplified by the condition of V.
    np.testing.assert_allclose(np.real(moments), h, atol=1e-10)


def test_balanced_student_measure_is_nonnegative(key):
    # Fact 3 on the science page: for A = Aᵀ, B = Cᵀ the weights w_j = (Cv_j)(v_jᵀB) = (v_jᵀB)² ≥ 0.
    model = rf.SymmetricRNN(8)
    params = model.init(key=key, scale=0.5, balanced=True)
    _, w = rf.learned_measure(model, params)
    assert jnp.all(w >= 0)


def test_spectrum_distance(key):
    teacher = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
    assert float(rf.spectrum_distance(teacher.model, teacher.params, teacher)) == 0.0
    model = rf.DiagonalRNN(3)
    params = rf.RNNParams(
        a=jnp.array([0.9, -0.5, 0.2]), b=jnp.ones((3, 1)), c=jnp.array([[1.0, 0.5, 0.0]])
    )
    # The mode at 0.2 has zero weight: ignored.
    assert float(rf.spectrum_distance(model, params, teacher)) == 0.0
    params = rf.RNNParams(params.a, params.b, jnp.array([[1.0, 0.5, 0.3]]))
    np.testing.assert_allclose(rf.spectrum_distance(model, params, teacher), 0.7)
