"""Models: impulse responses, forward passes, initialization, and JAX transformations.

Compilation dominates the run time of these tests on a CPU (drawing random numbers of a new
shape compiles a threefry kernel), so test data come from a numpy generator, shapes are
shared between tests, and each test compiles one or two whole functions.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import rnnflow as rf

LINEAR = [rf.DenseRNN, rf.SymmetricRNN, rf.DiagonalRNN]
ALL = LINEAR + [rf.TanhRNN]
D, IN, OUT = 4, 2, 3  # several inputs and outputs: the general case
TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
K = 5


def _ids(classes):
    return [c.__name__ for c in classes]


def _dense_a(model, params):
    """The transition as a (d, d) numpy matrix, whatever the parameterization."""
    a = np.asarray(model.transition(params))
    return np.diag(a) if a.ndim == 1 else a


def _params(model, seed=0, scale=0.5, radius=0.8):
    """Gaussian parameters from numpy, the transition rescaled to spectral radius `radius`:
    stable, so responses decay, but slowly enough that late lags are not negligible. For the
    symmetric model the stored W is not symmetric, which also exercises A = (W + Wᵀ)/2."""
    rng = np.random.default_rng(seed)
    d = model.state_dim
    params = rf.RNNParams(
        jnp.asarray(scale * rng.normal(size=model.a_shape)),
        jnp.asarray(scale * rng.normal(size=(d, model.in_dim))),
        jnp.asarray(scale * rng.normal(size=(model.out_dim, d))),
    )
    rho = np.max(np.abs(np.linalg.eigvals(_dense_a(model, params))))
    return eqx.tree_at(lambda p: p.a, params, params.a * (radius / rho))


def _inputs(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _loop_outputs(model, params, xs):
    """The recurrence as an explicit Python loop in numpy: ground truth for `model(params, xs)`."""
    a = _dense_a(model, params)
    b, c = np.asarray(params.b), np.asarray(params.c)
    nonlinear = isinstance(model, rf.TanhRNN)
    s = np.zeros(model.state_dim)
    ys = []
    for x in np.asarray(xs):
        s = a @ s + b @ x
        if nonlinear:
            s = np.tanh(s)
        ys.append(c @ s)
    return np.stack(ys)


def _rel(x, ref):
    x, ref = np.asarray(x), np.asarray(ref)
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


# -- impulse responses and forward passes ----------------------------------------------------


@pytest.mark.parametrize("scan", ["sequential", "associative"])
@pytest.mark.parametrize("cls", LINEAR, ids=_ids(LINEAR))
def test_impulse_response_is_markov_parameters(cls, scan):
    model = cls(D, in_dim=IN, out_dim=OUT, scan=scan)
    params = _params(model)
    q = 40
    h = jax.jit(model.impulse_response, static_argnums=1)(params, q)
    assert h.shape == (q, OUT, IN)
    a = jnp.asarray(_dense_a(model, params))
    expected = np.stack([params.c @ jnp.linalg.matrix_power(a, i) @ params.b for i in range(q)])
    # float64: repeated squaring and the scan round differently, O(log q * d * eps) relative
    # to the largest h_i; 1e-12 still catches an off-by-one lag (~20% relative change).
    assert _rel(h, expected) < 1e-12
    assert np.max(np.abs(expected[-1])) > 1e-6  # the late lags are not negligible


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_forward_matches_python_loop(cls):
    # Entries of scale 0.5, spectral radius 0.8: for tanh, pre-activations are O(1), well into
    # the non-linearity, so a linear step in its place would be caught.
    xs = _inputs((200, IN))
    scans = ["sequential", "associative"] if cls in LINEAR else [None]
    outputs = {}
    for scan in scans:
        kwargs = {} if scan is None else {"scan": scan}
        model = cls(D, in_dim=IN, out_dim=OUT, **kwargs)
        params = _params(model)
        outputs[scan] = jax.jit(model)(params, xs)
        assert outputs[scan].shape == (200, OUT)
        # float64 rounding over a stable recurrence: O(d * log T * eps) relative.
        assert _rel(outputs[scan], _loop_outputs(model, params, xs)) < 1e-12
    if len(scans) == 2:
        # The two scan choices agree with each other (float64: summation order only).
        assert _rel(outputs["associative"], outputs["sequential"]) < 1e-12


def test_tanh_impulse_response_is_the_response_to_a_unit_impulse():
    model = rf.TanhRNN(D, in_dim=IN, out_dim=OUT)
    params = _params(model)
    h = jax.jit(model.impulse_response, static_argnums=1)(params, 20)
    assert h.shape == (20, OUT, IN)
    for j in range(IN):
        xs = np.zeros((20, IN))
        xs[0, j] = 1.0
        assert _rel(h[:, :, j], _loop_outputs(model, params, xs)) < 1e-12  # float64 rounding


def test_tanh_is_dense_near_zero():
    # tanh(z) = z - z³/3 + ...: with inputs of size ε the states are O(ε) and the relative
    # deviation from the linear model is O(ε²). With ε = 1e-4 and O(1) gains it is ~1e-9, so
    # 1e-7 is a safe bound, while at ε = 1 the two models differ by O(1e-1).
    tanh = jax.jit(rf.TanhRNN(D, in_dim=IN, out_dim=OUT))
    dense = jax.jit(rf.DenseRNN(D, in_dim=IN, out_dim=OUT))
    params = _params(rf.DenseRNN(D, in_dim=IN, out_dim=OUT))
    xs = _inputs((50, IN))

    def dev(eps):
        return _rel(tanh(params, eps * xs), dense(params, eps * xs))

    assert dev(1e-4) < 1e-7
    assert dev(1.0) > 1e-2
    # The deviation is quadratic in ε (the cubic term of tanh): 10x smaller ε, 100x smaller.
    assert 50 < dev(1e-2) / dev(1e-3) < 200  # 100 up to the O(ε⁴) term


def test_symmetric_model_uses_the_symmetric_part():
    # A = (W + Wᵀ)/2 for any stored W: the symmetric model is the dense model at that A.
    sym = rf.SymmetricRNN(D, in_dim=IN, out_dim=OUT)
    params = _params(sym)
    w = np.asarray(params.a)
    assert not np.allclose(w, w.T)  # the test data exercise the symmetrization
    np.testing.assert_array_equal(sym.transition(params), (w + w.T) / 2)
    dense_params = rf.RNNParams(jnp.asarray((w + w.T) / 2), params.b, params.c)
    xs = _inputs((200, IN))
    dense = rf.DenseRNN(D, in_dim=IN, out_dim=OUT, scan="sequential")
    expected = _loop_outputs(dense, dense_params, xs)
    assert _rel(jax.jit(sym)(params, xs), expected) < 1e-12  # float64 rounding


def test_make_model():
    for name, cls in rf.MODELS.items():
        assert rf.make_model(name, 4, in_dim=2) == cls(4, in_dim=2)
    assert rf.make_model("diagonal", 3, scan="sequential").scan == "sequential"


# -- initialization --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LINEAR, ids=_ids(LINEAR))
def test_balanced_init_has_zero_imbalance(key, cls):
    model = cls(D, in_dim=IN, out_dim=IN)
    params = model.init(key=key, scale=0.7, balanced=True)
    a = model.transition(params)
    if a.ndim == 2:
        assert jnp.array_equal(a, a.T)  # symmetric exactly, not up to rounding
    assert jnp.array_equal(params.c, params.b.T)
    # Exactly zero: with A = Aᵀ and C = Bᵀ bit for bit, AAᵀ and AᵀA (and BBᵀ, CᵀC) are the
    # same products of the same numbers.
    assert float(jnp.max(jnp.abs(model.imbalance(params)))) == 0.0
    assert float(model.relative_imbalance(params)) == 0.0

    unbalanced = model.init(key=key, scale=0.7)
    # Independent Gaussian B and C: Q has entries of order scale² = 0.5.
    assert float(jnp.max(jnp.abs(model.imbalance(unbalanced)))) > 1e-2
    assert float(model.relative_imbalance(unbalanced)) > 1e-2


@pytest.mark.parametrize("cls", LINEAR, ids=_ids(LINEAR))
def test_imbalance_formula(cls):
    # Q = AAᵀ - AᵀA + BBᵀ - CᵀC computed independently (diagonal: its conserved diagonal part).
    model = cls(D, in_dim=IN, out_dim=OUT)
    params = _params(model)
    a, b, c = _dense_a(model, params), np.asarray(params.b), np.asarray(params.c)
    q = a @ a.T - a.T @ a + b @ b.T - c.T @ c
    if cls is rf.DiagonalRNN:
        q = np.diag(q)  # AAᵀ - AᵀA = 0 for diagonal A
    # float64 rounding of O(1) products.
    np.testing.assert_allclose(model.imbalance(params), q, rtol=0, atol=1e-14)
    size = np.sum(np.asarray(params.a) ** 2) + np.sum(b**2) + np.sum(c**2)
    np.testing.assert_allclose(model.relative_imbalance(params), np.linalg.norm(q) / size, 1e-13)


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_init_scale_and_keys(key, cls):
    # Entries are i.i.d. N(0, σ²). The sample std of n i.i.d. normals has relative standard
    # error 1/sqrt(2n), and the sample mean has standard error σ/sqrt(n): we allow 5 standard
    # errors (a chance failure for another key has probability < 1e-6), computed per array.
    sigma = 0.05
    d, io = (20000, 4) if cls is rf.DiagonalRNN else (256, 64)
    model = cls(d, in_dim=io, out_dim=io)
    params = model.init(key=key, scale=sigma)
    a = np.asarray(params.a)
    samples = {"b": np.asarray(params.b), "c": np.asarray(params.c)}
    if cls is rf.SymmetricRNN:
        assert np.array_equal(a, a.T)
        samples["a off-diagonal"] = a[np.triu_indices(d, 1)]  # the independent entries
        samples["a diagonal / sqrt(2)"] = np.diag(a) / np.sqrt(2.0)  # documented: std σ√2
    else:
        samples["a"] = a
    for name, x in samples.items():
        x = x.ravel()
        n = x.size
        assert abs(x.std() / sigma - 1) < 5 / np.sqrt(2 * n), name
        assert abs(x.mean()) < 5 * sigma / np.sqrt(n), name

    # A function of the key only: same key, same numbers; another key, other numbers.
    again = model.init(key=jax.random.key(0), scale=sigma)
    other = model.init(key=jax.random.key(1), scale=sigma)
    for x, y, z in zip(*(jax.tree.leaves(p) for p in (params, again, other))):
        np.testing.assert_array_equal(x, y)
        assert not np.any(np.asarray(x) == np.asarray(z))  # continuous draws never coincide
    # a, b and c come from different sub-keys: b and c (same size here) are not copies.
    assert not np.any(np.asarray(params.b).ravel() == np.asarray(params.c).ravel())


def test_init_zero_scale_and_dtype(key):
    params = rf.DenseRNN(D).init(key=key, scale=0.0)
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(params))
    params = rf.DenseRNN(D).init(key=key, scale=0.1, dtype=jnp.float32)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    params = rf.DenseRNN(D).init(key=key, scale=0.1)
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(params))  # x64 is on in tests


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
@pytest.mark.parametrize("balanced", [False, True])
def test_init_keeps_dtype_whatever_the_type_of_scale(cls, balanced, key):
    # A float64 scale (np.sqrt of something, say) must not promote float32 draws.
    for scale in (0.1, np.float64(0.1), jnp.asarray(0.1, jnp.float64)):
        params = cls(D).init(key=key, scale=scale, balanced=balanced, dtype=jnp.float32)
        assert [x.dtype for x in jax.tree.leaves(params)] == [jnp.float32] * 3


# -- JAX transformations ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_jit_grad_vmap(cls):
    model = cls(D, in_dim=IN, out_dim=OUT)
    params = _params(model)
    xs = _inputs((5, 30, IN))  # a batch of 5 sequences

    @jax.jit
    def outputs_and_grad(p):
        def f(p):
            return jnp.sum(jax.vmap(model, in_axes=(None, 0))(p, xs) ** 2)

        return jax.vmap(model, in_axes=(None, 0))(p, xs), jax.grad(f)(p)

    batched, g = outputs_and_grad(params)
    # jit + vmap over sequences == the Python loop of the recurrence, sequence by sequence.
    for n in range(5):
        assert _rel(batched[n], _loop_outputs(model, params, xs[n])) < 1e-12  # float64
    # grad: a pytree of the params' structure, finite, and not zero.
    assert jax.tree.structure(g) == jax.tree.structure(params)
    for gx, px in zip(jax.tree.leaves(g), jax.tree.leaves(params)):
        assert gx.shape == px.shape
        assert np.all(np.isfinite(gx)) and np.max(np.abs(gx)) > 0


# A matrix and an elementwise recurrence. (Each case compiles init + loss batched over seeds,
# the most expensive compilation here; the tanh and symmetric models are vmapped over
# sequences in test_jit_grad_vmap.)
SEED_MODELS = [rf.DenseRNN, rf.DiagonalRNN]


@pytest.mark.parametrize("cls", SEED_MODELS, ids=_ids(SEED_MODELS))
def test_vmap_over_seeds_equals_loop(cls):
    model = cls(D)
    loss = rf.ImpulseLoss(TEACHER, train_len=K)

    def run(key):
        params = model.init(key=key, scale=0.3)
        return loss(model, params), params

    keys = jax.random.split(jax.random.key(7), 6)
    losses, params = jax.tree.map(np.asarray, jax.jit(jax.vmap(run))(keys))
    assert losses.shape == (6,)
    for i in range(6):
        # The reference: one seed at a time, eagerly (no jit, no vmap).
        loss_i, params_i = jax.tree.map(np.asarray, run(keys[i]))
        # Same keys, same draws: equal up to 1 ulp (compiled, XLA may fuse the scaling by σ
        # into the sampler and round once less); the loss, a few float64 operations later,
        # up to a few ulps. Draws from another key would differ by O(1).
        for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(params_i)):
            np.testing.assert_allclose(x[i], y, rtol=1e-15, atol=0)
        np.testing.assert_allclose(losses[i], loss_i, rtol=1e-13, atol=0)
    assert len(set(losses.tolist())) == 6  # the seeds really differ


def test_no_retrace_for_new_keys_or_data():
    model = rf.DenseRNN(D)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def impulse(key):
        params = model.init(key=key, scale=0.3)
        return rf.ImpulseLoss(TEACHER, train_len=K)(model, params)

    a = impulse(jax.random.key(1))
    b = impulse(jax.random.key(2))  # raises if it traced again
    assert a != b

    # New data of the same shape (another sampled SequenceLoss) does not retrace either.
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def sequence(loss, key):
        return loss(model, model.init(key=key, scale=0.3))

    l1 = rf.SequenceLoss(TEACHER, _inputs((4, K, 1), seed=3))
    l2 = rf.SequenceLoss(TEACHER, _inputs((4, K, 1), seed=4))
    assert sequence(l1, jax.random.key(1)) != sequence(l2, jax.random.key(2))

    # Control: the counter does count (a new shape is a second trace, and is refused).
    with pytest.raises(RuntimeError, match="can only be traced 1 times"):
        sequence(rf.SequenceLoss(TEACHER, _inputs((3, K, 1))), jax.random.key(1))


# -- gradients against finite differences ----------------------------------------------------


def _fd_check(loss, model, params):
    flat, unravel = ravel_pytree(params)
    # One compiled function gives both the values (for the differences) and the gradient.
    value_and_grad = jax.jit(jax.value_and_grad(lambda t: loss(model, unravel(t))))
    grad = np.asarray(value_and_grad(flat)[1])
    # Central differences: truncation error ε²/6 |f'''| ~ 1e-11 and rounding error
    # eps_64 |f| / ε ~ 1e-11 at ε = 1e-5 with O(1) derivatives, so agreement to ~1e-9 of the
    # largest gradient entry is expected; 1e-6 is the bound, and a wrong factor or a missing
    # term (e.g. the transpose in the symmetric parameterization) is O(1) off.
    eps = 1e-5
    fd = np.array(
        [
            (value_and_grad(flat + eps * e)[0] - value_and_grad(flat - eps * e)[0]) / (2 * eps)
            for e in np.eye(flat.size)
        ]
    )
    scale = np.max(np.abs(grad))
    assert scale > 1e-3  # a non-trivial gradient, so the comparison means something
    assert np.max(np.abs(fd - grad)) < 1e-6 * scale


@pytest.mark.parametrize("loss_kind", ["impulse", "sequence"])
@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_gradient_matches_finite_differences(cls, loss_kind):
    model = cls(3)
    params = _params(model)
    if loss_kind == "impulse":
        loss = rf.ImpulseLoss(TEACHER, train_len=K)
    else:
        # Every step supervised: the whole output sequence enters the gradient.
        loss = rf.SequenceLoss(TEACHER, _inputs((4, K, 1)), supervise="all")
    _fd_check(loss, model, params)


def test_gradient_matches_finite_differences_mimo(key):
    # Several inputs and outputs; last-step supervision (the single-output cases above
    # supervise every step).
    teacher = rf.random_teacher(key, 2, in_dim=IN, out_dim=OUT)
    model = rf.DenseRNN(3, in_dim=IN, out_dim=OUT)
    params = _params(model)
    _fd_check(rf.ImpulseLoss(teacher, train_len=K), model, params)
    _fd_check(rf.SequenceLoss(teacher, _inputs((3, K, IN)), supervise="last"), model, params)
