"""Bad input to the training engine gets a clear `ValueError`/`TypeError` naming the field,
raised in Python before anything is compiled (the errors page, docs/errors.md).

"Before compilation" is checked directly: the compiled entry points of `train` and
`train_seeds` are replaced by a tripwire for these tests, and a valid call shows that the
tripwire is reached.
"""

import re
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

import rnnflow as rf

TEACHER = rf.modes_teacher([0.8, -0.5], [1.0, 0.5])
LOSS = rf.ImpulseLoss(TEACHER, train_len=4)
MODEL = rf.DiagonalRNN(4)
PARAMS = MODEL.init(key=jax.random.key(0), scale=0.3)
SEEDS = rf.init_seeds(MODEL, jax.random.split(jax.random.key(0), 3), scale=0.3)
GD = rf.GradientDescent(lr=0.1, num_steps=10)  # t1 = 1
GF = rf.GradientFlow(t1=1.0)
PALLAS = rf.GradientDescent(lr=0.1, num_steps=10, kernel="pallas")
PALLAS_ADAM = rf.GradientDescent(0.1, 10, optax.adam(0.1), kernel="pallas")
PALLAS_SCHEDULE = rf.GradientDescent(optax.linear_schedule(0.1, 0.01, 10), 10, kernel="pallas")
DENSE_PARAMS = rf.DenseRNN(4).init(key=jax.random.key(0), scale=0.3)
NAN = float("nan")
INF = float("inf")


class _TorchLikeSGD:
    """What a PyTorch optimizer looks like from outside: step() and zero_grad(), no optax."""

    def step(self):
        pass

    def zero_grad(self):
        pass


def _raises(error, text):
    return pytest.raises(error, match=re.escape(text))


# -- constructors -----------------------------------------------------------------------------

