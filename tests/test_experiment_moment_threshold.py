"""The moment-threshold experiment (fact 3 on the science page), end to end at a tiny size
in float64."""

import numpy as np
import pytest

from rnnflow.experiments import load_results, moment_threshold, run_experiment

# One student size, the widest start (spectrum on [-0.9, 0.9]), three seeds: at k = 2d̂ = 2
# these students fit m0, m1 with a spread-out measure (relative extrapolation error ≈ 0.1–5);
# at k = 3 the measure must collapse onto the teacher's atom.
TINY = moment_threshold.MomentThresholdConfig(
    seeds=3, state_dims=(8,), init_radii=(0.9,), lr=0.1, t1=500.0, horizon=30
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("moment_threshold") / "x"
    return run_experiment(moment_threshold.EXPERIMENT, TINY, out=out), out


def test_threshold(results):
    res, _ = results
    s = res.summary
    assert s["diverged"] == 0
    # At k = 2d̂ + 1 the loss decays like 1/t² (stray weights like 1/t): at t = 500 it is
    # ~4e-7 and the extrapolation error ~1e-4 (2.4e-4 for the worst seed). 1e-3 leaves a
    # factor 4; a failure of the moment argument gives O(1).
    assert s["at_threshold"]["extrapolation_worst"] < 1e-3
    # At k = 2d̂ the same starts fit the loss to ~0 (float64) and extrapolate badly
    # (0.13–4.7 here); 1e-2 leaves a factor 10.
    assert s["below_threshold"]["loss"] < 1e-12
    assert s["below_threshold"]["extrapolation"] > 1e-2
    # The mass sits on the teacher's atom at the threshold, spread out below it.
    assert s["at_threshold"]["spread"] < 0.1 < s["below_threshold"]["spread"]
    # Balanced starts stay balanced: Q = 0 is conserved up to rounding.
    assert s["max_relative_imbalance"] < 1e-10


def test_lobatto_counterexample(results):
    res, _ = results
    c = res.summary["counterexample"]
    # ½δ0 + ½δ1 against δ_{1/2}: m0 and m1 agree exactly, m2 differs by 1/4, and h_i = 1/2
    # for all i ≥ 1, so the relative error to q = 30 is Σ(½ − 2^-i)² / Σ 4^-i ≈ 79.
    assert c["loss"] < 1e-12
    assert c["loss_at_threshold"] == pytest.approx(0.0625)
    tail = sum((0.5 - 0.5**i) ** 2 for i in range(2, 30)) / sum(0.25**i for i in range(2, 30))
    assert c["extrapolation"] == pytest.approx(tail, rel=1e-9)
    assert c["imbalance"] == 0
    np.testing.assert_allclose(c["nodes"], [0.0, 1.0])
    np.testing.assert_allclose(c["weights"], [0.5, 0.5])


@pytest.mark.parametrize(
    "eigenvalues, weights, interval",
    [((0.8, -0.5), (1.0, 0.5), (-1.0, 1.0)), ((0.95, 0.6, -0.5), (1.0, 0.4, 0.15), (-0.9, 1.0))],
)
def test_lobatto_measure_matches_moments(eigenvalues, weights, interval):
    """The constructed measure shares m_0 … m_{2d̂−1} with the teacher and differs at m_{2d̂}."""
    nodes, w = moment_threshold.lobatto_measure(eigenvalues, weights, interval)
    n = len(eigenvalues)
    assert nodes.size == n + 1 and np.all(w > 0)
    assert nodes[0] == interval[0] and nodes[-1] == interval[1]
    lam, p = np.asarray(eigenvalues), np.asarray(weights)
    moments = lambda x, v, i: np.sum(v * x**i)  # noqa: E731
    for i in range(2 * n):
        assert moments(nodes, w, i) == pytest.approx(moments(lam, p, i), abs=1e-12)
    assert abs(moments(nodes, w, 2 * n) - moments(lam, p, 2 * n)) > 1e-3


def test_measure_spread():
    # ½δ0 + ½δ1 around the atom 1/2: every unit of mass sits 1/2 away. Padding (NaN, weight 0)
    # is ignored, and a measure on the teacher's atoms has spread 0.
    lam = np.array([[0.0, 1.0, np.nan], [0.5, 0.5, np.nan]])
    w = np.array([[0.5, 0.5, 0.0], [0.3, 0.7, 0.0]])
    np.testing.assert_allclose(moment_threshold.measure_spread(lam, w, (0.5,)), [0.5, 0.0])


def test_results_load_back(results):
    res, out = results
    loaded = load_results(out)
    assert loaded.experiment == "moment_threshold" and loaded.config == TINY.to_dict()
    ds = loaded["sweep"]
    assert ds.extrapolation.dims == ("state_dim", "init_radius", "train_len", "seed", "time")
    assert list(ds.train_len.values) == [2, 3]
    # The learned measure of every seed at every save: d = 8 eigenvalues whose weights sum
    # to h_0 = C B, the first lag of the impulse response.
    assert ds.measure_weights.shape == (1, 1, 2, 3, 41, 8)
    np.testing.assert_allclose(
        ds.measure_weights.sum("measure_weights_0").values, ds.impulse.values[..., 0], rtol=1e-9
    )


def test_config_errors():
    with pytest.raises(ValueError, match="init_radius"):
        moment_threshold.MomentThresholdConfig.from_dict({"init_radius": [0.5]})
    with pytest.raises(ValueError, match="lobatto_interval"):
        moment_threshold.MomentThresholdConfig(eigenvalues=(0.5,), lobatto_interval=(0.6, 1.0))
    with pytest.raises(ValueError, match="weights"):
        moment_threshold.MomentThresholdConfig(weights=(-1.0,))
    with pytest.raises(ValueError, match="horizon"):
        moment_threshold.MomentThresholdConfig(horizon=3)
