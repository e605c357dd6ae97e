"""Sweeps: named axes × seeds into a labelled store, resumable, and the same store from one
process or two.

Ground truth: separate runs of the same problems (`train`), an uninterrupted sweep, and a
single-process sweep, compared bitwise where the computation is the same program.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnflow as rf
from rnnflow._sweeps.store import Store

TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])


def setup(point, key):
    model = rf.make_model(point["model"], 6)
    params = model.init(key=key, scale=point["init_scale"])
    loss_fn = rf.ImpulseLoss(TEACHER, 5).bind(model)
    return loss_fn, params, rf.GradientDescent(point["lr"], 300)


AXES = {"model": ["diagonal", "dense"], "init_scale": [0.05, 0.3], "lr": [0.02, 0.05]}


def _sweep(**kw):
    kw = {"axes": AXES, "seeds": 5, "setup": setup, "key": jax.random.key(0), **kw}
    kw.setdefault("save", rf.Save(num=4))
    return rf.Sweep(**kw)


def _same_store(a, b):
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a.attrs == b.attrs


def test_results_are_labelled_and_equal_separate_runs(tmp_path):
    ds = rf.run_sweep(_sweep(), tmp_path / "s.zarr", progress=False)
    assert ds.loss.dims == ("model", "init_scale", "lr", "seed", "time")
    assert list(ds.model.values) == AXES["model"]
    assert list(ds.init_scale.values) == [0.05, 0.3] and list(ds.seed.values) == list(range(5))
    assert ds.result.dims == ("model", "init_scale", "lr", "seed")
    assert json.loads(ds.attrs["versions"])["jax"] == jax.__version__
    assert ds.attrs["float64"] == 1
    # Flow times differ with the rate: the time axis is the save index, `t` the flow time.
    np.testing.assert_allclose(ds.t.sel(lr=0.05).values[..., -1], 300 * 0.05)
    keys = jax.random.split(jax.random.key(0), 5)
    for model in AXES["model"]:
        for scale in AXES["init_scale"]:
            for lr in AXES["lr"]:
                for seed in (0, 4):
                    point = {"model": model, "init_scale": scale, "lr": lr}
                    traj = rf.train(*setup(point, keys[seed]), save=rf.Save(num=4))
                    got = ds.sel(**point, seed=seed)
                    # One program runs all rates and scales side by side; XLA may sum a
                    # batch in another order than one run (see train_seeds): to rounding.
                    np.testing.assert_allclose(got.loss.values, traj.metrics["loss"], rtol=1e-10)
                    assert int(got.result) == int(traj.result)
                    assert int(got.num_steps) == int(traj.num_steps)
                    np.testing.assert_array_equal(got.t.values, traj.ts)


def test_float_axes_share_one_program_and_other_axes_loop():
    sweep = _sweep()
    assert sweep.vmapped() == ("init_scale", "lr")
    assert _sweep(looped=("lr",)).vmapped() == ("init_scale",)


def test_a_finished_store_opens_without_computing_and_other_sweeps_are_refused(tmp_path):
    path = tmp_path / "s.zarr"
    first = rf.run_sweep(_sweep(), path, progress=False)
    again = rf.run_sweep(_sweep(setup=_raising_setup(0)), path, progress=False)
    _same_store(first, again)  # opened, nothing recomputed (setup is only traced)
    for other in (_sweep(seeds=4), _sweep(save=rf.Save(num=5)), _sweep(key=jax.random.key(1))):
        with pytest.raises(FileExistsError, match="another sweep"):
            rf.run_sweep(other, path, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        rf.run_sweep(_sweep(), tmp_path / "file", progress=False)

    # Under a file: said before the setup runs, and the file is kept.
    def unreached(point, key):
        raise AssertionError("the setup ran")

    with pytest.raises(FileExistsError, match=r"file is a file: the store .* cannot be made"):
        rf.run_sweep(_sweep(setup=unreached), tmp_path / "file" / "s.zarr")
    assert (tmp_path / "file").read_text() == "x"


class _Killed(Exception):
    pass


def _raising_setup(units):
    """`setup`, for a sweep that must compute nothing: it is traced once per combination of
    the looped axes to find the store's layout; computing a unit would trace it again."""
    calls = []

    def fn(point, key):
        if isinstance(key, jax.core.Tracer):
            calls.append(1)
            if len(calls) > 2 + units:
                raise _Killed
        return setup(point, key)

    return fn