CONSTRUCTORS = [
    # GradientDescent
    (lambda: rf.GradientDescent(lr=0, num_steps=10), ValueError, "`lr` must be positive"),
    (lambda: rf.GradientDescent(lr=-1, num_steps=10), ValueError, "`lr` must be positive"),
    (lambda: rf.GradientDescent(lr=NAN, num_steps=10), ValueError, "`lr` must not be NaN"),
    (lambda: rf.GradientDescent(lr=INF, num_steps=10), ValueError, "`lr` must be finite"),
    (lambda: rf.GradientDescent(lr="0.1", num_steps=10), TypeError, "`lr` must be a real scalar"),
    (
        lambda: rf.GradientDescent(lr=0.1, num_steps=0),
        ValueError,
        "`num_steps` must be a positive integer",
    ),
    (lambda: rf.GradientDescent(lr=0.1, num_steps=-5), ValueError, "`num_steps`"),
    (lambda: rf.GradientDescent(lr=0.1), TypeError, "either `num_steps` or `t1`"),
    (lambda: rf.GradientDescent(0.1, 10, t1=1.0), TypeError, "not both"),
    (lambda: rf.GradientDescent(0.1, 10, max_steps=5), TypeError, "`max_steps` bounds a run"),
    (lambda: rf.GradientDescent(0.1, t1=-1.0), ValueError, "`t1` must be positive"),
    (lambda: rf.GradientDescent(2.0, t1=1.0), ValueError, "not one step"),
    (lambda: rf.GradientDescent(0.1, t1=1.0, max_steps=5), ValueError, "above `max_steps` = 5"),
    (
        lambda: rf.GradientDescent(lr=0.1, num_steps=1.5),
        TypeError,
        "`num_steps` must be a positive integer",
    ),
    (lambda: rf.GradientDescent(lr=0.1, num_steps=True), TypeError, "`num_steps`"),
    (
        lambda: rf.GradientDescent(lr=0.1, num_steps=10, optimizer="sgd"),
        TypeError,
        "`optimizer` must be an optax",
    ),
    (
        lambda: rf.GradientDescent(lr=0.1, num_steps=10, optimizer=_TorchLikeSGD()),
        TypeError,
        "`optimizer`",
    ),
    (lambda: rf.GradientDescent(0.1, 10, kernel="triton"), ValueError, "`kernel`"),
    # The rate given twice, and different: the optimizer's is not the time axis's.
    (
        lambda: rf.GradientDescent(0.1, 100, optimizer=optax.adam(0.001)),
        ValueError,
        "give the rate once, as `lr`",
    ),
    (
        lambda: rf.GradientDescent(0.1, 100, optimizer=optax.sgd(0.001, momentum=0.9)),
        ValueError,
        "give the rate once",
    ),
    (
        lambda: rf.GradientDescent(0.1, 10, optimizer=lambda lr: "adam"),
        TypeError,
        "`optimizer` must be an optax factory",
    ),
    # GradientFlow
    (lambda: rf.GradientFlow(t1=0), ValueError, "`t1` must be positive"),
    (lambda: rf.GradientFlow(t1=-1), ValueError, "`t1` must be positive"),
    (lambda: rf.GradientFlow(t1=NAN), ValueError, "`t1` must not be NaN"),
    (lambda: rf.GradientFlow(t1=INF), ValueError, "`t1` must be finite"),
    # An SDE solver (its terms are a drift and a diffusion), and a name instead of a solver.
    (
        lambda: rf.GradientFlow(t1=1.0, solver=diffrax.EulerHeun()),
        TypeError,
        "`solver` must be a diffrax ODE solver",
    ),
    (lambda: rf.GradientFlow(t1=1.0, solver="tsit5"), TypeError, "`solver`"),
    (
        lambda: rf.GradientFlow(t1=1.0, stepsize_controller="pid"),
        TypeError,
        "`stepsize_controller`",
    ),
    (
        lambda: rf.GradientFlow(t1=1.0, max_steps=0),
        ValueError,
        "`max_steps` must be a positive integer",
    ),
    (lambda: rf.GradientFlow(t1=1.0, max_steps=10.0), TypeError, "`max_steps`"),
    (
        lambda: rf.GradientFlow(
            t1=1.0, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize()
        ),
        ValueError,
        "`dt0`",
    ),
    (lambda: rf.GradientFlow(t1=1.0, dt0=-0.1), ValueError, "`dt0` must be positive"),
    (lambda: rf.GradientFlow(t1=1.0, dt0=INF), ValueError, "`dt0` must be finite"),
    # ModifiedFlow
    (lambda: rf.ModifiedFlow(lr=0, t1=1.0), ValueError, "`lr` must be positive"),
    (lambda: rf.ModifiedFlow(lr=0.1, t1=-1.0), ValueError, "`t1` must be positive"),
    (lambda: rf.ModifiedFlow(lr=0.1, t1=1.0, max_steps=0), ValueError, "`max_steps`"),
    # Save
    (lambda: rf.Save(ts=[2.0, 1.0]), ValueError, "`Save.ts` must be finite and non-decreasing"),
    (lambda: rf.Save(ts=[0.0, NAN]), ValueError, "`Save.ts` must be finite"),
    (lambda: rf.Save(ts=[]), ValueError, "`Save.ts` must be a non-empty 1-d array"),
    (lambda: rf.Save(ts=[[0.0, 1.0]]), ValueError, "`Save.ts` must be a non-empty 1-d array"),
    (lambda: rf.Save(num=0), ValueError, "`Save.num` must be a positive integer"),
    (lambda: rf.Save(num=2.5), TypeError, "`Save.num`"),
    (lambda: rf.Save(spacing="cubic"), ValueError, "`Save.spacing` must be one of"),
    (lambda: rf.Save(spacing="log", decades=0), ValueError, "`Save.decades` must be positive"),
    (lambda: rf.Save(spacing="log", decades=INF), ValueError, "`Save.decades` must be finite"),
    (lambda: rf.Save(every=0), ValueError, "`Save.every` must be a positive integer"),
    (lambda: rf.Save(ts=[0.0, 1.0], every=2), ValueError, "`Save.ts` or `Save.every`, not both"),
    (lambda: rf.Save(metrics={"loss": 3.0}), TypeError, "`Save.metrics` must map names"),
    (lambda: rf.Save(metrics=[lambda t, p: t]), TypeError, "`Save.metrics`"),
    # Stop
    (lambda: rf.Stop(loss_below=-1.0), ValueError, "`Stop.loss_below` must be positive"),
    (lambda: rf.Stop(loss_below=0.0), ValueError, "`Stop.loss_below` must be positive"),
    (lambda: rf.Stop(loss_below=NAN), ValueError, "`Stop.loss_below` must not be NaN"),
    (lambda: rf.Stop(loss_above=0.0), ValueError, "`Stop.loss_above` must be positive"),
    # Non-finite values and settings that cannot finish
    (
        lambda: rf.Teacher(
            TEACHER.model,
            eqx.tree_at(lambda p: p.a, TEACHER.params, TEACHER.params.a.at[0].set(NAN)),
        ),
        ValueError,
        "`teacher.params.a` holds non-finite values",
    ),
    (
        lambda: rf.Teacher(
            TEACHER.model, eqx.tree_at(lambda p: p.c, TEACHER.params, TEACHER.params.c * INF)
        ),
        ValueError,
        "`teacher.params.c` holds non-finite values",
    ),
    (
        lambda: rf.SequenceLoss(TEACHER, jnp.full((2, 3, 1), NAN)),
        ValueError,
        "`xs` holds non-finite values",
    ),
    (
        lambda: rf.GradientFlow(
            1.0, stepsize_controller=diffrax.PIDController(rtol=NAN, atol=1e-9)
        ),
        ValueError,
        "`stepsize_controller.rtol` must be finite and non-negative",
    ),
    (
        lambda: rf.GradientFlow(
            1.0, stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=-1.0)
        ),
        ValueError,
        "`stepsize_controller.atol` must be finite and non-negative",
    ),
    (
        lambda: rf.GradientFlow(
            10.0, stepsize_controller=diffrax.ConstantStepSize(), dt0=1e-5, max_steps=1000
        ),
        ValueError,
        "more than max_steps = 1000",
    ),
    (lambda: rf.GradientFlow(1.0, stall=0.0), ValueError, "`stall` must be positive"),
    (lambda: rf.GradientFlow(1.0, stall=INF), ValueError, "`stall` must be finite"),
    (lambda: rf.GradientDescent(lambda n: -0.1, 10), ValueError, "finite, positive rate"),
    (lambda: rf.GradientDescent(lambda n: NAN, 10), ValueError, "finite, positive rate"),
    (
        lambda: rf.GradientDescent(0.1, 10, adjoint=diffrax.BacksolveAdjoint()),
        TypeError,
        "`adjoint` for GradientDescent must be",
    ),
    (
        lambda: rf.GradientFlow(1.0, adjoint="backsolve"),
        TypeError,
        "`adjoint` must be a diffrax adjoint",
    ),
    (
        lambda: rf.GradientFlow(1.0, adjoint=diffrax.ImplicitAdjoint()),
        TypeError,
        "ImplicitAdjoint differentiates a steady state",
    ),
]


