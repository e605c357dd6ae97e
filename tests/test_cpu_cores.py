"""One JAX CPU device per core: `use_cpu_cores` before JAX starts (too late is a clear
error), the `rnnflow` command's default and `--one-device`, and results bitwise the same
on 1, 2 and 4 CPU devices as on one, for `train_seeds` (gradient descent and a Tsit5 flow,
default lanes) and `run_sweep` (default devices).

The device count is fixed when JAX starts, so each count runs in a fresh process; this
process has four (tests/conftest.py)."""

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf

# Saves every array of a train_seeds run (diagonal and dense students, GD and a flow, seed
# counts that give odd shares per device) and of a small sweep, with the devices it had.
_RUN = """
import sys
import jax
import numpy as np
import rnnflow as rf

n = rf.use_cpu_cores(int(sys.argv[1])) if sys.argv[1] != "env" else None
assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
quick = sys.argv[4] == "quick"  # the dense student at 13 seeds only
out = {}
teacher = rf.modes_teacher([0.8, -0.5], [1.0, 0.5])
models = [("diag", rf.DiagonalRNN(4, scan="sequential")), ("dense", rf.DenseRNN(3))]
for name, model in models[1:] if quick else models:
    loss = rf.ImpulseLoss(teacher, 4).bind(model)
    save = rf.Save(num=3, params=True, metrics={"loss": lambda t, p, loss=loss: loss(p)})
    for seeds in (13,) if quick else (7, 13):
        params = rf.init_seeds(model, jax.random.split(jax.random.key(1), seeds), scale=0.3)
        for m, method in [("gd", rf.GradientDescent(0.05, 40)), ("gf", rf.GradientFlow(t1=2.0))]:
            traj = rf.train_seeds(loss, params, method, save=save)
            for i, x in enumerate(jax.tree.leaves(traj)):
                out[f"{name}/{seeds}/{m}/{i}"] = np.asarray(x)
            out[f"{name}/{seeds}/{m}/loss"] = np.asarray(traj.metrics["loss"])

def setup(point, key):
    model = rf.DiagonalRNN(4, scan="sequential")
    params = model.init(key=key, scale=point["init_scale"])
    return rf.ImpulseLoss(teacher, 4).bind(model), params, rf.GradientDescent(0.05, 40)

# 2 points x 8 seeds: 16 lanes, a core's share on each device.
sweep = rf.Sweep({"init_scale": [0.1, 0.3]}, seeds=8, setup=setup, key=jax.random.key(2),
                 save=rf.Save(num=3))
ds = rf.run_sweep(sweep, sys.argv[3] + ".zarr", progress=False)
for name in ds.variables:
    out["sweep/" + name] = ds[name].values
np.savez(sys.argv[3], **out)
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    return {**env, **extra}


def _run(tmp_path, n: str, expect: int, quick: bool = False, **env):
    path = tmp_path / f"run-{n}-{expect}"
    out = subprocess.run(
        [sys.executable, "-c", _RUN, n, str(expect), str(path), "quick" if quick else "all"],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return np.load(f"{path}.npz")


def _assert_bitwise(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


CORES = len(os.sched_getaffinity(0))


@pytest.mark.skipif(CORES < 2, reason="one device per core needs two cores")
@pytest.mark.parametrize(
    "quick", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["dense", "all"]
)
def test_two_cpu_devices_give_bitwise_the_results_of_one(tmp_path, quick):
    """The default run checks the dense student at 13 seeds (odd shares on two devices) and
    the sweep; the slow one adds the diagonal student and 7 seeds."""
    one = _run(tmp_path, "1", 1, quick)
    two = _run(tmp_path, "env", 2, quick, JAX_NUM_CPU_DEVICES="2")  # the environment variable
    _assert_bitwise(one, two)
    # The seeds differ (a mix-up would be seen), and the flow is not gradient descent.
    for name in ("dense/13",) if quick else ("diag/7", "dense/13"):
        assert np.all(np.ptp(one[f"{name}/gd/loss"][:, -1]) > 1e-4)
        assert not np.allclose(one[f"{name}/gd/loss"], one[f"{name}/gf/loss"])


@pytest.mark.slow
@pytest.mark.skipif(CORES < 4, reason="one device per core needs four cores")
def test_four_cpu_devices_give_bitwise_the_results_of_one(tmp_path):
    _assert_bitwise(_run(tmp_path, "1", 1), _run(tmp_path, "4", 4))


def test_use_cpu_cores_too_late_is_a_clear_error():
    assert len(jax.devices()) == 4  # this process started with four (tests/conftest.py)
    assert rf.use_cpu_cores(4) == 4  # what JAX already has: nothing to do
    with pytest.raises(RuntimeError, match=r"came too late.*JAX_NUM_CPU_DEVICES=3"):
        rf.use_cpu_cores(3)


@pytest.mark.parametrize(
    "n, error, message",
    [(0, ValueError, "`n` must be a positive integer"), (2.0, TypeError, "`n` must be")],
)
def test_use_cpu_cores_bad_n(n, error, message):
    with pytest.raises(error, match=message):
        rf.use_cpu_cores(n)


_CLI_DEVICES = """
import sys
import jax
from rnnflow.cli.main import _cpu_devices
from rnnflow.cli.parser import _parser

_cpu_devices(_parser().parse_args(sys.argv[1:]))
print(len(jax.devices()))
"""


@pytest.mark.parametrize(
    "args, env, expect",
    [
        (["sweep", "s.toml"], {}, CORES),  # one per core
        (["run", "init_scale", "--one-device"], {}, 1),
        (["reproduce"], {"JAX_NUM_CPU_DEVICES": "3"}, 3),  # the user's own count is kept
    ],
)
def test_the_command_makes_one_cpu_device_per_core(args, env, expect):
    out = subprocess.run(
        [sys.executable, "-c", _CLI_DEVICES, *args],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == expect


def test_a_sweep_calling_lapack_runs_on_one_cpu_device_with_a_warning(tmp_path):
    def setup(point, key):
        model = rf.DiagonalRNN(4, scan="sequential")
        params = model.init(key=key, scale=point["init_scale"])
        return rf.ImpulseLoss(rf.modes_teacher([0.8], [1.0]), 4).bind(model), params, GD

    GD = rf.GradientDescent(0.05, 20)
    eig = {"eig": lambda t, p: jnp.linalg.eigh(jnp.diag(p.a))[0]}
    sweep = rf.Sweep(
        {"init_scale": [0.1, 0.3]}, seeds=2, setup=setup, key=jax.random.key(0),
        save=rf.Save(num=2, metrics=eig),
    )  # fmt: skip
    one = rf.run_sweep(sweep, tmp_path / "one.zarr", devices=jax.devices()[:1], progress=False)
    with pytest.warns(RuntimeWarning, match="run_sweep runs on one CPU device instead of 4"):
        ds = rf.run_sweep(sweep, tmp_path / "all.zarr", progress=False)
    for name in one.variables:
        np.testing.assert_array_equal(ds[name].values, one[name].values, err_msg=name)
    # Without LAPACK nothing is said.
    sweep = rf.Sweep({"init_scale": [0.1, 0.3]}, seeds=2, setup=setup, key=jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rf.run_sweep(sweep, tmp_path / "plain.zarr", progress=False)
