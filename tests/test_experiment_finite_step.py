"""The finite-step experiment: a step above 2/sharpness of the flow's solution lands on
another solution, end to end at a tiny size in float64."""

import numpy as np
import pytest

from rnnflow.experiments import finite_step, load_results, run_experiment

# The two step sizes lie on either side of 2/sharpness ≈ 2/46.3 ≈ 0.0432 of the flow's
# solution.
TINY = finite_step.FiniteStepConfig(seeds=2, lrs=(0.05, 0.04), t1=4000.0)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("finite_step") / "x"
    return run_experiment(finite_step.EXPERIMENT, TINY, out=out), out


def test_finite_step_size_dense(results):
    res, _ = results
    d = res.summary
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


def test_results_load_back(results):
    res, out = results
    loaded = load_results(out)
    assert set(loaded.data) == {"dense"} and loaded.config == TINY.to_dict()
    assert loaded["dense"].transition.dims[:3] == ("lr", "seed", "time")
    assert loaded.summary == res.summary


def test_spectral_radius():
    # A rotation by θ scaled by r has eigenvalues r e^{±iθ}; a non-finite A gives NaN.
    r, th = 1.5, 0.3
    rot = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a = np.stack([rot, np.diag([0.9, -0.2]), np.full((2, 2), np.nan)])
    np.testing.assert_allclose(finite_step.spectral_radius(a)[:2], [1.5, 0.9])
    assert np.isnan(finite_step.spectral_radius(a)[2])


def test_config_errors():
    with pytest.raises(ValueError, match="dense_lrs"):
        finite_step.FiniteStepConfig.from_dict({"dense_lrs": [0.05]})
    with pytest.raises(ValueError, match="lrs"):
        finite_step.FiniteStepConfig(lrs=(0.05, -0.04))
    with pytest.raises(ValueError, match="horizon"):
        finite_step.FiniteStepConfig(horizon=5)
    with pytest.raises(ValueError, match="teacher"):
        finite_step.FiniteStepConfig(teacher="nope")
