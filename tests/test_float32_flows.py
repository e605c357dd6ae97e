"""A gradient flow in float32 finishes, or stops with a code that says why, in bounded time.

The case: a complex LRU (λ = exp(-exp(ν) + iθ)) solved by Kvaerno5 in float32. At the
float64 tolerances (rtol 1e-6, atol 1e-9, once the default for every precision) its Newton
iterations fail on about half the steps and the solve crawls: 2000 steps reach t = 29 of
100 (float64: 421 steps to t = 100). With float32's defaults it finishes.
"""

import json
import os
import subprocess
import sys

import diffrax
import jax
import jax.numpy as jnp
import pytest

import rnnflow as rf

D, K = 8, 16
TARGET = 0.9 ** jnp.arange(K) * jnp.cos(0.5 * jnp.arange(K))


def lru_loss(p):
    lam = jnp.exp(-jnp.exp(p["nu"]) + 1j * p["theta"])
    h = jnp.real((p["C"] * p["B"]) @ lam[:, None] ** jnp.arange(K)[None, :])
    return jnp.mean((h - TARGET.astype(h.dtype)) ** 2)


def init(key):
    k = jax.random.split(key, 5)
    f32 = jnp.float32
    b = jax.random.normal(k[2], (D,), f32) + 1j * jax.random.normal(k[3], (D,), f32)
    return {
        "nu": jax.random.uniform(k[0], (D,), f32, -1.0, 0.0),
        "theta": jax.random.uniform(k[1], (D,), f32, 0.0, 1.0),
        "B": (0.5 * b).astype(jnp.complex64),
        "C": (0.5 * jax.random.normal(k[4], (D,), f32)).astype(jnp.complex64),
    }


def test_default_tolerances_follow_the_precision():
    method = rf.GradientFlow(1.0)
    f32, f64 = jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.float64)
    assert (method.controller(f32).rtol, method.controller(f32).atol) == (1e-4, 1e-6)
    assert (method.controller(f64).rtol, method.controller(f64).atol) == (1e-6, 1e-9)
    assert method.controller(jnp.zeros(2, jnp.complex64)).rtol == 1e-4  # its parts' precision
    given = diffrax.PIDController(rtol=1e-3, atol=1e-6)
    assert rf.GradientFlow(1.0, stepsize_controller=given).controller(f32) is given


# The tests run in float64 (conftest), where diffrax computes a float32 state in float64
# (its times are float64): float32 is run in a process of its own, as a user runs it.
_FLOAT32_RUN = """
import json, sys
import diffrax, jax, numpy as np
sys.path.insert(0, sys.argv[1])
import rnnflow as rf
from test_float32_flows import init, lru_loss

params = jax.vmap(init)(jax.random.split(jax.random.key(1), 2))
out = {"dtype": str(params["B"].dtype)}
method = rf.GradientFlow(100.0, solver=diffrax.Kvaerno5(), max_steps=2000)
# One device: diffrax's implicit solvers do not trace under shard_map over several.
traj = rf.train_seeds(lru_loss, params, method, save=rf.Save(num=3), devices=jax.devices()[:1])
out["default"] = [traj.summary(), np.asarray(traj.num_steps).tolist(),
                  np.asarray(traj.metrics["loss"][:, -1]).tolist()]
if sys.argv[2] == "tight":
    tight = diffrax.PIDController(rtol=1e-6, atol=1e-9)
    method = rf.GradientFlow(100.0, solver=diffrax.Kvaerno5(), max_steps=2000,
                             stepsize_controller=tight)
    crawl = rf.train(lru_loss, jax.tree.map(lambda x: x[0], params), method)
    out["tight"] = [int(crawl.result), float(crawl.t_stop)]
print(json.dumps(out))
"""


def _float32_run(mode):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "0"}
    here = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run(
        [sys.executable, "-c", _FLOAT32_RUN, here, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # 50 s, a process of its own; its cheap sibling checks the defaults
def test_kvaerno5_in_float32_finishes():
    # Before: the float64 tolerances were the default, and this ended max_steps_reached.
    out = _float32_run("default")
    assert out["dtype"] == "complex64"
    summary, steps, losses = out["default"]
    assert summary == {"finished": 2}
    assert max(steps) < 500 and max(losses) < 2e-3


@pytest.mark.slow
def test_kvaerno5_in_float32_at_float64_tolerances_crawls():
    result, t_stop = _float32_run("tight")["tight"]
    assert rf.Result(result) == rf.Result.max_steps_reached and t_stop < 50.0


def test_an_implicit_solve_that_collapses_stalls_early_with_its_own_code():
    # |θ - 1| has a kink at θ = 1, reached at t = 1: past it the vector field flips sign at
    # every crossing, Kvaerno5's Newton iterations fail and its steps are rejected: it
    # stops as `stalled`, long before max_steps.
    solver = diffrax.Kvaerno5()

    def kink(theta):
        return jnp.sum(jnp.abs(theta - 1.0))

    method = rf.GradientFlow(10.0, solver=solver, max_steps=100_000)
    traj = rf.train(kink, jnp.zeros(2), method)
    assert rf.Result(int(traj.result)) == rf.Result.stalled
    assert int(traj.num_steps) <= 2000 and float(traj.t_stop) == pytest.approx(1.0, abs=0.01)
    assert "Stalled" in traj.messages()[0]


def test_train_seeds_with_progress_shows_a_flow_s_progress(capfd):
    def loss(theta):
        return jnp.sum(theta**2)

    rf.train_seeds(loss, jnp.ones((2, 3)), rf.GradientFlow(1.0), progress=True)
    out = capfd.readouterr().out
    assert "100.00%" in out
