"""Bad input to rules, the methods that cannot take them, the field spectrum and the
built-in rules: a clear error naming the argument, raised before anything compiles."""

import re

import jax
import jax.numpy as jnp
import pytest

import rnnflow as rf

THETA = {"u": jnp.ones(2), "v": jnp.asarray(0.5)}
RULE = rf.Rule(lambda p: jax.tree.map(jnp.negative, p))
JUDGED = rf.Rule(lambda p: jax.tree.map(jnp.negative, p), loss=lambda p: jnp.sum(p["u"] ** 2))
GD = rf.GradientDescent(0.1, 10)
GF = rf.GradientFlow(1.0)
X = jnp.ones((5, 3))
Y = jnp.ones((5, 2))
TWO_LAYER = rf.TwoLayerLoss(X, Y)

RULE_CALLS = [
    # Building a rule
    (lambda: rf.Rule(3.0), TypeError, "`field` must be callable"),
    (lambda: rf.Rule(jnp.negative, loss="mse"), TypeError, "`loss` must be callable"),
    # A field given where a loss goes
    (
        lambda: rf.train(lambda p: jax.tree.map(jnp.negative, p), THETA, GD),
        ValueError,
        "train it as rnnflow.Rule(field)",
    ),
    # A direction that is not like the parameters
    (
        lambda: rf.train(rf.Rule(lambda p: {"u": p["u"][:1], "v": p["v"]}), THETA, GD),
        TypeError,
        "the rule's direction at `params['u']` is float",
    ),
    (
        lambda: rf.train(rf.Rule(lambda p: p["u"]), THETA, GD),
        TypeError,
        "must be a pytree like `params`",
    ),
    (
        lambda: rf.train(rf.Rule(lambda p: p["w"]), THETA, GD),
        TypeError,
        "the rule's `direction(params)` failed",
    ),
    # What a field does not have
    (
        lambda: rf.train(RULE, THETA, rf.GradientFlow(1.0, solver=rf.LeastSquaresRosenbrock())),
        TypeError,
        "which a rule's field does not have",
    ),
    (
        lambda: rf.train(RULE, THETA, rf.StochasticFlow(0.1, 1.0), key=jax.random.key(0)),
        TypeError,
        "StochasticFlow needs the minibatch noise of a loss",
    ),
    (
        lambda: rf.train(RULE, THETA, GF, stop=rf.Stop(loss_below=1e-6)),
        ValueError,
        "this rule has no loss",
    ),
    (
        lambda: rf.train_seeds(rf.Oja(X), jnp.ones((4, 3)), GF, stop=rf.Stop(loss_below=1e-6)),
        ValueError,
        "this rule has no loss",
    ),
    (
        lambda: rf.train(JUDGED, THETA, rf.GradientDescent(0.1, 10, kernel="pallas")),
        ValueError,
        'kernel="pallas" needs a loss that offers `descend`',
    ),
    # The field spectrum
    (lambda: rf.field_eigenvalues(RULE, THETA, k=4), ValueError, "`k` = 4 exceeds the 3"),
    (lambda: rf.field_eigenvalues(RULE, THETA, method="qr"), ValueError, "`method`"),
    (lambda: rf.field_eigenvalues(RULE, THETA, k=0), ValueError, "`k`"),
    (lambda: rf.step_eigenvalues(RULE, THETA, -0.1), ValueError, "`lr` must be positive"),
    (lambda: rf.stability_metric(RULE, 0.0), ValueError, "`lr` must be positive"),
    (lambda: rf.field_eigenvalue_metric("rule"), TypeError, "`rule`"),
    # The built-in rules
    (lambda: rf.Oja(jnp.ones(3)), TypeError, "`x` must be a real (N, dim) array"),
    (lambda: rf.train(rf.Oja(X), jnp.ones(4), GF), ValueError, "`params` must have shape (3,)"),
    (lambda: rf.TwoLayerLoss(X, Y, activation="relu"), ValueError, "`activation`"),
    (lambda: rf.TwoLayerLoss(X, Y, reg=-1.0), ValueError, "`reg` must be non-negative"),
    (lambda: rf.TwoLayerLoss(X, Y[:4]), ValueError, "`x` and `y` must be (n, d) and (n, k)"),
    (lambda: rf.FeedbackAlignment(TWO_LAYER, jnp.ones((8, 3))), ValueError, "`feedback`"),
    (lambda: rf.FeedbackAlignment(jnp.sum, jnp.ones((8, 2))), TypeError, "`loss` must be a"),
    (
        lambda: rf.train(
            rf.FeedbackAlignment(TWO_LAYER, jnp.ones((8, 2))),
            TWO_LAYER.init(key=jax.random.key(0), width=6),
            GD,
        ),
        ValueError,
        "`feedback` must have shape (6, 2)",
    ),
    (lambda: rf.Preconditioned(jnp.sum, "adam"), TypeError, "`precondition` must be callable"),
]


@pytest.mark.parametrize("call, error, text", RULE_CALLS, ids=[c[2] for c in RULE_CALLS])
def test_bad_rule_input_fails_before_compiling(no_compile, call, error, text):
    with pytest.raises(error, match=re.escape(text)):
        call()


def test_tripwire_is_reached_by_valid_calls(no_compile):
    # Without this, the test above would pass even if the checks ran after compiling.
    for call in (
        lambda: rf.train(RULE, THETA, GD),
        lambda: rf.train(JUDGED, THETA, GF, stop=rf.Stop(loss_below=1e-6)),
        lambda: rf.train_seeds(rf.Oja(X), jnp.ones((4, 3)), GF),
        lambda: rf.field_eigenvalues(RULE, THETA, k=3),
    ):
        with pytest.raises(no_compile):
            call()
