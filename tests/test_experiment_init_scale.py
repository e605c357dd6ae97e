import dataclasses
import json

import numpy as np
import pytest

import rnnflow as rf
from rnnflow.experiments import init_scale, load_results, run_experiment

TINY = init_scale.InitScaleConfig(
    seeds=3,
    parameterizations=("dense",),
    teachers=("short",),
    state_dim=12,
    scales=(1e-2, 0.3),
    t1=400.0,
    loss_below=1e-12,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("init_scale") / "run"
    return out, run_experiment(init_scale.EXPERIMENT, TINY, out=out)


def test_small_init_extrapolates_large_init_does_not(results):
    _, res = results
    s = res.summary
    # Small init: near-exact extrapolation of 0.9^i to q = 50 once the loss is ~1e-12.
    # Large init (entry scale 0.3, spectral radius ≈ 0.3·√12 ≈ 1): errors of order one, the
    # DESIGN's "sharpest contrast". Margins of ~3 decades on either side of 1e-2.
    assert s["dense/short/extrapolation_smallest_scale"] < 1e-4
    assert s["dense/short/extrapolation_largest_scale"] > 1e-1
    # Small init learns the teacher's one-dimensional state space; large init does not.
    assert s["dense/short/dim_smallest_scale"] == 1
    assert s["dense/short/dim_largest_scale"] > 2
    assert s["diverged"] == 0


def test_results_folder_round_trip(results):
    out, res = results
    loaded = load_results(out)
    assert loaded.experiment == "init_scale"
    assert loaded.config == TINY.to_dict()
    assert loaded["extrapolation"].shape == (1, 1, 2, 3)
    n = TINY.num_saves
    assert loaded["ts"].shape == (n,) and loaded["loss_curve"].shape == (1, 1, 2, 3, n)
    # The curves end where the final values are taken (the last save is at t1 or the stop).
    np.testing.assert_array_equal(loaded["loss_curve"][..., -1], loaded["loss"])
    np.testing.assert_array_equal(loaded["extrapolation"], res["extrapolation"])
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta["seed_keys"]) == 2 * 3 and meta["versions"]["jax"]


def test_rerun_does_no_work_and_overwrites_nothing(results):
    out, _ = results
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def fail(*args):
        raise AssertionError("a finished run was computed again")

    run_experiment(dataclasses.replace(init_scale.EXPERIMENT, run=fail), TINY, out=out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    with pytest.raises(FileExistsError, match="different config"):
        run_experiment("init_scale", TINY.replace(seeds=4), out=out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"sedes": 3}, ValueError, "unknown config key"),
        ({"seeds": "3"}, TypeError, "seeds"),
        ({"seeds": 0}, ValueError, "seeds"),
        ({"scales": [1e-3, -1.0]}, ValueError, "scales"),
        ({"scales": [float("nan")]}, ValueError, "scales"),
        ({"parameterizations": ["lstm"]}, ValueError, "parameterizations"),
        ({"method": "adam"}, ValueError, "method"),
        ({"horizon": 3}, ValueError, "horizon"),
        ({"lr": True}, TypeError, "lr"),
    ],
)
def test_config_rejects_bad_values(values, error, match):
    with pytest.raises(error, match=match):
        init_scale.InitScaleConfig.from_dict(values)


def test_results_as_xarray(results):
    xr = pytest.importorskip("xarray")
    out, res = results
    ds = load_results(out).to_xarray()
    assert isinstance(ds, xr.Dataset)
    np.testing.assert_array_equal(ds["extrapolation"].values, res["extrapolation"])
    assert json.loads(ds.attrs["metadata"])["experiment"] == "init_scale"


def test_gradient_flow_variant_runs_and_fits(tmp_path):
    # The same sweep through diffrax instead of optax: every seed fits the training lags.
    config = TINY.replace(method="gf", parameterizations=("diagonal",), state_dim=6, t1=100.0)
    res = run_experiment("init_scale", config, out=tmp_path / "gf")
    assert np.all(res["result"] <= rf.Result.converged)
    assert np.all(res["loss"] < 1e-4 * res["loss_curve"][..., 0])
