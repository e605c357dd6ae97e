import subprocess
import sys

import pytest

import rnnflow as rf
from rnnflow.cli import main
from rnnflow.experiments import load_results, run_experiment

TINY_TOML = """
seeds = 2
parameterizations = ["diagonal"]
teachers = ["short"]
state_dim = 6
scales = [0.01, 0.3]
t1 = 50
"""


def test_list(capsys):
    assert main(["list", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "init_scale" in out and "train_len = 5" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nope"], "unknown experiment 'nope'"),
        (["reproduce", "--only", "nope"], "unknown experiment 'nope'"),
        (["run", "init_scale", "--seeds", "0"], "`seeds` must be a positive integer"),
        (["run", "init_scale", "--config", "missing.toml"], "missing.toml"),
        (["run", "init_scale", "--chunk-size", "0"], "--chunk-size must be a positive integer"),
        (["run", "init_scale", "--lanes", "-1"], "--lanes must be a positive integer"),
    ],
)
def test_bad_input_is_a_clear_error(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnflow: error:") and message in err
    assert not (tmp_path / "rnnflow-results").exists()


@pytest.mark.parametrize(
    "toml, message",
    [
        ("seeds = 2\nlearning_rate = 0.1\n", "unknown config key(s) ['learning_rate']"),
        ("seeds = 2\nscales = 0.1\n", "`scales` must be a non-empty list"),
        ("seeds = nan\n", "`seeds` must be of type int"),
        ("seeds = [\n", "not valid TOML"),
    ],
)
def test_bad_config_file(toml, message, capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    assert main(["run", "init_scale", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_run_writes_results_and_protects_them(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "o"
    assert main(["run", "init_scale", "--config", str(config), "--out", str(out)]) == 0
    assert "median relative extrapolation error" in capsys.readouterr().out
    res = load_results(out)
    assert res.config["seeds"] == 2 and res["extrapolation"].shape == (1, 1, 2, 2)
    assert main(["show", str(out)]) == 0
    # A different config into the same folder: refused, nothing overwritten.
    saved = (out / "results.npz").read_bytes()
    assert (
        main(["run", "init_scale", "--config", str(config), "--seeds", "3", "--out", str(out)]) == 2
    )
    assert "different config" in capsys.readouterr().err
    assert (out / "results.npz").read_bytes() == saved


def test_folder_of_another_experiment_is_refused(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "metadata.json").write_text('{"experiment": "something_else", "config": {}}')
    with pytest.raises(FileExistsError, match="something_else"):
        run_experiment("init_scale", rf.experiments.get_experiment("init_scale").small, out=out)


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "rnnflow", "run", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--float64" in out.stdout and "--config" in out.stdout