@pytest.mark.parametrize("make, error, text", CONSTRUCTORS, ids=[c[2] for c in CONSTRUCTORS])
def test_bad_constructor_arguments(make, error, text):
    with _raises(error, text):
        make()


# -- train and train_seeds --------------------------------------------------------------------


def _vector_loss(params):
    return MODEL.impulse_response(params, 4).ravel()


def _int_loss(params):
    return jnp.int32(1)


def _sum_sq(params):
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(params))


INT_PARAMS = rf.RNNParams(PARAMS.a, PARAMS.b.astype(jnp.int32), PARAMS.c)


MIMO = rf.DiagonalRNN(4, in_dim=2)
MIMO_PARAMS = MIMO.init(key=jax.random.key(0), scale=0.3)
DENSE = rf.DenseRNN(3)
DENSE_SEEDS = rf.init_seeds(DENSE, jax.random.split(jax.random.key(0), 3), scale=0.3)
DENSE_LOSS = rf.ImpulseLoss(TEACHER, train_len=4)

TRAIN_CALLS = [
    # Non-finite initial parameters, of one seed or of any seed of a batch
    (
        lambda: rf.train(
            LOSS.bind(MODEL), eqx.tree_at(lambda p: p.a, PARAMS, PARAMS.a.at[1].set(NAN)), GD
        ),
        ValueError,
        "`params.a` holds non-finite values",
    ),
    (
        lambda: rf.train_seeds(
            LOSS.bind(MODEL), eqx.tree_at(lambda p: p.b, SEEDS, SEEDS.b.at[2, 0, 0].set(INF)), GD
        ),
        ValueError,
        "`params.b` holds non-finite values",
    ),
    (
        lambda: rf.train(lambda p: jnp.sum(p["w"] ** 2), {"w": jnp.asarray([1.0, INF])}, GD),
        ValueError,
        "`params['w']` holds non-finite values",
    ),
    # A loss that does not take the parameters' structure
    (
        lambda: rf.train(lambda p: jnp.sum(p["w"] ** 2), (jnp.ones(2),), GD),
        TypeError,
        "`loss_fn(params)` failed for params of structure",
    ),
    # Adjoints that cannot do what is asked
    (
        lambda: rf.train(
            LOSS.bind(MODEL),
            PARAMS,
            rf.GradientFlow(1.0, adjoint=diffrax.BacksolveAdjoint()),
            stop=rf.Stop(loss_below=1e-6),
        ),
        ValueError,
        "BacksolveAdjoint cannot stop a seed early",
    ),
    (
        lambda: rf.train(
            LOSS.bind(MODEL),
            PARAMS,
            rf.GradientFlow(
                1.0, solver=rf.LeastSquaresRosenbrock(), adjoint=diffrax.BacksolveAdjoint()
            ),
        ),
        ValueError,
        "BacksolveAdjoint solves the adjoint equations with the forward solver",
    ),
    # Save times outside [0, t1], for both kinds of method.
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, GD, save=rf.Save(ts=[-1.0, 1.0])),
        ValueError,
        "must lie in [0, t1]",
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, GD, save=rf.Save(ts=[0.0, 2.0])),
        ValueError,
        "must lie in [0, t1]",
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, GF, save=rf.Save(ts=[0.0, 1.5])),
        ValueError,
        "`Save.ts` must lie in",
    ),
    # Save.every counts optimizer steps; a flow has none.
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, GF, save=rf.Save(every=2)),
        ValueError,
        "`Save.every`",
    ),
    # The loss must be a real scalar.
    (
        lambda: rf.train(_vector_loss, PARAMS, GD),
        ValueError,
        "must return a real scalar; got (4,)",
    ),
    (lambda: rf.train(_int_loss, PARAMS, GD), ValueError, "must return a real scalar"),
    (lambda: rf.train(3.0, PARAMS, GD), TypeError, "`loss_fn` must be callable"),
    # The least-squares solver needs residuals, which a plain function does not give.
    (
        lambda: rf.train(
            lambda p: LOSS(MODEL, p),
            PARAMS,
            rf.GradientFlow(1.0, solver=rf.LeastSquaresRosenbrock()),
        ),
        TypeError,
        "LeastSquaresRosenbrock needs a least-squares loss that offers `residuals`",
    ),
    (
        lambda: rf.LeastSquaresRosenbrock("ros3"),
        ValueError,
        "`tableau` must be one of ('ros2', 'ros34pw2'); got 'ros3'",
    ),
    # The Pallas kernel exists for plain gradient descent at a constant rate, on a loss that
    # offers a fused `descend` (the diagonal impulse loss) only.
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, PALLAS_ADAM),
        ValueError,
        'kernel="pallas" runs plain gradient descent',
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, PALLAS_SCHEDULE),
        ValueError,
        'kernel="pallas" runs plain gradient descent',
    ),
    (
        lambda: rf.train(LOSS.bind(rf.DenseRNN(4)), DENSE_PARAMS, PALLAS),
        ValueError,
        'kernel="pallas" needs a loss that offers `descend`',
    ),
    (
        lambda: rf.train(lambda p: LOSS(MODEL, p), PARAMS, PALLAS),
        ValueError,
        'kernel="pallas" needs a loss that offers `descend`',
    ),
    # The wrong kind of object in each place.
    (lambda: LOSS.bind("diagonal"), TypeError, "`model` must be an rnnflow model"),
    # The old argument order, model first: the message says how to call it now.
    (lambda: rf.train(MODEL, PARAMS, GD), TypeError, "takes the loss first"),
    (lambda: rf.train_seeds(MODEL, SEEDS, GD), TypeError, "takes the loss first"),
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, optax.sgd(0.1)),
        TypeError,
        "`method` must be GradientDescent",
    ),
    # ... in train_seeds too, checked before the method is used.
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), SEEDS, optax.sgd(0.1)),
        TypeError,
        "`method` must be GradientDescent",
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, GD, save={"num": 3}),
        TypeError,
        "`save` must be an rnnflow.Save",
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), PARAMS, GD, stop=1e-4),
        TypeError,
        "`stop` must be an rnnflow.Stop",
    ),
    # Model and teacher disagree on input/output dimensions: binding the loss says so.
    (
        lambda: rf.train(LOSS.bind(MIMO), MIMO_PARAMS, GD),
        ValueError,
        "(in_dim, out_dim) = (2, 1) but the teacher has (1, 1)",
    ),
    # Parameters that do not fit the model.
    (
        lambda: rf.train(LOSS.bind(MODEL), rf.RNNParams(jnp.zeros(5), PARAMS.b, PARAMS.c), GD),
        ValueError,
        "`params.a` must have shape (4,)",
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), rf.RNNParams(PARAMS.a, PARAMS.b.T, PARAMS.c), GD),
        ValueError,
        "`params.b` must have shape (4, 1)",
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), (PARAMS.a, PARAMS.b, PARAMS.c), GD),
        TypeError,
        "`params` must be an RNNParams",
    ),
    (
        lambda: rf.train(LOSS.bind(MODEL), SEEDS, GD),
        ValueError,
        "`params.a` must have shape (4,); got (3, 4)",
    ),
    # Any pytree of parameters: integer arrays would be truncated by the updates, and a
    # pytree with nothing to train trains nothing.
    (lambda: rf.train(LOSS.bind(MODEL), INT_PARAMS, GD), TypeError, "`params.b` is a int32 array"),
    (
        lambda: rf.train(_sum_sq, {"w": jnp.zeros(3, jnp.int32)}, GD),
        TypeError,
        "`params['w']` is a int32 array",
    ),
    (
        lambda: rf.train(_sum_sq, {"w": 3.0}, GD),
        ValueError,
        "`params` must hold at least one floating-point array",
    ),
    # train_seeds with an integer leaf: named, as train names it.
    (
        lambda: rf.train_seeds(
            _sum_sq, {"w": jnp.zeros((3, 2)), "b": jnp.zeros((3, 2), jnp.int32)}, GD
        ),
        TypeError,
        "`params['b']` is a int32 array",
    ),
    # train_seeds: parameters without a seed axis, diagonal and dense.
    (lambda: rf.train_seeds(LOSS.bind(MODEL), PARAMS, GD), ValueError, "no leading seed axis"),
    (
        lambda: rf.train_seeds(
            DENSE_LOSS.bind(DENSE), jax.tree.map(lambda x: x[0], DENSE_SEEDS), GD
        ),
        ValueError,
        "no leading seed axis",
    ),
    # ... or not the model's parameters at all (one array for a seed axis of 3 diagonals):
    # the model's own check says what it wants.
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), jnp.zeros((3, 4)), GD),
        TypeError,
        "`params` must be an RNNParams",
    ),
    (
        lambda: rf.train_seeds(_sum_sq, {"w": jnp.zeros(())}, GD),
        ValueError,
        "leading seed axis",
    ),
    # ... fields with different seed counts, or the wrong shape per seed.
    (
        lambda: rf.train_seeds(_sum_sq, {"w": jnp.zeros((3, 2)), "v": jnp.zeros(2)}, GD),
        ValueError,
        "the same leading seed axis",
    ),
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), rf.RNNParams(SEEDS.a[:2], SEEDS.b, SEEDS.c), GD),
        ValueError,
        "the same leading seed axis",
    ),
    (
        lambda: rf.train_seeds(
            LOSS.bind(MODEL), rf.RNNParams(SEEDS.a, SEEDS.b[:, :3], SEEDS.c), GD
        ),
        ValueError,
        "`params.b` must have shape (4, 1)",
    ),
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), SEEDS, GD, chunk_size=0),
        ValueError,
        "`chunk_size` must be a positive integer",
    ),
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), SEEDS, GD, chunk_size=2.0),
        TypeError,
        "`chunk_size`",
    ),
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), SEEDS, GD, lanes=-3),
        ValueError,
        "`lanes` must be a positive integer",
    ),
    (lambda: rf.train_seeds(LOSS.bind(MODEL), SEEDS, GD, lanes=True), TypeError, "`lanes`"),
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), SEEDS, GD, devices=[]),
        ValueError,
        "`devices` must name at least one",
    ),
    (
        lambda: rf.train_seeds(_vector_loss, SEEDS, GD),
        ValueError,
        "must return a real scalar",
    ),
    (
        lambda: rf.train_seeds(LOSS.bind(MODEL), SEEDS, GF, save=rf.Save(ts=[0.0, 3.0])),
        ValueError,
        "must lie in",
    ),
]


