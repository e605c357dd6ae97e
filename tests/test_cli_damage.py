"""The command facing damage from outside: a damaged chunk recomputed with a one-line
notice, a full disk and a second writer each as one line, a damaged finished results
folder repaired by running it again. Ground truth: the store or folder before the damage,
value by value."""

import errno
import json
import os
import shutil
import socket

import numpy as np
import pytest

import rnnflow as rf
from rnnflow._sweeps.store import Store
from rnnflow.cli import main
from rnnflow.experiments import load_results

SWEEP_TOML = """
seeds = 3

[axes]
"init.scale" = [0.01, 0.3]

[model]
state_dim = 4

[method]
lr = 0.05
t1 = 2.0

[save]
num = 3
metrics = ["loss", "extrapolation"]
horizon = 10
"""

TINY_TOML = """
seeds = 2
parameterizations = ["diagonal"]
teachers = ["short"]
state_dim = 6
scales = [0.01, 0.3]
t1 = 50
"""


def _same(a, b):
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-damage")
    config = folder / "scales.toml"
    config.write_text(SWEEP_TOML)
    assert main(["sweep", str(config), "--quiet"]) == 0
    return config, folder / "scales.zarr"


def test_a_damaged_chunk_is_recomputed_with_one_line(sweep_store, tmp_path, capsys):
    config, source = sweep_store
    out = tmp_path / "s.zarr"
    shutil.copytree(source, out)
    chunk = out / "extrapolation" / "c" / "1" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-3])  # truncated
    capsys.readouterr()
    assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("rnnflow: warning:"), err
    assert "unit 1 (init_scale=0.3, seeds 0-2)" in err[0] and "extrapolation/c/1/0/0" in err[0]
    _same(rf.open_results(out), rf.open_results(source))


def test_a_full_disk_is_one_line_saying_what_is_kept(sweep_store, tmp_path, capsys, monkeypatch):
    config, _ = sweep_store

    def full(self, name, region, values):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(Store, "write", full)
    out = tmp_path / "s.zarr"
    assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rnnflow: error: writing the results in")
    assert "File too large" in err and "finished before is kept" in err and str(out) in err


def _lock(lock_file):
    lock_file.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))


def test_a_second_writer_is_refused_in_one_line(sweep_store, tmp_path, capsys):
    config, source = sweep_store
    out = tmp_path / "s.zarr"
    shutil.copytree(source, out)
    (out / ".rnnflow" / "complete").unlink()
    _lock(out / ".rnnflow" / "lock")
    assert main(["sweep", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is being written by another run (pid" in err
    # A results folder another `rnnflow run` has just claimed: its lock alone is there.
    folder = tmp_path / "run"
    folder.mkdir()
    _lock(folder / ".lock")
    args = ["run", "init_scale", "--small", "--seeds", "1", "--out", str(folder)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is being written by another run" in err
    assert "not empty" not in err


def test_a_damaged_finished_folder_is_repaired_by_running_it_again(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "o"
    args = ["run", "init_scale", "--config", str(config), "--out", str(out), "--quiet"]
    assert main(args) == 0
    before = load_results(out)
    keep = {name: ds.load() for name, ds in before.data.items()}
    chunk = next((out / "sweep.zarr" / "extrapolation" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    chunk.write_bytes(bytes(data))
    assert main(["show", str(out)]) == 2
    assert "is damaged" in capsys.readouterr().err
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "rnnflow: warning:" in err and "extrapolation/c/" in err
    after = load_results(out)
    for name, ds in keep.items():
        _same(after[name], ds)
    assert after.summary.to_dict() == before.summary.to_dict()
