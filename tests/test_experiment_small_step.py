"""The small-step experiment (facts 1 and 2 on the science page), end to end at a tiny
size in float64."""

import numpy as np
import pytest
import xarray as xr

from rnnflow.experiments import _common, load_results, run_experiment, small_step

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
    # conserved Q drifts at first order; every seed at every save time. At SMALL (float32, 3
    # step sizes) every seed's slope is within 0.05 of 1, 2, 1; the margins allow for
    # pre-asymptotic terms at η = 0.02.
    slopes = small_step.slopes(small_step.distances(res.data, TINY))
    assert slopes["gd_gf"].shape == (2, 2)  # (seeds, save times)
    assert np.all(np.abs(slopes["gd_gf"] - 1) < 0.2)
    assert np.all(np.abs(slopes["modified_gd"] - 2) < 0.3)
    assert np.all(np.abs(slopes["drift"] - 1) < 0.2)
    # The flow conserves Q up to the solver tolerance: far below GD's O(η) drift.
    assert s["gf_drift_max"] < 1e-3 * s["smallest_lr"]["drift"]


def test_finite_step_size_dense(results):
    res, _ = results
    d = res.summary["dense"]
    assert d["lrs"] == [0.05, 0.04] and d["diverged"] == 0
    # η = 0.04 < 2/46.3: GD reaches the flow's balanced rank-1 solution, which extrapolates.
    assert d["extrapolation"][1] < 1e-6
    assert d["sharpness"][1] == pytest.approx(46.3, rel=0.02)
    assert d["radius"][1] == pytest.approx(0.9, abs=1e-3)
    # η = 0.05 > 2/46.3: it cannot; it settles (edge of stability, sharpness → 2/η = 40) on a
    # solution with |λ| ≈ 1.5 that fits the training lags and explodes beyond them.
    assert d["loss_max"][0] < 1e-6
    assert d["extrapolation"][0] > 1e6
    assert d["sharpness"][0] < 2 / 0.05 + 0.5
    assert d["radius"][0] > 1.2


def test_stores_share_the_starts_and_load_back(results):
    res, out = results
    loaded = load_results(out)
    assert set(loaded.data) == {"flow", "steps", "dense"} and loaded.config == TINY.to_dict()
    steps, flow = loaded["steps"], loaded["flow"]
    assert steps.theta.dims == ("algorithm", "lr", "seed", "time", "theta_0")
    # Seed s starts from one point in every store: θ(0) is the same for the flow, GD at
    # every η and the modified flows.
    theta0 = flow.theta.isel(rtol=0, time=0)
    xr.testing.assert_equal(
        steps.theta.isel(time=0).reset_coords(drop=True),
        theta0.reset_coords(drop=True).broadcast_like(steps.theta.isel(time=0)),
    )
    np.testing.assert_allclose(steps.t.sel(algorithm="gd").values[..., 1:], [[1.0, 2.0]] * 2)


def test_fit_line():
    lrs = xr.DataArray([0.04, 0.02, 0.01], dims="lr")
    errors = xr.concat([3 * lrs, 5 * lrs**2], "series")
    slope, intercept, r2 = _common.fit_line(np.log(lrs), np.log(errors), "lr")
    np.testing.assert_allclose(slope, [1.0, 2.0])
    np.testing.assert_allclose(np.exp(intercept), [3.0, 5.0])
    np.testing.assert_allclose(r2, [1.0, 1.0])
    # Non-finite entries (failed runs) are left out; fewer than two points give NaN.
    errors[0, 0], errors[1, 1:] = np.nan, np.nan
    slope, _, _ = _common.fit_line(np.log(lrs), np.log(errors), "lr")
    assert slope[0] == pytest.approx(1.0) and np.isnan(slope[1])


def test_config_errors():
    with pytest.raises(ValueError, match="lr"):
        small_step.SmallStepConfig.from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match="lrs"):
        small_step.SmallStepConfig(t1=1.0, num_saves=3, lrs=(0.04, 0.02))  # 1/3 ≠ n × 0.04
    with pytest.raises(ValueError, match="lrs"):
        small_step.SmallStepConfig(lrs=(0.01,))
    with pytest.raises(ValueError, match="teacher"):
        small_step.SmallStepConfig(teacher="nope")