@pytest.mark.parametrize("call, error, text", TRAIN_CALLS, ids=[c[2] for c in TRAIN_CALLS])
def test_bad_training_calls_fail_before_compiling(no_compile, call, error, text):
    with _raises(error, text):
        call()


def test_tripwire_is_reached_by_valid_calls(no_compile):
    # Without this, the test above would pass even if the checks ran after compiling.
    with pytest.raises(no_compile):
        rf.train(LOSS.bind(MODEL), PARAMS, GD)
    with pytest.raises(no_compile):
        rf.train_seeds(LOSS.bind(MODEL), SEEDS, GF)


@pytest.mark.slow
def test_float32_warns_when_tolerance_is_below_its_precision(key):
    model = rf.DiagonalRNN(3, scan="sequential")
    loss = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 3)
    params32 = model.init(key=key, scale=0.1, dtype=jnp.float32)
    tight = rf.GradientFlow(1.0, stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))
    with pytest.warns(UserWarning, match="below what float32 can deliver"):
        rf.train(loss.bind(model), params32, tight, save=rf.Save(num=2))
    loose = rf.GradientFlow(1.0, stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-7))
    params64 = model.init(key=key, scale=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rf.train(loss.bind(model), params32, loose, save=rf.Save(num=2))
        rf.train(loss.bind(model), params64, tight, save=rf.Save(num=2))
