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
    # In weight order in every seed: median times ≈ 1.4 / 3.4 / 38 at σ = 1e-2 and
    # 2.9 / 8.3 / 98 at σ = 1e-4, a factor ≥ 2.4 between successive modes.
    t = learning_dynamics.times(res["sweep"], TINY)  # (scale, seed, mode), decreasing weight
    assert t.dims == ("init_scale", "seed", "mode")
    assert np.all(t.diff("mode") > 0)
    assert s["in_order_fraction"] == 1.0


def test_plateaus_grow_linearly_in_log_inverse_scale(results):
    _, res = results
    t = learning_dynamics.times(res["sweep"], TINY)
    # Every seed, every mode: a smaller init takes longer. The smallest measured increase per
    # decade (0.76, first mode) is three times the spread between seeds.
    assert np.all(t.diff("init_scale") > 0)
    modes = [res.summary["modes"][f"mode{m}"] for m in range(3)]
    slope = [m["slope_per_decade"] for m in modes]
    # Linear in log10(1/σ): r² ≥ 0.999 measured for each mode; 0.95 leaves room for seeds.
    assert all(m["r2"] > 0.95 for m in modes)
    # The weaker the mode, the slower its escape: 0.76 < 2.4 < 30 time units per decade.
    assert 0 < slope[0] < slope[1] < slope[2]
    assert slope[2] > 5 * slope[1]


def test_time_to_learn_ignores_transits():
    ts = np.arange(6.0)
    progress = np.array([[0.0, 0.7, 0.2, 0.4, 0.6, 0.9], [0.0, 0.1, 0.2, 0.3, 0.4, 0.4]])
    # The first crossing (t = 1) is a transit; the lasting one is between t = 3 and 4.
    np.testing.assert_allclose(learning_dynamics.time_to_learn(ts, progress, 0.5), [3.5, np.nan])


def test_results_folder_round_trip(results):
    out, res = results
    loaded = load_results(out)
    assert loaded.experiment == "learning_dynamics" and loaded.config == TINY.to_dict()
    ds = loaded["sweep"]
    assert ds.progress.dims == ("init_scale", "seed", "time", "progress_0")
    assert ds.progress.shape == (3, 2, 80, 3)
    assert ds.measure_eigenvalues.shape == (3, 2, 80, 8)
    assert loaded.summary.headline.startswith("modes learned")


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"scale": [1e-3]}, ValueError, "unknown config key"),
        ({"weights": [1.0, 0.5]}, ValueError, "weights"),
        ({"eigenvalues": [0.9, 0.9, 0.2]}, ValueError, "eigenvalues"),
        ({"parameterization": "dense"}, ValueError, "parameterization"),
        ({"threshold": 1.5}, ValueError, "threshold"),
        ({"scales": [0.0]}, ValueError, "scales"),
        ({"train_len": 6}, ValueError, "`train_len` must be at least 2 × 3 modes \\+ 1 = 7"),
        ({"lr": "0.01"}, TypeError, "lr"),
    ],
)
def test_config_rejects_bad_values(values, error, match):
    with pytest.raises(error, match=match):
        learning_dynamics.LearningDynamicsConfig.from_dict(values)
