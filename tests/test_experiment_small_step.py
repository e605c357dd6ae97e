"""The small-step experiment (facts 1 and 2 on the science page), end to end at a tiny
size in float64."""

import numpy as np
import pytest
import xarray as xr

from rnnflow.experiments import _stats, load_results, run_experiment, small_step

# Two step sizes are enough for a slope in float64, where the GD errors (1e-2 … 1e-4) are far
# above rounding and the reference flows are solved to rtol 1e-8.
TINY = small_step.SmallStepConfig(seeds=2, state_dim=6, t1=2.0, num_saves=2, lrs=(0.02, 0.01))


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


def test_stores_share_the_starts_and_load_back(results):
    res, out = results
    loaded = load_results(out)
    assert set(loaded.data) == {"flow", "steps"} and loaded.config == TINY.to_dict()
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
    slope, intercept, r2 = _stats.fit_line(np.log(lrs), np.log(errors), "lr")
    np.testing.assert_allclose(slope, [1.0, 2.0])
    np.testing.assert_allclose(np.exp(intercept), [3.0, 5.0])
    np.testing.assert_allclose(r2, [1.0, 1.0])
    # Non-finite entries (failed runs) are left out; fewer than two points give NaN.
    errors[0, 0], errors[1, 1:] = np.nan, np.nan
    slope, _, _ = _stats.fit_line(np.log(lrs), np.log(errors), "lr")
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
