"""The `rnnflow` command: runs, sweeps from TOML files, and bad input as one line, exit 2."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import rnnflow as rf
from rnnflow.cli import main
from rnnflow.experiments import load_results

TINY_TOML = """
seeds = 2
parameterizations = ["diagonal"]
teachers = ["short"]
state_dim = 6
scales = [0.01, 0.3]
t1 = 50
"""

SWEEP_TOML = """
seeds = 3

[axes]
"init.scale" = [0.01, 0.3]
"model.kind" = ["diagonal", "dense"]

[model]
state_dim = 4

[method]
lr = 0.05
t1 = 5.0

[save]
num = 3
metrics = ["loss", "extrapolation", "effective_dim"]
horizon = 20
"""


def _main(args) -> int:
    """`main`, with argparse's own exits (bad option values) as return codes."""
    try:
        return main(args)
    except SystemExit as e:
        return e.code


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rnnflow: error:") and err.count("\n") == 1, err
    return err


def test_list(capsys):
    assert main(["list", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "init_scale" in out and "train_len = 5" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nope"], "unknown experiment 'nope'"),
        (["reproduce", "--only", "nope"], "unknown experiment 'nope'"),
        (["reproduce", "--jobs", "0"], "--jobs must be a positive integer"),
        (["run", "init_scale", "--seeds", "0"], "`seeds` must be a positive integer"),
        (["run", "init_scale", "--seeds", "x"], "argument --seeds: invalid int value"),
        (["run", "init_scale", "--config", "missing.toml"], "--config missing.toml does not"),
        (["run", "init_scale", "--config", "."], "--config . is a folder"),
        (["run", "init_scale", "--lanes", "-1"], "--lanes must be a positive integer"),
        (["show", "no_such"], "no_such does not exist"),
        (["sweep", "missing.toml"], "missing.toml does not exist"),
        (["sweep", "."], ". is a folder, not a TOML sweep file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _main(args) == 2
    assert message in _err(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing was written


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
    err = _err(capsys)
    assert message in err and str(path) in err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A complete tiny init_scale run (float64, as the suite runs)."""
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "c.toml"
    config.write_text(TINY_TOML)
    out = folder / "o"
    assert main(["run", "init_scale", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    return config, out


def test_run_writes_results_and_show_prints_them(tiny_run, capsys):
    config, out = tiny_run
    res = load_results(out)
    assert res.config["seeds"] == 2 and res["sweep"].extrapolation.sizes["init_scale"] == 2
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("init_scale (float64): median relative extrapolation error")
    assert "diagonal:" in shown and "small_init = " in shown


def test_another_config_is_refused_and_nothing_changes(tiny_run, capsys):
    config, out = tiny_run
    saved = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    args = ["run", "init_scale", "--config", str(config), "--out", str(out), "--seeds", "3"]
    assert main(args) == 2
    assert "for another config" in _err(capsys)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == saved


@pytest.mark.slow  # two runs of the command in processes of their own: about 12 s
def test_float32_results_are_not_taken_for_float64(tmp_path):
    # The fault as a user meets it: a complete float32 run, then --float64 into the same
    # folder. A fresh process, as jax's precision is set once per process.
    out = tmp_path / "o"
    config = tmp_path / "c.toml"
    config.write_text(TINY_TOML.replace("t1 = 50", "t1 = 5"))
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    cmd = [sys.executable, "-m", "rnnflow", "run", "init_scale", "--config", str(config),
           "--out", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads((out / "summary.json").read_text())["float64"] is False
    again = subprocess.run(cmd + ["--float64"], capture_output=True, text=True, env=env)
    assert again.returncode == 2
    assert again.stderr.strip().endswith("(nothing was overwritten).")
    assert "another precision" in again.stderr and again.stderr.count("\n") == 1


@pytest.mark.parametrize("kind", ["file", "read-only folder", "read-only parent"])
def test_out_that_cannot_hold_results_is_one_line(kind, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("mine")
        message, named = "is a file, not a results folder", out
    else:
        # Root writes into read-only folders, so the check asks os.access, as it would for
        # any other user: deny writing into the read-only one.
        ro = out if kind == "read-only folder" else tmp_path
        if kind == "read-only folder":
            out.mkdir()
        ro.chmod(0o500)
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and os.fspath(p) != str(ro))
        message, named = "permission denied", ro
    args = ["run", "init_scale", "--small", "--seeds", "1", "--out", str(out)]
    try:
        assert main(args) == 2
        err = _err(capsys)
        assert message in err and str(named) in err
    finally:
        tmp_path.chmod(0o700)
        if out.is_dir():
            out.chmod(0o700)
    assert out.read_text() == "mine" if kind == "file" else not any(tmp_path.rglob("*.json"))


def test_sweep_from_a_toml_file(tmp_path, capsys):
    path = tmp_path / "scales.toml"
    path.write_text(SWEEP_TOML)
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert "dimensions init_scale: 2, model_kind: 2, seed: 3, time: 3" in capsys.readouterr().out
    ds = rf.open_results(tmp_path / "scales.zarr")
    assert ds.loss.dims == ("init_scale", "model_kind", "seed", "time")
    assert list(ds.model_kind.values) == ["diagonal", "dense"]
    assert set(ds.data_vars) >= {"loss", "extrapolation", "effective_dim", "result"}
    # Ground truth: one point trained alone, the same student, teacher, method and key.
    import jax

    key = jax.random.split(jax.random.key(0), 3)[1]
    model = rf.DenseRNN(4)
    loss_fn = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 5).bind(model)
    traj = rf.train(loss_fn, model.init(key=key, scale=0.3), rf.GradientDescent(0.05, 100),
                    save=rf.Save(num=3))  # fmt: skip
    got = ds.sel(init_scale=0.3, model_kind="dense", seed=1)
    np.testing.assert_allclose(got.loss.values, traj.metrics["loss"], rtol=1e-10)


RULES_PY = """
import jax
import rnnflow as rf


def minus_gradient(loss_fn):
    return rf.Rule(lambda p: jax.tree.map(lambda g: -g, jax.grad(loss_fn)(p)), loss=loss_fn)


def slow_recurrence(loss_fn):
    def field(params):
        g = jax.grad(loss_fn)(params)
        return rf.RNNParams(-0.5 * g.a, -g.b, -g.c)

    return rf.Rule(field, loss=loss_fn)
"""
RULE_TOML = """
seeds = 2
[axes]
"init.scale" = [0.3]
[model]
kind = "dense"
state_dim = 3
[method]
kind = "KIND"
lr = 0.05
t1 = 2.0
[save]
num = 3
metrics = ["loss", "relative_imbalance"]
"""


@pytest.mark.parametrize("kind", ["gd", pytest.param("gf", marks=pytest.mark.slow)])
def test_a_sweep_file_trains_a_rule_from_a_factory(kind, tmp_path, monkeypatch, capsys):
    """`[rule] factory = "module:function"`: -∇L as a rule gives the sweep of the loss
    itself (to rounding: autodiff against the same autodiff through the rule's path), and
    another field gives the run that field's own `train` gives."""
    import jax

    (tmp_path / "cli_rules.py").write_text(RULES_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = RULE_TOML.replace("KIND", kind)
    stores = {}
    for name, extra in [
        ("loss", ""),
        ("minus", '[rule]\nfactory = "cli_rules:minus_gradient"\n'),
        ("slow", '[rule]\nfactory = "cli_rules:slow_recurrence"\n'),
    ]:
        (tmp_path / f"{name}.toml").write_text(text + extra)
        assert main(["sweep", str(tmp_path / f"{name}.toml"), "--quiet"]) == 0
        stores[name] = rf.open_results(tmp_path / f"{name}.zarr")
    np.testing.assert_allclose(stores["minus"].loss, stores["loss"].loss, rtol=1e-10)
    # Ground truth for the other field: seed 1 trained alone with the same key.
    import cli_rules

    model = rf.DenseRNN(3)
    loss_fn = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 5).bind(model)
    params = model.init(key=jax.random.split(jax.random.key(0), 2)[1], scale=0.3)
    method = rf.GradientDescent(0.05, 40) if kind == "gd" else rf.GradientFlow(2.0)
    traj = rf.train(cli_rules.slow_recurrence(loss_fn), params, method, save=rf.Save(num=3))
    got = stores["slow"].sel(init_scale=0.3, seed=1).loss.values
    np.testing.assert_allclose(got, traj.metrics["loss"], rtol=1e-6)
    assert not np.allclose(got, stores["loss"].sel(init_scale=0.3, seed=1).loss.values)


GOOD = '[axes]\n"init.scale" = [0.1]\n[method]\nt1 = 1.0\n'


@pytest.mark.parametrize(
    "text, message",
    [
        ('seeds = 2\n[axes]\n"init.scael" = [0.1]\n', "(did you mean `init.scale`?)"),
        ("seeds = 2\n" + GOOD + '[model]\nkind = "lstm"\n', "`model.kind` = 'lstm' is unknown"),
        ('seeds = 2\n[axes]\n"model.kind" = ["lstm"]\n', "`axes.model.kind` = 'lstm' is unknown"),
        ("seeds = 2\n" + GOOD + "[mehtod]\nlr = 0.1\n", "top level (did you mean `method`?)"),
        ("seeds = 2\n" + GOOD + "learning_rate = 0.1\n", "unknown key `learning_rate` in [method]"),
        ("seeds = 2\n" + GOOD.replace("1.0", '"long"'), "`method.t1` must be float"),
        ('seeds = 2\n[axes]\n"init.scale" = [0.1]\n', "[method] needs its end time"),
        ("seeds = 2\n[method]\nt1 = 1.0\n", "[axes] section must name at least one"),
        (GOOD, "`seeds` (seeds per point) is missing"),
        ("seeds = 2\n" + GOOD.replace("[0.1]", "0.1"), "`init.scale` must be a non-empty list"),
        ("seeds = 2\n" + GOOD.replace("[0.1]", "[0.1, 0.1]"), "`init.scale` repeats a value"),
        ("seeds = 2\n" + GOOD + '[save]\nmetrics = ["los"]\n', "`los` in save.metrics"),
        ("seeds = 2\n" + GOOD + '[rule]\nfactory = "no_such_module:f"\n', "`rule.factory` = "),
        ("seeds = 2\n" + GOOD + '[rule]\nfactory = "json"\n', "`rule.factory` must be"),
    ],
)  # fmt: skip
def test_bad_sweep_file_is_one_line_before_any_work(text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["sweep", str(path)]) == 2
    err = _err(capsys)
    assert message in err and str(path) in err
    assert not (tmp_path / "bad.zarr").exists()


def test_out_under_a_file_is_one_line_naming_out(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP_TOML)
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "s.zarr"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 2
    err = _err(capsys)
    assert "notes.txt is a file: the store" in err and err.rstrip().endswith("(--out)")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "rnnflow", "sweep", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--float64" in out.stdout and "CONFIG.toml" in out.stdout


def test_out_of_memory_is_one_line_naming_lanes(tmp_path, capsys, monkeypatch):
    import rnnflow.experiments

    def oom(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 1e11 bytes.")

    monkeypatch.setattr(rnnflow.experiments, "run_experiment", oom)
    args = ["run", "init_scale", "--small", "--seeds", "1", "--out", str(tmp_path / "o")]
    assert main(args) == 1
    err = _err(capsys)
    assert "ran out of memory" in err and "--lanes" in err and "1e11 bytes" in err

    def other(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(rnnflow.experiments, "run_experiment", other)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        main(args)


@pytest.mark.slow
def test_reproduce_at_once_gives_the_results_of_one_at_a_time(tmp_path):
    # Two experiments in two processes of one CPU device each, against both in one process
    # with one device per core: every stored array and the summaries are the same, bitwise.
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_ENABLE_X64"] = "0"
    names = ["counterexample", "learning_dynamics"]
    for jobs in ("1", "2"):
        cmd = [sys.executable, "-m", "rnnflow", "reproduce", "--quiet", "--jobs", jobs]
        cmd += ["--out", str(tmp_path / jobs), "--only", *names]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        assert "2 experiments in" in out.stdout
    for name in names:
        one, two = (load_results(tmp_path / jobs / name) for jobs in ("1", "2"))
        assert one.summary.headline == two.summary.headline
        assert one.data.keys() == two.data.keys()
        for key in one.data:
            for var in one.data[key].variables:
                np.testing.assert_array_equal(
                    one.data[key][var].values, two.data[key][var].values, err_msg=f"{key}/{var}"
                )
