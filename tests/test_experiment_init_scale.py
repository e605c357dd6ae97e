"""The init-scale experiment (fact 5 on the science page) end to end at a tiny size in
float64, and the results folder it writes: labelled stores, a nested summary, never
overwritten."""

import json

import jax
import numpy as np
import pytest
import xarray as xr

import rnnflow as rf
from rnnflow._engine import blocks as _blocks
from rnnflow._sweeps import store as _store
from rnnflow._sweeps import sweep as _sweep
from rnnflow.experiments import Summary, init_scale, load_results, run_experiment

TINY = init_scale.InitScaleConfig(
    seeds=3,
    parameterizations=("dense",),
    teachers=("short",),
    state_dim=12,
    scales=(1e-2, 0.3, 3.0),  # 3.0: spectral radius ≈ 3·√12 ≈ 10, gradient descent diverges
    t1=400.0,
    loss_below=1e-12,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("init_scale") / "run"
    return out, run_experiment(init_scale.EXPERIMENT, TINY, out=out)


def test_small_init_extrapolates_large_init_does_not(results):
    _, res = results
    s = res.summary["dense"]["short"]
    # Small init: near-exact extrapolation of 0.9^i to q = 50 once the loss is ~1e-12.
    # Large init (entry scale 0.3, spectral radius ≈ 0.3·√12 ≈ 1): errors of order one.
    # Margins of ~3 decades on either side of 1e-2.
    assert s["extrapolation"]["small_init"] < 1e-4
    assert s["extrapolation"]["large_init"] > 1e-1
    # Small init learns the teacher's one-dimensional state space; large init does not.
    assert s["dim"]["small_init"] == 1
    assert s["dim"]["large_init"] > 2
    # σ = 3 diverges in every seed: it is counted, and "large init" is the largest scale
    # that trained, with its values.
    assert s["diverged_by_scale"] == [0, 0, 3] and res.summary["diverged"] == 3
    assert (s["small_scale"], s["large_scale"]) == (1e-2, 0.3)
    assert s["extrapolation"]["large_init"] == s["extrapolation"]["by_scale"][1]
    assert np.isnan(s["extrapolation"]["by_scale"][2])
    # Both fit the training lags: from a loss of ≈ 3.4 (Σ 0.81ⁱ, i < 5, at zero) to below 1e-8.
    assert s["loss"]["small_init"] < 1e-8 and s["loss"]["large_init"] < 1e-8
    assert "(σ = 0.3)" in res.summary.headline


def test_a_point_where_every_scale_diverges_is_named_not_compared(results):
    _, res = results
    ds = res["sweep"].sel(init_scale=[3.0])
    config = TINY.replace(scales=(3.0,))
    summary = init_scale.analyse({"sweep": ds}, config)
    cell = summary["dense"]["short"]
    assert np.isnan(cell["large_scale"]) and np.isnan(cell["extrapolation"]["large_init"])
    assert summary.headline.endswith("dense/short: diverged at every scale")


def test_results_are_labelled_and_load_back(results):
    out, res = results
    loaded = load_results(out)
    assert loaded.experiment == "init_scale" and loaded.config == TINY.to_dict()
    assert loaded.float64 is True
    ds = loaded["sweep"]
    assert ds.extrapolation.dims == ("parameterization", "teacher", "init_scale", "seed", "time")
    assert list(ds.init_scale.values) == [1e-2, 0.3, 3.0] and list(ds.seed.values) == [0, 1, 2]
    assert ds.time.size == TINY.num_saves and ds.time.values[0] == 0.0
    assert ds.result.dims == ("parameterization", "teacher", "init_scale", "seed")
    # The summary is the nested tree of the run, typed (integers stay integers).
    assert loaded.summary == res.summary and isinstance(loaded.summary, Summary)
    assert isinstance(loaded.summary["diverged"], int)
    assert loaded.summary.headline.startswith("median relative extrapolation error")
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "summary.json").read_text())
    assert meta["float64"] is True and meta["sweeps"] == ["sweep"] and meta["versions"]["jax"]


def test_final_values_are_those_of_a_separate_run(results):
    # Ground truth: seed 2 of the large scale trained alone by `train`, with the same key.
    _, res = results
    ds = res["sweep"].sel(parameterization="dense", teacher="short", init_scale=0.3, seed=2)
    (sweep,) = init_scale.sweeps(TINY).values()
    key = jax.random.split(sweep.key, TINY.seeds)[2]
    point = {"parameterization": "dense", "teacher": "short", "init_scale": 0.3}
    traj = rf.train(*sweep.setup(point, key), save=sweep.save, stop=sweep.stop)
    np.testing.assert_allclose(ds.extrapolation.values, traj.metrics["extrapolation"], rtol=1e-8)
    assert int(ds.result) == int(traj.result)


def test_rerun_does_no_work_and_other_runs_are_refused(results, monkeypatch):
    out, _ = results
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was computed again")

    monkeypatch.setattr(_sweep, "run_sweep", fail)
    run_experiment("init_scale", TINY, out=out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    with pytest.raises(FileExistsError, match="another config"):
        run_experiment("init_scale", TINY.replace(seeds=4), out=out)
    with pytest.raises(FileExistsError, match="another experiment"):
        run_experiment("nonlinear", rf.experiments.get_experiment("nonlinear").small, out=out)
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


@pytest.mark.slow
def test_gradient_flow_variant_runs_and_fits(tmp_path):
    # The same sweep through diffrax instead of optax: every seed fits the training lags.
    config = TINY.replace(method="gf", parameterizations=("diagonal",), state_dim=6, t1=100.0)
    ds = run_experiment("init_scale", config, out=tmp_path / "gf")["sweep"]
    assert np.all(ds.result.values <= rf.Result.converged)
    loss = ds.loss.values
    assert np.all(loss[..., -1] < 1e-4 * loss[..., 0])


def test_interrupted_experiment_resumes_to_identical_results(tmp_path, monkeypatch):
    config = init_scale.InitScaleConfig(
        seeds=2,
        parameterizations=("diagonal",),
        teachers=("short", "long"),
        state_dim=5,
        scales=(0.01, 0.3),
        t1=20.0,
    )

    class Interrupted(Exception):
        pass

    # Killed right after the first unit of work (one teacher at one scale) is written.
    real_mark = _store.Store.mark_done

    def mark_then_die(self, unit, *args):
        real_mark(self, unit, *args)
        raise Interrupted

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(_store.Store, "mark_done", mark_then_die)
        with pytest.raises(Interrupted):
            run_experiment("init_scale", config, out=out)
    assert (out / "run.json").exists() and not (out / "summary.json").exists()
    with pytest.raises(FileNotFoundError, match="unfinished run"):
        load_results(out)
    # Another config into the unfinished folder is refused.
    with pytest.raises(FileExistsError, match="unfinished run"):
        run_experiment("init_scale", config.replace(seeds=3), out=out)

    trained = []
    real_block = _blocks._block_jit

    def counting(*args, **kwargs):
        trained.append(1)
        return real_block(*args, **kwargs)

    counting.lower = real_block.lower  # lowering (to look for LAPACK calls) computes nothing
    monkeypatch.setattr(_blocks, "_block_jit", counting)
    resumed = run_experiment("init_scale", config, out=out)
    # The other scale of the "short" teacher, then the "long" teacher (one call each).
    assert len(trained) == 2
    whole = run_experiment("init_scale", config, out=tmp_path / "whole")
    xr.testing.assert_identical(resumed["sweep"].load(), whole["sweep"].load())
    assert resumed.summary == whole.summary
