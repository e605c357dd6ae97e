"""The learning-dynamics experiment: modes one at a time, plateaus growing like log(1/σ).

Runs a tiny float64 sweep (d = 8, two seeds at each of σ = 1e-2, 1e-3, 1e-4, to t = 150)
once for the module; the numbers quoted in the comments are from that run.
"""

import numpy as np
import pytest

from rnnflow.experiments import learning_dynamics, load_results, run_experiment

TINY = learning_dynamics.LearningDynamicsConfig(
    seeds=2,
    state_dim=8,
    scales=(1e-2, 1e-3, 1e-4),
    t1=150.0,
    num_saves=80,
    decades=3.0,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("learning_dynamics") / "x"
    return out, run_experiment(learning_dynamics.EXPERIMENT, TINY, out=out)


def test_modes_are_learned_one_at_a_time_in_order_of_weight(results):
    _, res = results
    s = res.summary
    assert s["failed"] == 0
    # Every seed learns all three modes by t = 150: the weakest (p = 0.15) at t ≈ 35–100.
    assert s["learned_fraction"] == 1.0
    # In weight order in every seed: measured times ≈ 1.3 / 3.4 / 35 at σ = 1e-2 and
    # 2.9 / 7.6 / 97 at σ = 1e-4, a factor ≥ 2.4 between successive modes, while two seeds
    # at one scale differ by < 10 %.
    t = res["t_learn"]  # (scale, seed, mode); the modes are given in decreasing weight
    assert np.all(np.diff(t, axis=-1) > 0)
    assert s["in_order_fraction"] == 1.0


def test_plateaus_grow_linearly_in_log_inverse_scale(results):
    _, res = results
    t = res["t_learn"]
    # Every seed, every mode: a smaller init takes longer. The smallest measured increase per
    # decade (0.6, first mode) is three times the spread between seeds (0.2).
    assert np.all(np.diff(t, axis=0) > 0)
    slope, r2 = res["fit_slope"], res["fit_r2"]
    # Linear in log10(1/σ): r² ≥ 0.99 measured for each mode; 0.95 leaves room for seeds.
    assert np.all(r2 > 0.95)
    # The weaker the mode, the slower its escape: 0.76 < 2.1 < 30 time units per decade.
    assert 0 < slope[0] < slope[1] < slope[2]
    assert slope[2] > 5 * slope[1]


def test_results_folder_round_trip(results):
    out, res = results
    loaded = load_results(out)
    assert loaded.experiment == "learning_dynamics"
    assert loaded.config == TINY.to_dict()
    n_saves = len(loaded["ts"])
    assert loaded["loss"].shape == (3, 2, n_saves)
    assert loaded["progress"].shape == (3, 2, n_saves, 3)
    assert loaded["t_learn"].shape == (3, 2, 3)
    assert loaded["final_eigenvalues"].shape == (3, 2, 8)
    np.testing.assert_array_equal(loaded["scales"], TINY.scales)
    np.testing.assert_array_equal(loaded["t_learn"], res["t_learn"])
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert learning_dynamics.EXPERIMENT.headline(loaded.summary).startswith("modes learned")


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"scale": [1e-3]}, ValueError, "unknown config key"),
        ({"weights": [1.0, 0.5]}, ValueError, "weights"),
        ({"eigenvalues": [0.9, 0.9, 0.2]}, ValueError, "eigenvalues"),
        ({"parameterization": "dense"}, ValueError, "parameterization"),
        ({"threshold": 1.5}, ValueError, "threshold"),
        ({"scales": [0.0]}, ValueError, "scales"),
        ({"lr": "0.01"}, TypeError, "lr"),
    ],
)
def test_config_rejects_bad_values(values, error, match):
    with pytest.raises(error, match=match):
        learning_dynamics.LearningDynamicsConfig.from_dict(values)
