"""The non-linear experiment: a tanh student extrapolates from small init, not from large.

Runs a tiny float64 sweep (d = 12, two seeds at σ = 1e-2 and 0.5, 64 training sequences,
to t = 100, test length q = 60) once for the module; the numbers quoted in the comments are
from that run.
"""

import jax
import numpy as np
import pytest

import rnnflow as rf
from rnnflow.experiments import load_results, nonlinear, run_experiment

TINY = nonlinear.NonlinearConfig(
    seeds=2,
    state_dim=12,
    scales=(1e-2, 0.5),
    num_sequences=64,
    lr=0.025,
    t1=100.0,
    num_saves=10,
    horizon=60,
    num_test=64,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("nonlinear") / "x"
    return out, run_experiment(nonlinear.EXPERIMENT, TINY, out=out)


def test_small_init_extrapolates_large_init_does_not(results):
    _, res = results
    s = res.summary
    assert s["failed"] == 0
    # Both fit the training length: relative error at step k of 3e-3 (small) and 1.9e-2
    # (large) on fresh sequences.
    assert s["fit_error"]["small_init"] < 0.05 and s["fit_error"]["large_init"] < 0.05
    # At q = 60 ≫ k = 5 the small init is off by 4e-2 of the teacher's output power, the
    # large one by 3.4: thresholds 0.1 and 0.5 leave a factor 2.5 on either side, and every
    # small-init seed beats every large-init seed by more than 10×.
    ext = nonlinear.final(res["sweep"], "extrapolation").values  # (scale, seed)
    assert s["extrapolation"]["small_init"] < 0.1
    assert s["extrapolation"]["large_init"] > 0.5
    assert ext[0].max() * 10 < ext[1].min()


def test_small_init_learns_a_low_dimensional_state_space(results):
    _, res = results
    dim = nonlinear.effective_dim(res["sweep"], TINY).values
    # The teacher's state space is one-dimensional; tanh bends it, adding components along
    # u∘u∘u, ... of relative size ~4e-2 and ~3e-3 (see the module docstring), so 3 is
    # measured at tolerance 1e-3. The large init spreads its states over all 12 directions.
    assert np.all(dim[0] <= 4)
    assert np.all(dim[1] >= 10)


def test_singular_values_are_those_of_the_hidden_states(results):
    # Ground truth: numpy's SVD of seed 1's final hidden states on the test sequences.
    _, res = results
    ds = res["sweep"].sel(init_scale=0.5, seed=1)
    (sweep,) = nonlinear.sweeps(TINY).values()
    key = jax.random.split(sweep.key, TINY.seeds)[1]
    traj = rf.train(*sweep.setup({"init_scale": 0.5}, key), save=sweep.save)
    test_key = jax.random.split(jax.random.fold_in(jax.random.key(TINY.seed), 1))[1]
    xt = TINY.input_scale * jax.random.normal(test_key, (TINY.num_test, TINY.horizon, 1))
    states = jax.vmap(rf.TanhRNN(12).states, in_axes=(None, 0))(traj.final, xt)
    s = np.linalg.svd(np.asarray(states).reshape(-1, 12), compute_uv=False)
    np.testing.assert_allclose(ds.singular_values.isel(time=-1).values, s / s[0], rtol=1e-6)


def test_singular_values_memory_grows_with_the_states_only():
    # At the default config's size (5 scales × 8 seeds, 256 test sequences of 100 steps,
    # d = 20) the states of all seeds are 164 MB in float64. An SVD of the tall states
    # matrix, batched over seeds, compiled to 210 GB of scratch memory on the CPU (a square
    # workspace by the long side); through the d × d triangular factor it is 2× the states.
    model, seeds, shape = rf.TanhRNN(20), 40, (256, 100, 1)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), seeds), scale=0.1)
    xt = jax.random.normal(jax.random.key(1), shape)
    fn = jax.jit(jax.vmap(lambda p: nonlinear.state_singular_values(model, p, xt)))
    temp = fn.lower(params).compile().memory_analysis().temp_size_in_bytes
    states = seeds * shape[0] * shape[1] * model.state_dim * xt.dtype.itemsize
    assert temp <= 4 * states


def test_results_folder_round_trip(results):
    out, res = results
    loaded = load_results(out)
    assert loaded.experiment == "nonlinear" and loaded.config == TINY.to_dict()
    ds = loaded["sweep"]
    assert ds.loss.dims == ("init_scale", "seed", "time") and ds.loss.shape == (2, 2, 10)
    assert ds.singular_values.shape == (2, 2, 10, 12)
    assert "small init" in loaded.summary.headline


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"input_scal": 0.5}, ValueError, "unknown config key"),
        ({"teacher": "lorenz"}, ValueError, "teacher"),
        ({"supervise": "first"}, ValueError, "supervise"),
        ({"horizon": 5}, ValueError, "horizon"),
        ({"dim_rtol": 0.0}, ValueError, "dim_rtol"),
        ({"input_scale": -1.0}, ValueError, "input_scale"),
        ({"num_sequences": 2.5}, TypeError, "num_sequences"),
    ],
)
def test_config_rejects_bad_values(values, error, match):
    with pytest.raises(error, match=match):
        nonlinear.NonlinearConfig.from_dict(values)