def _killed_after(monkeypatch, units):
    """Kill the sweep once `units` units are written (their markers too)."""
    done = []
    real = Store.mark_done

    def mark_done(self, unit, *args):
        if len(done) == units:
            raise _Killed
        done.append(unit)
        real(self, unit, *args)

    monkeypatch.setattr(Store, "mark_done", mark_done)


def test_an_interrupted_sweep_resumes_to_the_same_store(tmp_path, monkeypatch):
    whole = rf.run_sweep(_sweep(), tmp_path / "whole.zarr", lanes=5, progress=False)
    path = tmp_path / "killed.zarr"
    with monkeypatch.context() as m:
        _killed_after(m, 3)  # the fourth unit's arrays are written, not its marker
        with pytest.raises(_Killed):
            rf.run_sweep(_sweep(), path, lanes=5, progress=False)
    with pytest.warns(UserWarning, match="unfinished: 3 of 8 units"):
        partial = rf.open_results(path)
    assert np.isnan(partial.loss.values).any()
    _same_store(rf.run_sweep(_sweep(), path, lanes=5, progress=False), whole)


def test_results_open_lazily(tmp_path):
    rf.run_sweep(_sweep(), tmp_path / "s.zarr", progress=False)
    ds = rf.open_results(tmp_path / "s.zarr")
    assert not isinstance(ds["loss"].variable._data, np.ndarray)  # read when used
    assert ds.loss.isel(time=-1).median("seed").dims == ("model", "init_scale", "lr")


@pytest.mark.parametrize("listing", [reversed, sorted])
def test_dimension_order_does_not_follow_the_file_system(tmp_path, monkeypatch, listing):
    # zarr lists a store's folder in the file system's order, which differs between
    # machines; the dimensions follow the sweep's axes, then seed, time and key_data.
    import zarr.storage

    rf.run_sweep(_sweep(), tmp_path / "s.zarr", progress=False)
    real = zarr.storage.LocalStore.list_dir

    async def listed(self, prefix):
        for key in listing([k async for k in real(self, prefix)]):
            yield key

    monkeypatch.setattr(zarr.storage.LocalStore, "list_dir", listed)
    ds = rf.open_results(tmp_path / "s.zarr")
    assert list(ds.sizes) == ["model", "init_scale", "lr", "seed", "time", "key_data"]
    assert list(ds.coords)[:5] == ["model", "init_scale", "lr", "seed", "time"]
    assert list(ds.data_vars) == sorted(ds.data_vars)


_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    if len(sys.argv) > 3:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{sys.argv[3]}", num_processes=2,
            process_id=int(sys.argv[2]),
        )
    jax.config.update("jax_enable_x64", True)
    import rnnflow as rf

    def setup(point, key):
        model = rf.DenseRNN(int(point["width"]))
        loss_fn = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 4).bind(model)
        params = model.init(key=key, scale=point["init_scale"])
        return loss_fn, params, rf.GradientDescent(0.05, 200)

    sweep = rf.Sweep({"width": [3], "init_scale": [0.1, 0.4]}, seeds=6, setup=setup,
                     key=jax.random.key(3), save=rf.Save(num=3))
    rf.run_sweep(sweep, sys.argv[1], lanes=4, progress=False)
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes that start JAX: about 20 s
def test_two_processes_write_the_store_one_process_writes(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "JAX_NUM_CPU_DEVICES": "1"}
    one = tmp_path / "one.zarr"
    subprocess.run([sys.executable, str(script), str(one)], env=env, check=True, timeout=600)
    two, port = tmp_path / "two.zarr", str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, str(script), str(two), str(i), port], env=env)
        for i in (0, 1)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both complete
        _same_store(rf.open_results(one), rf.open_results(two))
    units = sorted(p.name for p in (two / ".rnnflow").glob("unit-*"))
    assert len(units) == 2  # 2 points × 1 block of 6 seeds, computed 4 lanes a call


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(axes={}), TypeError, "`axes` must map"),
        (dict(axes={"seed": [1.0]}), ValueError, "axis names must be identifiers other than"),
        (dict(axes={"lr": []}), ValueError, "axis `lr` must have a non-empty list"),
        (dict(axes={"lr": [0.1, 0.1]}), ValueError, "axis `lr` repeats a value"),
        (dict(seeds=0), ValueError, "`seeds` must be a positive integer"),
        (dict(setup=3), TypeError, "`setup` must be callable"),
        (dict(key=0), TypeError, "`key` must be one PRNG key"),
        (dict(looped=("width",)), ValueError, "`looped` names axes the sweep does not have"),
        (dict(save=3), TypeError, "`save` and `stop`"),
        (dict(save=rf.Save(params=True)), ValueError, "a sweep stores metrics, not parameters"),
    ],
)
def test_bad_sweeps_are_refused(kwargs, error, text):
    with pytest.raises(error, match=text):
        _sweep(**kwargs)


