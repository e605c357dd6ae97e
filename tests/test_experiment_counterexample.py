"""The shift-register counterexample (fact 4 on the science page), end to end at a tiny size
in float64."""

import numpy as np
import pytest

import rnnflow
from rnnflow.experiments import counterexample, load_results, run_experiment

# d = 8 ≥ k = 5, horizon 30 > d. GD from scale 1e-3 with lr 0.01 fits this teacher (0.9^i) to
# loss ~1e-9 by t ≈ 5; the last decades are slow (a Hessian eigenvalue ~1e-4 at the solution),
# reaching ~1e-12 by t1 = 100.
TINY = counterexample.CounterexampleConfig(seeds=3, state_dim=8, horizon=30, t1=100.0)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("counterexample") / "x"
    return run_experiment(counterexample.EXPERIMENT, TINY, out=out), out


def test_shift_register_fits_and_fails(results):
    res, _ = results
    s = res.summary
    # A shift register reproduces the training lags exactly (h_i = C_i): zero loss up to
    # rounding of the teacher's own ĥ_i.
    for name in counterexample.FREE_PARTS:
        assert s[name]["loss_max"] < 1e-12
    # Beyond k it says whatever its free part says, and beyond d it is zero: zeros miss the
    # whole tail (relative error exactly 1); even the teacher's own continuation misses
    # lags d ≤ i < q (exactly Σ_{8≤i<30} 0.81^i / Σ_{5≤i<30} 0.81^i).
    assert s["zeros"]["extrapolation"] == pytest.approx(1.0)
    tail = sum(0.81**i for i in range(8, 30)) / sum(0.81**i for i in range(5, 30))
    assert s["teacher"]["extrapolation"] == pytest.approx(tail, rel=1e-9)
    assert s["random"]["extrapolation"] > 0.1
    # Every register is a high-dimensional solution; GD's is rank one, like the teacher.
    assert s["zeros"]["dim"] == 5
    assert s["gd"]["dim"] == 1


def test_gd_student_extrapolates(results):
    res, _ = results
    gd = res.summary["gd"]
    assert gd["diverged"] == 0
    assert np.all(res["gd"].result.values <= rnnflow.Result.converged)
    # The same student size, trained from small init, fits (median loss ~1e-12, every seed
    # < 1e-11) and extrapolates: relative error ≤ 1e-10 for every seed; 1e-3 is the claim's
    # margin, far from the registers' ≥ 0.1.
    assert gd["loss_max"] < 1e-9
    assert gd["extrapolation_worst"] < 1e-3


def test_results_load_back(results):
    res, out = results
    loaded = load_results(out)
    assert loaded.experiment == "counterexample" and loaded.config == TINY.to_dict()
    assert (out / "figure.png").stat().st_size > 0
    gd = loaded["gd"]
    assert gd.impulse.dims == ("init_scale", "seed", "time", "impulse_0")
    assert gd.impulse.shape == (1, 3, 2, 30)
    # The trained responses start where the teacher's does (0.9^i, fitted for i < k = 5).
    h = gd.impulse.isel(time=-1, init_scale=0).values
    np.testing.assert_allclose(h[:, :5], np.broadcast_to(0.9 ** np.arange(5), (3, 5)), rtol=1e-5)


def test_shift_register_realisation():
    target, free = np.array([1.0, 0.5, 0.25]), np.array([7.0, -1.0])
    params = counterexample.shift_register(target, free)
    h = rnnflow.DenseRNN(5).impulse_response(params, 8)[:, 0, 0]
    np.testing.assert_array_equal(h, [1.0, 0.5, 0.25, 7.0, -1.0, 0.0, 0.0, 0.0])


def test_config_errors():
    with pytest.raises(ValueError, match="state_dims"):
        counterexample.CounterexampleConfig.from_dict({"state_dims": 20})
    with pytest.raises(ValueError, match="state_dim"):
        counterexample.CounterexampleConfig(state_dim=3, train_len=5)
    with pytest.raises(ValueError, match="horizon"):
        counterexample.CounterexampleConfig(state_dim=20, horizon=20)
    with pytest.raises(ValueError, match="teacher"):
        counterexample.CounterexampleConfig(teacher="nope")
