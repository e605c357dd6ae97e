"""The feedback_alignment experiment: FA trains as BP does, aligns with B only under weight
decay, and its descent follows its flow to O(η) and its modified flow to O(η²).

Runs a tiny float64 config once for the module (tanh, width 16, two seeds);
the numbers quoted in the comments are from that run.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf
from rnnflow.experiments import feedback_alignment, load_results, run_experiment

# tanh only (the linear network's training and alignment are checked in
# test_builtin_rules.py): the sweeps compile one program per activation, rule and step.
TINY = feedback_alignment.FeedbackAlignmentConfig(
    seeds=2,
    activations=("tanh",),
    widths=(16,),
    regs=(0.0, 0.1),
    t1=60.0,
    num_saves=7,
    step_width=16,
    lrs=(0.1, 0.05),
    step_t1=2.0,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("feedback_alignment") / "x"
    return out, run_experiment(feedback_alignment.EXPERIMENT, TINY, out=out)


def test_error_falls_exponentially_under_feedback_alignment_and_backpropagation(results):
    _, res = results
    s = res.summary
    assert s["failed"] == 0
    for act in TINY.activations:
        # Without weight decay the error falls to 4e-3 of its start under FA and 6e-8 under
        # BP by t = 60, at fitted rates 0.089 and 0.24: exponential, FA the slower.
        for rule in ("fa", "bp"):
            assert s["error_drop"][act][rule][0] < 2e-2
            assert s["rate"][act][rule][0] > 0.05


def test_alignment_grows_with_weight_decay(results):
    _, res = results
    align = res.summary["alignment"]
    for act in TINY.activations:
        fa, bp = align[act]["fa"], align[act]["bp"]
        # FA: 0.51 at λ = 0, 0.92 at λ = 0.1. BP's weights never see B: a cosine between
        # unrelated directions in 16 dimensions, of order 1/4 (-0.07 and -0.01 here).
        assert fa["reg_0.1"][0] > 0.8
        assert fa["reg_0.1"][0] - fa["reg_0"][0] > 0.3
        assert abs(bp["reg_0.1"][0]) < 0.5


def test_descent_follows_the_flow_to_first_order_and_the_modified_flow_to_second(results):
    _, res = results
    for act in TINY.activations:
        slopes = res.summary["small_step"][act]
        assert slopes["gd_flow_slope"] == pytest.approx(1.0, abs=0.15)
        assert slopes["gd_modified_slope"] == pytest.approx(2.0, abs=0.25)


def test_the_store_holds_what_separate_runs_give(results):
    # Ground truth: seed 1 at (tanh, λ = 0.1) run alone, by FA through rf.train, and by BP as
    # a plain loss with the same initial parameters.
    _, res = results
    sweep = feedback_alignment.sweeps(TINY)["train"]
    key = jax.random.split(sweep.key, TINY.seeds)[1]
    point = {"activation": "tanh", "width": 16, "rule": "fa", "reg": 0.1}
    watched, params, method = sweep.setup(point, key)
    fa = rf.train(watched.rule, params, method, save=sweep.save)
    ds = res["train"].sel(activation="tanh", width=16, reg=0.1, seed=1)
    np.testing.assert_allclose(ds.alignment.sel(rule="fa"), fa.metrics["alignment"], rtol=1e-10)
    np.testing.assert_allclose(ds.error.sel(rule="fa"), fa.metrics["error"], rtol=1e-10)
    bp = rf.train(watched.rule.loss, params, method, save=sweep.save)
    np.testing.assert_allclose(ds.error.sel(rule="bp"), bp.metrics["error"], rtol=1e-10)
    # The feedback matrix is the seed's own: B of seed 0 differs from seed 1's.
    other = sweep.setup(point, jax.random.split(sweep.key, TINY.seeds)[0])[0]
    assert not jnp.allclose(other.rule.feedback, watched.rule.feedback)


def test_results_folder_round_trip(results):
    out, res = results
    loaded = load_results(out)
    assert loaded.experiment == "feedback_alignment" and loaded.config == TINY.to_dict()
    ds = loaded["train"]
    assert ds.alignment.dims == ("activation", "width", "rule", "reg", "seed", "time")
    assert loaded["steps"].outputs.shape == (1, 2, 2, 2, 5, TINY.num_examples, 1)
    assert "alignment" in loaded.summary.headline and (out / "figure.png").exists()


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"activations": ["relu"]}, ValueError, "activations"),
        ({"num_examples": 30}, ValueError, "num_examples"),
        ({"regs": [-0.1]}, ValueError, "regs"),
        ({"lrs": [0.3]}, ValueError, "whole number of steps"),
        ({"widths": [0]}, ValueError, "widths"),
        ({"lr": "big"}, TypeError, "lr"),
    ],
)
def test_config_rejects_bad_values(values, error, match):
    with pytest.raises(error, match=match):
        feedback_alignment.FeedbackAlignmentConfig.from_dict(values)