def test_a_bad_point_is_refused_before_compiling(tmp_path):
    def bad(point, key):
        loss_fn, params, method = setup(point, key)
        return loss_fn, params, rf.GradientDescent(point["lr"] * 0 - 1, 10)

    with pytest.raises(ValueError, match="`lr` must be positive"):
        rf.run_sweep(_sweep(setup=bad), tmp_path / "s.zarr", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_a_refused_store_names_what_differs_with_both_values(tmp_path):
    # Before: "holds the results of another sweep (other axes, seeds, computation,
    # precision or lanes)", without saying which.
    path = tmp_path / "s.zarr"
    rf.run_sweep(_sweep(axes={**AXES, "model": ["diagonal"]}), path, progress=False)
    other = _sweep(axes={**AXES, "model": ["diagonal"]}, seeds=4)
    with pytest.raises(FileExistsError, match=r"seeds: 4 in this sweep, 5 in the store"):
        rf.run_sweep(other, path, progress=False)
    other = _sweep(axes={**AXES, "model": ["diagonal"], "lr": [0.02, 0.04]})
    with pytest.raises(FileExistsError, match=r"axes: .*0\.04.* in this sweep, .*0\.05.* in"):
        rf.run_sweep(other, path, progress=False)


def test_a_refused_store_says_where_the_training_differs(tmp_path):
    # Before: the two lists of hashes, cut at 120 characters.
    def longer(point, key):
        loss_fn, params, _ = setup(point, key)
        steps = 400 if point["model"] == "dense" else 300
        return loss_fn, params, rf.GradientDescent(point["lr"], steps)

    path = tmp_path / "s.zarr"
    rf.run_sweep(_sweep(), path, progress=False)
    with pytest.raises(FileExistsError) as e:
        rf.run_sweep(_sweep(setup=longer), path, progress=False)
    message = str(e.value)
    assert "the training differs from the store's" in message
    assert "at 1 of 2 looped combinations, first at model = dense" in message
    assert not any(c in message for c in "[]")  # no hashes
    # The vmapped axes in another order are another layout of points: refused, saying so.
    swapped = {"model": AXES["model"], "lr": AXES["lr"], "init_scale": AXES["init_scale"]}
    with pytest.raises(FileExistsError, match="the same axes in another order"):
        rf.run_sweep(_sweep(axes=swapped), path, progress=False)


def test_the_default_unit_of_work_is_a_small_part_of_the_sweep(tmp_path):
    # Before: one unit of up to 1024 lanes, so 256 seeds were one unit and a kill lost all.
    def tiny(point, key):
        return (
            (lambda p: jnp.sum((p - 1.0) ** 2)),
            jax.random.normal(key, (2,)),
            rf.GradientDescent(point["lr"], 5),
        )

    sweep = rf.Sweep({"lr": [0.1]}, 256, tiny, jax.random.key(0), rf.Save(num=2))
    rf.run_sweep(sweep, tmp_path / "s.zarr", progress=False)
    units = list((tmp_path / "s.zarr" / ".rnnflow").glob("unit-*"))
    assert len(units) == 4  # 64 lanes: a sixteenth of 256 seeds is less than the floor
