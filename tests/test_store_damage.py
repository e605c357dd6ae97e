"""Stores that can be trusted byte for byte: every chunk is verified when it is read back,
a damaged unit is recomputed (with a one-line notice) and nothing else, a store of another
run is refused and left unchanged, and one run writes a store at a time.

Ground truth: an uninterrupted sweep, compared value by value (bitwise), and the hashes of
every file of a store before and after a refused run."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import rnnflow as rf
import rnnflow._engine.blocks as blocks_module
import rnnflow._sweeps.plan as plan_module
from rnnflow._engine.files import DamageWarning
from rnnflow._sweeps.store import Store
from rnnflow._sweeps.verify import DamagedStoreError

TEACHER = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
SCALES = [0.1, 0.2, 0.3]


def setup(point, key):
    model = rf.DiagonalRNN(3, scan="sequential")
    params = model.init(key=key, scale=point["init_scale"])
    return rf.ImpulseLoss(TEACHER, 4).bind(model), params, rf.GradientDescent(0.05, 30)


def _sweep(seeds=5):
    return rf.Sweep(
        {"init_scale": SCALES}, seeds=seeds, setup=setup, key=jax.random.key(0), save=rf.Save(num=3)
    )


def _same_store(a, b):
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def _hashes(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted sweep's store (3 units: one per point) and its Dataset."""
    path = tmp_path_factory.mktemp("whole") / "s.zarr"
    return path, rf.run_sweep(_sweep(), path, lanes=5, progress=False)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:10])


def _flip_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_bit, os.remove])
def test_a_damaged_chunk_is_named_and_a_rerun_recomputes_its_unit_alone(
    damage, whole, tmp_path, monkeypatch
):
    source, ds = whole
    path = tmp_path / "s.zarr"
    shutil.copytree(source, path)
    damage(path / "loss" / "c" / "1" / "0" / "0")  # unit 1: init_scale = 0.2, all seeds
    with pytest.raises(
        DamagedStoreError, match=r"unit 1 \(init_scale=0.2, seeds 0-4\): its chunk loss/c/1/0/0"
    ):
        rf.open_results(path)
    calls = []
    real = blocks_module._block_jit

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    counting.lower = real.lower  # lowering (to look for LAPACK calls) computes nothing
    monkeypatch.setattr(blocks_module, "_block_jit", counting)
    with pytest.warns(DamageWarning, match=r"unit 1 \(init_scale=0.2, seeds 0-4\)") as record:
        repaired = rf.run_sweep(_sweep(), path, lanes=5, progress=False)
    assert len(record) == 1 and len(calls) == 1  # 5 lanes of the one unit: one call of 8
    _same_store(repaired, ds)
    _same_store(rf.open_results(path), ds)  # verified, complete


def test_a_damaged_coordinate_is_written_again(whole, tmp_path):
    source, ds = whole
    path = tmp_path / "s.zarr"
    shutil.copytree(source, path)
    _flip_bit(path / "init_scale" / "c" / "0")
    with pytest.raises(DamagedStoreError, match="coordinate init_scale"):
        rf.open_results(path)
    with pytest.warns(DamageWarning, match="coordinate init_scale is damaged"):
        _same_store(rf.run_sweep(_sweep(), path, lanes=5, progress=False), ds)


class _Killed(Exception):
    pass


def test_a_killed_sweep_resumes_with_other_lanes(whole, tmp_path, monkeypatch):
    """Units are fixed by the seeds, not by lanes: a run killed part-way (or out of
    memory) resumes with fewer lanes. The units finished before are kept bit for bit; those
    computed after, at another batch width, agree to rounding: XLA vectorises a batch of
    another width differently (a few ulps of a reduction here; in float64 over 30 steps
    of a stable descent they stay far below rtol = 1e-12)."""
    # Units of 2 seeds (5 seeds: 2 + 2 + 1 per point, 9 units): calls then cut units apart.
    monkeypatch.setattr(plan_module, "_unit_seeds", lambda seeds: min(seeds, 2))
    uninterrupted = rf.run_sweep(_sweep(), tmp_path / "whole.zarr", lanes=24, progress=False)
    path = tmp_path / "killed.zarr"
    real, done = Store.mark_done, []

    def mark_done(self, unit, *args):
        if len(done) == 4:
            raise _Killed
        done.append(unit)
        real(self, unit, *args)

    with monkeypatch.context() as m:
        m.setattr(Store, "mark_done", mark_done)
        with pytest.raises(_Killed):
            rf.run_sweep(_sweep(), path, lanes=24, progress=False)
    # Units 0-3: point 0 (seeds 0-1, 2-3, 4) and point 1's seeds 0-1.
    assert sorted(p.name for p in (path / ".rnnflow").glob("unit-*"))[-1] == "unit-0000003"
    # 3 lanes over the tests' 4 CPU devices: one a device, a call of 4.
    width = -(-3 // len(jax.local_devices())) * len(jax.local_devices())
    with pytest.warns(
        UserWarning, match=rf"resumes with {width} lanes where its finished units used \[24\]"
    ):
        resumed = rf.run_sweep(_sweep(), path, lanes=3, progress=False)
    for name in uninterrupted.data_vars:
        a, b = resumed[name].values, uninterrupted[name].values
        np.testing.assert_array_equal(a[0], b[0], err_msg=name)  # finished before the kill
        np.testing.assert_array_equal(a[1, :2], b[1, :2], err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)
    # The same lanes again: bit for bit.
    path = tmp_path / "again.zarr"
    with monkeypatch.context() as m:
        done.clear()
        m.setattr(Store, "mark_done", mark_done)
        with pytest.raises(_Killed):
            rf.run_sweep(_sweep(), path, lanes=24, progress=False)
    _same_store(rf.run_sweep(_sweep(), path, lanes=24, progress=False), uninterrupted)


def test_a_store_of_another_sweep_or_other_files_are_refused_unchanged(whole, tmp_path):
    source, _ = whole
    path = tmp_path / "s.zarr"
    shutil.copytree(source, path)
    before = _hashes(path)
    with pytest.raises(FileExistsError, match="another sweep"):
        rf.run_sweep(_sweep(seeds=4), path, progress=False)
    assert _hashes(path) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and not a results store"):
        rf.run_sweep(_sweep(), mine, progress=False)
    assert _hashes(mine) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def _lock(path, pid):
    (path / ".rnnflow" / "lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_a_store_another_run_writes_is_refused_and_a_stale_lock_taken_over(whole, tmp_path):
    source, ds = whole
    path = tmp_path / "s.zarr"
    shutil.copytree(source, path)
    (path / ".rnnflow" / "complete").unlink()  # as if the other run had not finished
    _lock(path, os.getppid())  # a live process on this host
    before = _hashes(path)
    with pytest.raises(FileExistsError, match=r"being written by another run \(pid"):
        rf.run_sweep(_sweep(), path, progress=False)
    assert _hashes(path) == before
    # The lock of a killed run: its pid is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(path, dead.pid)
    _same_store(rf.run_sweep(_sweep(), path, lanes=5, progress=False), ds)
    assert not (path / ".rnnflow" / "lock").exists()
