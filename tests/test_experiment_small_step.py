"""The small-step experiment (DESIGN facts 1 and 2), end to end at a tiny size in float64."""

import numpy as np
import pytest

from rnnflow.experiments import load_results, run_experiment, small_step

# Two step sizes are enough for a slope in float64, where the GD errors (1e-2 … 1e-4) are far
# above rounding and the reference flows are solved to rtol 1e-8. The dense part keeps the two
# step sizes on either side of 2/sharpness ≈ 2/46.3 ≈ 0.0432 of the flow's solution.
TINY = small_step.SmallStepConfig(
    seeds=2,
    state_dim=6,
    t1=2.0,
    num_saves=2,
    lrs=(0.02, 0.01),
    dense_seeds=2,
    dense_lrs=(0.05, 0.04),
    dense_t1=4000.0,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("small_step") / "x"
    return run_experiment(small_step.EXPERIMENT, TINY, out=out), out


def test_convergence_orders(results):
    res, _ = results
    s = res.summary
    assert s["gd_diverged"] == 0 and s["flow_failed"] == 0
    # Asymptotic orders: GD → GF first order, GD → modified flow second order, and the
    # conserved Q drifts at first order. At SMALL (float32, 3 step sizes) every seed's slope is
    # within 0.05 of 1, 2, 1; the margins allow for pre-asymptotic terms at η = 0.02.
    assert np.all(np.abs(res["slope_gd_gf"] - 1) < 0.2)
    assert np.all(np.abs(res["slope_modified_gd"] - 2) < 0.3)
    assert np.all(np.abs(res["slope_drift"] - 1) < 0.2)
    # The flow conserves Q up to the solver tolerance: far below GD's O(η) drift.
    assert s["gf_drift_max"] < 1e-3 * s["gd_drift_smallest_lr"]


def test_finite_step_size_dense(results):
    res, _ = results
    s = res.summary
    # η = 0.04 < 2/46.3: GD reaches the flow's balanced rank-1 solution, which extrapolates.
    assert s["dense/lr=0.04/extrapolation"] < 1e-6
    assert s["dense/lr=0.04/sharpness"] == pytest.approx(46.3, rel=0.02)
    assert s["dense/lr=0.04/radius"] == pytest.approx(0.9, abs=1e-3)
    # η = 0.05 > 2/46.3: it cannot; it settles (edge of stability, sharpness → 2/η = 40) on a
    # solution with |λ| ≈ 1.5 that fits the training lags and explodes beyond them.
    assert np.all(res["dense_loss"][0] < 1e-6)
    assert s["dense/lr=0.05/extrapolation"] > 1e6
    assert s["dense/lr=0.05/sharpness"] < 2 / 0.05 + 0.5
    assert s["dense/lr=0.05/radius"] > 1.2


def test_results_load_back(results):
    res, out = results
    loaded = load_results(out)
    assert loaded.experiment == "small_step"
    assert (out / "figure.png").stat().st_size > 0
    assert loaded["gd_gf_distance"].shape == (2, 2, 2)  # (step sizes, seeds, save times)
    assert loaded["slope_gd_gf"].shape == (2, 2)  # (seeds, save times)
    assert loaded["dense_extrapolation"].shape == (2, 2)  # (dense step sizes, seeds)
    np.testing.assert_allclose(loaded["ts"], [1.0, 2.0])
    np.testing.assert_allclose(loaded["lrs"], TINY.lrs)
    assert loaded.config == TINY.to_dict()


def test_fit_slope():
    lrs = np.array([0.04, 0.02, 0.01])
    errors = np.stack([3 * lrs, 5 * lrs**2], axis=1)  # (step sizes, 2)
    np.testing.assert_allclose(small_step.fit_slope(lrs, errors), [1.0, 2.0])
    # Non-finite entries (failed runs) are left out; fewer than two points give NaN.
    errors[0, 0], errors[1:, 1] = np.nan, np.nan
    slopes = small_step.fit_slope(lrs, errors)
    assert slopes[0] == pytest.approx(1.0) and np.isnan(slopes[1])


def test_config_errors():
    with pytest.raises(ValueError, match="lr"):
        small_step.SmallStepConfig.from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match="lrs"):
        small_step.SmallStepConfig(t1=1.0, num_saves=3, lrs=(0.04, 0.02))  # 1/3 ≠ n × 0.04
    with pytest.raises(ValueError, match="lrs"):
        small_step.SmallStepConfig(lrs=(0.01,))
    with pytest.raises(ValueError, match="teacher"):
        small_step.SmallStepConfig(teacher="nope")
