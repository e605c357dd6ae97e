"""One JAX CPU device per core: `use_cpu_cores` before JAX starts (too late is a clear
error), the `rnnflow` command's default and `--one-device`, and results bitwise the same
on 2 and 4 CPU devices as on one, for `train_seeds` (default lanes: gradient descent and a
Tsit5 flow on the RNNs, Adam on a user's own LRU-style model) and `run_sweep` (default
devices), with each block program compiled once whatever the number of devices.

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
# counts that give odd shares per device; Adam on a user's own model) and of a small sweep,
# with the devices it had.
_RUN = """
import sys
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rnnflow as rf

n = rf.use_cpu_cores(int(sys.argv[1])) if sys.argv[1] != "env" else None
assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
out = {}
teacher = rf.modes_teacher([0.8, -0.5], [1.0, 0.5])
models = [("diag", rf.DiagonalRNN(4, scan="sequential")), ("dense", rf.DenseRNN(3))]
for name, model in models:
    loss = rf.ImpulseLoss(teacher, 4).bind(model)
    save = rf.Save(num=3, params=True, metrics={"loss": lambda t, p, loss=loss: loss(p)})
    for seeds in (7, 13):
        params = rf.init_seeds(model, jax.random.split(jax.random.key(1), seeds), scale=0.3)
        for m, method in [("gd", rf.GradientDescent(0.05, 40)), ("gf", rf.GradientFlow(t1=2.0))]:
            traj = rf.train_seeds(loss, params, method, save=save)
            for i, x in enumerate(jax.tree.leaves(traj)):
                out[f"{name}/{seeds}/{m}/{i}"] = np.asarray(x)
            out[f"{name}/{seeds}/{m}/loss"] = np.asarray(traj.metrics["loss"])

# A user's own model: an LRU-style diagonal recurrence in real-split form, under Adam, whose
# bias correction one program partitioned over two devices rounds differently.
LAGS = np.arange(12.0)
LRU_TEACHER = (0.8**LAGS * np.cos(0.7 * LAGS)).astype(np.float32)

def lru_init(key, d=8):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    r = jax.random.uniform(k1, (d,), minval=0.5, maxval=0.95)
    b, c = (jax.random.normal(k, (2, d)) / d**0.5 for k in (k3, k4))
    return {"nu": jnp.log(-jnp.log(r)), "theta": jax.random.uniform(k2, (d,), maxval=jnp.pi),
            "b": b, "c": c}

def lru_loss(p):
    r = jnp.exp(-jnp.exp(p["nu"]))
    re, im = r * jnp.cos(p["theta"]), r * jnp.sin(p["theta"])
    def step(h, _):
        y = jnp.sum(p["c"][0] * h[0] - p["c"][1] * h[1])
        return (re * h[0] - im * h[1], re * h[1] + im * h[0]), y
    _, ys = jax.lax.scan(step, (p["b"][0], p["b"][1]), None, length=len(LAGS))
    return jnp.sum((ys - LRU_TEACHER) ** 2)

params = jax.vmap(lru_init)(jax.random.split(jax.random.key(3), 6))
adam = rf.GradientDescent(0.02, 50, optimizer=optax.adam)
save = rf.Save(num=3, metrics={"loss": lambda t, p: lru_loss(p)})
traj = rf.train_seeds(lru_loss, params, adam, save=save)
for i, x in enumerate(jax.tree.leaves(traj)):
    out[f"adam/{i}"] = np.asarray(x)
out["adam/loss"] = np.asarray(traj.metrics["loss"])

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


def _run(tmp_path, n: str, expect: int, **env):
    """The run's arrays, and how many times it compiled a block program."""
    path = tmp_path / f"run-{n}-{expect}"
    out = subprocess.run(
        [sys.executable, "-c", _RUN, n, str(expect), str(path)],
        env=_env(JAX_LOG_COMPILES="1", **env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return np.load(f"{path}.npz"), out.stderr.count("Finished XLA compilation of jit(_block)")


def _assert_bitwise(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


CORES = len(os.sched_getaffinity(0))


# Slow (about 35 s even for the dense student alone). The default run checks the same
# bitwise equality on this process's four devices: train_seeds (test_batch.py) and its
# save metrics (test_linalg.py).
@pytest.mark.slow
@pytest.mark.skipif(CORES < 2, reason="one device per core needs two cores")
def test_two_cpu_devices_give_bitwise_the_results_of_one(tmp_path):
    """The diagonal and dense students at 7 and 13 seeds (odd shares on two devices), Adam
    on an LRU-style model, and a sweep."""
    one, compiled_one = _run(tmp_path, "1", 1)
    # The environment variable:
    two, compiled_two = _run(tmp_path, "env", 2, JAX_NUM_CPU_DEVICES="2")
    _assert_bitwise(one, two)
    assert compiled_two == compiled_one  # one compilation per block program, not per device
    # The seeds differ (a mix-up would be seen), and the flow is not gradient descent.
    for name in ("diag/7", "dense/13"):
        assert np.all(np.ptp(one[f"{name}/gd/loss"][:, -1]) > 1e-4)
        assert not np.allclose(one[f"{name}/gd/loss"], one[f"{name}/gf/loss"])
    assert np.all(one["adam/loss"][:, -1] < one["adam/loss"][:, 0])
    assert np.ptp(one["adam/loss"][:, -1]) > 1e-3


@pytest.mark.slow
@pytest.mark.skipif(CORES < 4, reason="one device per core needs four cores")
def test_four_cpu_devices_give_bitwise_the_results_of_one(tmp_path):
    (one, compiled_one), (four, compiled_four) = _run(tmp_path, "1", 1), _run(tmp_path, "4", 4)
    _assert_bitwise(one, four)
    assert compiled_four == compiled_one


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


def test_a_program_that_cannot_be_loaded_elsewhere_is_compiled_for_each_device(
    monkeypatch, placed_on
):
    """Each device runs the first device's executable, loaded without compiling again; where
    that fails (another JAX's internals), each device compiles the same program itself."""
    from rnnflow._engine import devices

    def refuse(compiled, device):
        raise AttributeError("no such internal")

    model = rf.DiagonalRNN(3, scan="sequential")
    loss = rf.ImpulseLoss(rf.modes_teacher([0.8, -0.5], [1.0, 0.5]), 4).bind(model)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(4), 7), scale=0.3)
    method = rf.GradientDescent(0.05, 13)
    one = rf.train_seeds(loss, params, method, lanes=2, devices=jax.devices()[:1])
    monkeypatch.setattr(devices, "_load", refuse)
    placed_on.clear()
    four = rf.train_seeds(loss, params, method, lanes=2)  # 8 lanes: 2 on each of 4 devices
    assert placed_on == set(jax.devices())
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(four), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
