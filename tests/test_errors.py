"""Bad input: a clear ValueError/TypeError naming the argument, raised before any compilation.

Each case is run three ways: eagerly (the message names the argument), with JAX's compilation
monitored on cold caches (nothing was compiled before the error), and inside `jax.jit` (the
same error at trace time: it comes from Python, not from XLA).
"""

import re

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf

TEACHER = rf.modes_teacher([0.9], [1.0])
MODEL = rf.DenseRNN(3)
DIAG = rf.DiagonalRNN(3)
GOOD = rf.RNNParams(jnp.zeros((3, 3)), jnp.zeros((3, 1)), jnp.zeros((1, 3)))
XS = jnp.zeros((5, 1))
KEY = jax.random.key(0)


LOSS = rf.ImpulseLoss(TEACHER, 5)


def _params(a=(3, 3), b=(3, 1), c=(1, 3)):
    return rf.RNNParams(jnp.zeros(a), jnp.zeros(b), jnp.zeros(c))


# Every array is built here, not in the cases: building one would itself compile.
A32, B32, C23, B21 = _params(a=(3, 2)), _params(b=(3, 2)), _params(c=(2, 3)), _params(b=(2, 1))
Z5, Z52, Z251, Z01 = jnp.zeros(5), jnp.zeros((5, 2)), jnp.zeros((2, 5, 1)), jnp.zeros((0, 1))
Z451, Z452, Z051 = jnp.zeros((4, 5, 1)), jnp.zeros((4, 5, 2)), jnp.zeros((0, 5, 1))
INT_B = rf.RNNParams(jnp.zeros((3, 3)), jnp.zeros((3, 1), jnp.int32), jnp.zeros((1, 3)))


