"""The lazy-rich experiment end to end at a tiny size in float64: centered students, the
kernel change against the init scale, the real run beside its linearization, and the
reported 10% crossing."""

import warnings

import numpy as np
import pytest

from rnnflow.experiments import Summary, lazy_rich, load_results, run_experiment
from rnnflow.experiments._stats import final

TINY = lazy_rich.LazyRichConfig(
    seeds=3,
    parameterizations=("diagonal",),
    state_dim=10,
    scales=(0.01, 0.3, 3.0),
    t1=50.0,
    num_saves=6,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("lazy_rich") / "run"
    return out, run_experiment(lazy_rich.EXPERIMENT, TINY, out=out)


def test_both_runs_start_together(results):
    _, res = results
    start = res["sweep"].isel(time=0)
    assert np.all(start.kernel_change.values == 0) and np.all(start.parameter_change.values == 0)
    # Centered, both output exactly zero at the start: relative extrapolation error 1.
    assert np.all(start.extrapolation.values == 1) and np.all(start.linear_extrapolation == 1)


def test_kernel_moves_less_from_large_init(results):
    _, res = results
    assert res.summary["diverged"] == 0 and res.summary["failed"] == 0
    change = final(res["sweep"], "kernel_change").sel(parameterization="diagonal")
    small, mid, large = (change.sel(init_scale=s).values for s in TINY.scales)
    # Per seed: from σ = 0.01 the kernel grows far beyond its tiny initial size (rich); the
    # centered student from σ = 3 moves it by well under its own size (lazy).
    assert np.all(small > 10) and np.all(large < 0.1) and np.all((large < mid) & (mid < small))
    s = res.summary["diagonal"]["kernel_change"]
    assert s["large_init"] < s["small_init"] and len(s["by_scale"]) == 3


def test_real_and_linearized_part_at_small_scale(results):
    _, res = results
    s = res.summary["diagonal"]
    real, lin = s["extrapolation"], s["linear_extrapolation"]
    # From σ = 0.01 the kernel at initialization is ~σ⁴ small: in t = 50 the linearized
    # model predicts almost nothing beyond training (relative error 1), while the real run
    # learns the teacher's mode.
    assert abs(lin["small_init"] - 1) < 1e-3 and real["small_init"] < 0.1
    gap = [abs(np.log(real[k] / lin[k])) for k in ("small_init", "large_init")]
    assert gap[0] > gap[1]


def test_state_space_is_low_dimensional_where_the_kernel_moved(results):
    _, res = results
    dim = final(res["sweep"], "dim").sel(parameterization="diagonal")
    # The teacher has one mode: from σ = 0.01 the student's Hankel rank stays near it, far
    # below d = 10 (measured 2, 3, 2 at t = 50).
    assert np.all(dim.sel(init_scale=0.01).values <= 3)


def test_crossing_by_log_interpolation():
    scales = [0.01, 0.1, 1.0]
    change = np.array([[10.0, 1000.0, 0.05], [1.0, 0.01, 0.01], [0.01, 0.01, 0.001]])
    # Seed 0: from 1 to 0.01 between σ = 0.1 and 1, halfway in logs: σ = 10^-0.5.
    # Seed 1: from 10³ to 10⁻² between σ = 0.01 and 0.1, four fifths of the way in logs.
    # Seed 2: never at or above the threshold.
    got = lazy_rich.crossing(change, scales, 0.1)
    np.testing.assert_allclose(got[:2], [10**-0.5, 10**-1.2], rtol=1e-12)
    assert np.isnan(got[2])
    # A non-finite neighbour (a failed seed) is no crossing.
    assert np.isnan(lazy_rich.crossing([[1.0], [np.nan], [0.01]], scales, 0.1)[0])
    # A kernel that does not move at all (change 0) crossed: at the scale before, the
    # limit of the interpolation, with no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = lazy_rich.crossing([[1.0], [0.5], [0.0]], scales, 0.1)
    assert got[0] == pytest.approx(0.1, rel=1e-12)


def test_reported_crossing_is_in_range_or_nan(results):
    _, res = results
    c = res.summary["diagonal"]["crossing"]
    change = final(res["sweep"], "kernel_change").sel(parameterization="diagonal")
    per_seed = lazy_rich.crossing(
        change.transpose("init_scale", "seed").values, TINY.scales, TINY.threshold
    )
    # Centered, every seed crosses, between σ = 0.3 and 3.
    assert c["crossed"] == TINY.seeds and np.all(np.isfinite(per_seed))
    assert 0.3 < c["q25"] <= c["median"] <= c["q75"] < 3.0
    assert c["median"] == pytest.approx(np.median(per_seed), rel=1e-12)
    assert [c["q25"], c["q75"]] == pytest.approx(np.percentile(per_seed, [25, 75]), rel=1e-12)


def test_headline_says_where_no_seed_crosses(results):
    # With a threshold below every seed's kernel change, none crosses: the headline names
    # the largest scale, not a NaN median.
    _, res = results
    summary = lazy_rich.analyse(res, TINY.replace(threshold=1e-12))
    assert summary["diagonal"]["crossing"]["crossed"] == 0
    assert "diagonal" in summary.headline and "not below by σ = 3 (0/3 seeds)" in summary.headline
    assert "nan" not in summary.headline
    assert "below at σ = " in res.summary.headline  # the run's own: every seed crosses


def test_results_load_back(results):
    out, res = results
    loaded = load_results(out)
    assert loaded.experiment == "lazy_rich" and loaded.config == TINY.to_dict()
    ds = loaded["sweep"]
    assert ds.kernel_change.dims == ("parameterization", "init_scale", "seed", "time")
    assert set(lazy_rich.FIELDS) <= set(ds.data_vars)
    assert isinstance(loaded.summary, Summary) and loaded.summary.headline.startswith(
        "median final kernel change from σ = 0.01 to 3"
    )
    assert isinstance(loaded.summary["diagonal"]["crossing"]["crossed"], int)
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"sedes": 3}, ValueError, "unknown config key"),
        ({"seeds": 0}, ValueError, "seeds"),
        ({"parameterizations": ["lstm"]}, ValueError, "parameterizations"),
        ({"teacher": "fast"}, ValueError, "teacher"),
        ({"scales": [0.1, 0.01]}, ValueError, "scales"),
        ({"scales": [0.1]}, ValueError, "scales"),
        ({"scales": [-0.1, 0.1]}, ValueError, "scales"),
        ({"horizon": 5}, ValueError, "horizon"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"num_saves": 1}, ValueError, "num_saves"),
        ({"method": "adam"}, ValueError, "method"),
        ({"lr": True}, TypeError, "lr"),
        ({"centered": 1}, TypeError, "centered"),
    ],
)
def test_config_rejects_bad_values(values, error, match):
    with pytest.raises(error, match=match):
        lazy_rich.LazyRichConfig.from_dict(values)
