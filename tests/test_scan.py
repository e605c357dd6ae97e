"""The linear recurrence s_t = A s_{t-1} + u_t: associative == sequential == closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf

# Jitted once here: run eagerly, the associative scan dispatches (and compiles) each of its
# O(log T) levels op by op, which is slow and not how the library uses it.
sequential = jax.jit(rf.sequential_scan)
associative = jax.jit(rf.associative_scan)
SCANS = [sequential, associative]
sequential_batch = jax.jit(jax.vmap(rf.sequential_scan, in_axes=(None, 0)))
associative_batch = jax.jit(jax.vmap(rf.associative_scan, in_axes=(None, 0)))


def _stable_dense(key, d, radius=0.95):
    """A random non-normal dense matrix rescaled to the given spectral radius."""
    a = np.asarray(jax.random.normal(key, (d, d)))
    return jnp.asarray(a * (radius / np.max(np.abs(np.linalg.eigvals(a)))))


def _transitions(key, d):
    """Dense, symmetric (through SymmetricRNN.transition) and diagonal transitions, all with
    spectral radius 0.95 so that states stay bounded over thousands of steps."""
    k1, k2, k3 = jax.random.split(key, 3)
    dense = _stable_dense(k1, d)
    sym = rf.SymmetricRNN(d).transition(rf.RNNParams(jax.random.normal(k2, (d, d)), None, None))
    sym = sym * (0.95 / np.max(np.abs(np.linalg.eigvalsh(np.asarray(sym)))))
    diag = jax.random.uniform(k3, (d,), minval=-0.95, maxval=0.95).at[0].set(0.95)
    return {"dense": dense, "symmetric": sym, "diagonal": diag}


def _rel_err(x, ref):
    # Error relative to the largest state: entries of the states that are near zero by
    # cancellation carry absolute, not relative, rounding error.
    return float(jnp.max(jnp.abs(x - ref)) / jnp.max(jnp.abs(ref)))


@pytest.mark.parametrize("kind", ["dense", "symmetric", "diagonal"])
# Lengths: the trivial case, a non-power of two (the associative scan pads odd levels), and a
# long sequence (12 levels of the parallel prefix tree). Each length is one compilation.
@pytest.mark.parametrize("length", [1, 7, 4096])
def test_associative_equals_sequential(key, kind, length):
    d = 6
    ka, ku = jax.random.split(key)
    a = _transitions(ka, d)[kind]
    u = jax.random.normal(ku, (length, d))
    seq = sequential(a, u)
    par = associative(a, u)
    assert seq.shape == par.shape == (length, d)
    # float64: the two schedules sum the same terms in different orders; each state is a sum
    # of damped terms, so rounding errors are O(d * log T * eps) relative to the largest state
    # (measured ~5e-16 at T = 4096). 1e-12 leaves a wide margin and still catches any wrong
    # or missing term, which would be O(1e-2) or more here.
    assert _rel_err(par, seq) < 1e-12
    # The states are not trivially small: the recurrence really ran (guards a vacuous pass).
    assert float(jnp.max(jnp.abs(seq))) > 0.5


@pytest.mark.parametrize("kind", ["dense", "symmetric", "diagonal"])
def test_scans_match_explicit_loop(key, kind):
    # Ground truth independent of both implementations: a Python loop in numpy.
    d, length = 6, 4096
    ka, ku = jax.random.split(key)
    a = _transitions(ka, d)[kind]
    u = np.asarray(jax.random.normal(ku, (length, d)))
    a_mat = np.diag(np.asarray(a)) if kind == "diagonal" else np.asarray(a)
    s = np.zeros(d)
    expected = []
    for t in range(length):
        s = a_mat @ s + u[t]
        expected.append(s)
    expected = np.stack(expected)
    for scan in SCANS:
        # float64: the loop and the scans differ only in rounding, O(d * log T * eps) relative.
        assert _rel_err(scan(a, jnp.asarray(u)), jnp.asarray(expected)) < 1e-12


@pytest.mark.parametrize("scan", SCANS)
def test_scalar_closed_form(scan):
    # s_t = sum_{j <= t} a^{t-j} u_j, computed with explicit powers.
    a, length = -0.8, 40
    u = np.cos(np.arange(length) * 0.7) + 0.3
    t = np.arange(length)
    powers = np.where(t[:, None] >= t[None, :], a ** (t[:, None] - t[None, :]).clip(0), 0.0)
    expected = powers @ u
    for a_arr in (jnp.array([a]), jnp.array([[a]])):  # diagonal and dense 1x1
        got = scan(a_arr, jnp.asarray(u)[:, None])[:, 0]
        # float64: 40 terms of size <= 1.3, rounding ~1e-15.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


def test_docstring_example():
    for scan in SCANS:
        np.testing.assert_allclose(scan(jnp.array([0.5]), jnp.ones((3, 1)))[:, 0], [1, 1.5, 1.75])


@pytest.mark.parametrize("kind", ["dense", "symmetric", "diagonal"])
def test_multi_dimensional_input_and_batch(key, kind):
    # Inputs through B with in_dim = 3 (u_t = B x_t), and a batch axis added with vmap: each
    # batched result equals the unbatched one and the two scans agree.
    d, in_dim, length, batch = 6, 3, 100, 3
    ka, kb, kx = jax.random.split(key, 3)
    a = _transitions(ka, d)[kind]
    b = jax.random.normal(kb, (d, in_dim))
    xs = jax.random.normal(kx, (batch, length, in_dim))
    us = jnp.einsum("ntj,dj->ntd", xs, b)
    seq = sequential_batch(a, us)
    par = associative_batch(a, us)
    assert seq.shape == (batch, length, d)
    # Same float64 argument as above.
    assert _rel_err(par, seq) < 1e-12
    for n in range(batch):
        assert _rel_err(sequential(a, us[n]), seq[n]) < 1e-12


@pytest.mark.parametrize("scan", [rf.sequential_scan, rf.associative_scan])
@pytest.mark.parametrize(
    "a_shape, u_shape, name",
    [
        ((3, 4), (5, 3), "`a`"),  # non-square dense
        ((2, 3, 3), (5, 3), "`a`"),  # too many dims
        ((), (5, 1), "`a`"),  # scalar
        ((3,), (5, 4), "`u`"),  # d mismatch, diagonal
        ((3, 3), (5, 2), "`u`"),  # d mismatch, dense
        ((3,), (3,), "`u`"),  # missing time axis
        ((3,), (2, 5, 3), "`u`"),  # batched: the scans take one sequence
    ],
)
def test_bad_shapes(scan, a_shape, u_shape, name):
    with pytest.raises(ValueError, match=name):
        scan(jnp.zeros(a_shape), jnp.zeros(u_shape))