# (id, function, array arguments (traced under jit), exception type, substring of the message)
CASES = [
    # models
    ("state_dim=0", lambda: rf.DenseRNN(0), (), ValueError, "`state_dim`"),
    ("state_dim=-3", lambda: rf.SymmetricRNN(-3), (), ValueError, "`state_dim`"),
    ("state_dim=2.5", lambda: rf.DiagonalRNN(2.5), (), TypeError, "`state_dim`"),
    ("state_dim=True", lambda: rf.DenseRNN(True), (), TypeError, "`state_dim`"),
    ("in_dim=0", lambda: rf.DenseRNN(3, in_dim=0), (), ValueError, "`in_dim`"),
    ("out_dim=0", lambda: rf.TanhRNN(3, out_dim=0), (), ValueError, "`out_dim`"),
    ("scan=parallel", lambda: rf.DenseRNN(3, scan="parallel"), (), ValueError, "`scan`"),
    ("make_model lstm", lambda: rf.make_model("lstm", 4), (), ValueError, "`parameterization`"),
    ("make_model state_dim", lambda: rf.make_model("dense", 0), (), ValueError, "`state_dim`"),
    # init
    ("scale=-1", lambda k: MODEL.init(key=k, scale=-1.0), (KEY,), ValueError, "`scale`"),
    ("scale=nan", lambda k: MODEL.init(key=k, scale=float("nan")), (KEY,), ValueError, "`scale`"),
    ("scale=str", lambda k: MODEL.init(key=k, scale="big"), (KEY,), TypeError, "`scale`"),
    (
        "balanced in!=out",
        lambda k: rf.DenseRNN(3, in_dim=1, out_dim=2).init(key=k, scale=0.1, balanced=True),
        (KEY,),
        ValueError,
        "`balanced=True`",
    ),
    # impulse response and forward pass
    ("length=0", lambda p: MODEL.impulse_response(p, 0), (GOOD,), ValueError, "`length`"),
    (
        "length=0 tanh",
        lambda p: rf.TanhRNN(3).impulse_response(p, 0),
        (GOOD,),
        ValueError,
        "`length`",
    ),
    ("params.a", lambda p, x: MODEL(p, x), (A32, XS), ValueError, "`params.a`"),
    ("params.b", lambda p, x: MODEL(p, x), (B32, XS), ValueError, "`params.b`"),
    ("params.c", lambda p, x: MODEL(p, x), (C23, XS), ValueError, "`params.c`"),
    ("params.a diagonal", lambda p, x: DIAG(p, x), (GOOD, XS), ValueError, "`params.a`"),
    ("params.b impulse", lambda p: MODEL.impulse_response(p, 4), (B21,), ValueError, "`params.b`"),
    ("params.c tanh", lambda p, x: rf.TanhRNN(3)(p, x), (C23, XS), ValueError, "`params.c`"),
    ("params.b int", lambda p, x: MODEL(p, x), (INT_B, XS), TypeError, "`params.b`"),
    ("params tuple", lambda p, x: MODEL((p.a, p.b, p.c), x), (GOOD, XS), TypeError, "`params`"),
    ("xs 1-d", lambda p, x: MODEL(p, x), (GOOD, Z5), ValueError, "`xs`"),
    ("xs in_dim", lambda p, x: MODEL(p, x), (GOOD, Z52), ValueError, "`xs`"),
    ("xs batched", lambda p, x: MODEL(p, x), (GOOD, Z251), ValueError, "`xs`"),
    ("xs T=0", lambda p, x: MODEL(p, x), (GOOD, Z01), ValueError, "`xs`"),
    ("xs tanh", lambda p, x: rf.TanhRNN(3)(p, x), (GOOD, Z52), ValueError, "`xs`"),
    # losses
    ("ImpulseLoss train_len=0", lambda: rf.ImpulseLoss(TEACHER, 0), (), ValueError, "`train_len`"),
    (
        "ImpulseLoss train_len=2.0",
        lambda: rf.ImpulseLoss(TEACHER, 2.0),
        (),
        TypeError,
        "`train_len`",
    ),
    ("ImpulseLoss not a Teacher", lambda: rf.ImpulseLoss(MODEL, 5), (), TypeError, "`teacher`"),
    (
        "ImpulseLoss model dims",
        lambda loss, p: loss(rf.DenseRNN(3, in_dim=2), p),
        (LOSS, B32),
        ValueError,
        "in_dim",
    ),
    ("SequenceLoss xs 2-d", lambda x: rf.SequenceLoss(TEACHER, x), (XS,), ValueError, "`xs`"),
    (
        "SequenceLoss xs in_dim",
        lambda x: rf.SequenceLoss(TEACHER, x),
        (Z452,),
        ValueError,
        "`xs`",
    ),
    ("SequenceLoss xs N=0", lambda x: rf.SequenceLoss(TEACHER, x), (Z051,), ValueError, "`xs`"),
    (
        "SequenceLoss not a Teacher",
        lambda x: rf.SequenceLoss(TEACHER.params, x),
        (Z451,),
        TypeError,
        "`teacher`",
    ),
    (
        "supervise=first",
        lambda x: rf.SequenceLoss(TEACHER, x, supervise="first"),
        (Z451,),
        ValueError,
        "`supervise`",
    ),
    (
        "sample num_sequences=0",
        lambda k: rf.SequenceLoss.sample(TEACHER, 5, 0, key=k),
        (KEY,),
        ValueError,
        "`num_sequences`",
    ),
    (
        "sample train_len=0",
        lambda k: rf.SequenceLoss.sample(TEACHER, 0, 10, key=k),
        (KEY,),
        ValueError,
        "`train_len`",
    ),
    (
        "extrapolation horizon=train_len",
        lambda p: rf.extrapolation_error(MODEL, p, TEACHER, train_len=5, horizon=5),
        (GOOD,),
        ValueError,
        "`horizon`",
    ),
    (
        "extrapolation horizon<train_len",
        lambda p: rf.extrapolation_error(MODEL, p, TEACHER, train_len=5, horizon=3),
        (GOOD,),
        ValueError,
        "`horizon`",
    ),
    (
        "extrapolation train_len=0",
        lambda p: rf.extrapolation_error(MODEL, p, TEACHER, train_len=0, horizon=3),
        (GOOD,),
        ValueError,
        "`train_len`",
    ),
    # teachers
    ("modes shapes", lambda: rf.modes_teacher([0.9, 0.5], [1.0]), (), ValueError, "`weights`"),
    (
        "modes zero weight",
        lambda: rf.modes_teacher([0.9, 0.5], [1.0, 0.0]),
        (),
        ValueError,
        "`weights`",
    ),
    (
        "modes nan eigenvalue",
        lambda: rf.modes_teacher([np.nan], [1.0]),
        (),
        ValueError,
        "`eigenvalues`",
    ),
    ("modes nan weight", lambda: rf.modes_teacher([0.9], [np.nan]), (), ValueError, "`weights`"),
    ("modes inf", lambda: rf.modes_teacher([np.inf], [1.0]), (), ValueError, "`eigenvalues`"),
    ("modes empty", lambda: rf.modes_teacher([], []), (), ValueError, "`eigenvalues`"),
    ("modes 2-d", lambda: rf.modes_teacher([[0.9]], [[1.0]]), (), ValueError, "`eigenvalues`"),
    ("random state_dim=0", lambda k: rf.random_teacher(k, 0), (KEY,), ValueError, "`state_dim`"),
    (
        "random spectral_radius=0",
        lambda k: rf.random_teacher(k, 2, spectral_radius=0.0),
        (KEY,),
        ValueError,
        "`spectral_radius`",
    ),
    (
        "Teacher non-linear",
        lambda p: rf.Teacher(rf.TanhRNN(3), p),
        (GOOD,),
        TypeError,
        "linear",
    ),
    ("Teacher params", lambda p: rf.Teacher(MODEL, p), (C23,), ValueError, "`params.c`"),
]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request):
    return request.param[1:]


def test_error_names_the_argument(case):
    fn, args, exc, name = case
    with pytest.raises(exc, match=re.escape(name)) as info:
        fn(*args)
    assert type(info.value) is exc  # not a subclass (e.g. an XLA runtime error)


# -- raised before any compilation -----------------------------------------------------------

_COMPILES = []


def _record(event, duration, **kwargs):
    if "compile" in event:
        _COMPILES.append(event)


jax.monitoring.register_event_duration_secs_listener(_record)


def _empty_caches():
    """Empty all of JAX's caches, so that any operation dispatched from now on has to be
    compiled (and is recorded), and forget what was recorded."""
    jax.clear_caches()
    _COMPILES.clear()


def test_compilation_monitor_sees_compilations():
    # The control: without it the test below could pass because nothing is ever recorded.
    x = jnp.ones(3)
    _empty_caches()
    x + 1
    assert _COMPILES
    _empty_caches()
    MODEL.impulse_response(GOOD, 4)
    assert _COMPILES


def test_error_before_compilation(case):
    fn, args, exc, name = case
    _empty_caches()
    with pytest.raises(exc, match=re.escape(name)):
        fn(*args)
    assert _COMPILES == [], f"compiled before raising: {_COMPILES}"


def test_error_at_trace_time(case):
    fn, args, exc, name = case
    with pytest.raises(exc) as eager:
        fn(*args)
    with pytest.raises(exc) as traced:
        jax.jit(fn)(*args)
    # Same exception, same message: raised by the Python checks while tracing.
    assert str(traced.value) == str(eager.value)
