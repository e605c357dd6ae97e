"""Long runs complete: a million GD steps, and a gradient flow through a long plateau."""

import numpy as np

import rnnflow as rf

MODEL = rf.DiagonalRNN(2, scan="sequential")
LOSS = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 3)


def test_a_million_gd_steps(key):
    params = MODEL.init(key=key, scale=0.1)
    n = 10**6
    traj = rf.train(
        LOSS.bind(MODEL),
        params,
        rf.GradientDescent(1e-3, n),
        save=rf.Save(num=3, metrics={"loss": lambda t, p: LOSS(MODEL, p)}),
    )
    # Step counters and times past 2^20 steps stay exact (no float32 step counting).
    assert int(traj.num_steps) == n and int(traj.num_grad_evals) == n + 1
    np.testing.assert_allclose(traj.ts, [0.0, 500.0, 1000.0])
    assert float(traj.t_stop) == 1000.0
    assert traj.result == rf.Result.finished
    # The loss of this overparameterized fit decays like a power of t, not exponentially:
    # 2.5 → 2.5e-6 here. A decade of margin.
    assert float(traj.metrics["loss"][-1]) < 1e-5 * float(traj.metrics["loss"][0])


def test_gradient_flow_through_a_long_plateau(key):
    # From scale 1e-6 the flow sits near the saddle at zero for t ≈ log(1/scale²)/(2·λmax)
    # before the loss drops; an adaptive solver takes large steps on the plateau.
    params = MODEL.init(key=key, scale=1e-6)
    traj = rf.train(
        LOSS.bind(MODEL),
        params,
        rf.GradientFlow(200.0),
        save=rf.Save(num=201, metrics={"loss": lambda t, p: LOSS(MODEL, p)}),
    )
    loss = np.asarray(traj.metrics["loss"])
    initial = float(LOSS(MODEL, params))
    assert traj.result == rf.Result.finished
    assert loss[5] > 0.99 * initial  # still on the plateau at t = 5
    assert loss[-1] < 1e-4 * initial  # and off it by t = 200 (measured 5e-6 × initial)
    assert int(traj.num_steps) < 10_000  # the plateau costs few steps
