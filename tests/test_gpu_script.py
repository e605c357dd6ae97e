"""`benchmarks/gpu.sh` in its tiny mode: every GPU step at the smallest sizes, on the CPU,
still writes `gpu.json` and `gpu.md`. It starts a process per step, each compiling its
own programs: one and a half to two minutes on two cores, so it is a `slow` check, which
CI runs after the default tests."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ["device_peaks", "gd_throughput", "scan", "gradient_flow", "memory"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_NUM_CPU_DEVICES"] = "1"  # one CPU device
    env.update(OUT=str(out), PYTHON=sys.executable, RNNFLOW_GPU_TINY="1")
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmarks", "gpu.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, out


def _expected_status(name):
    """Every step needs only rnnflow (gd_throughput skips its PyTorch baselines without
    torch)."""
    return "ok"


def test_json_names_every_step(tiny_run):
    proc, out = tiny_run
    report = json.loads((out / "gpu.json").read_text())
    assert report["tiny"] is True
    assert report["environment"]["backend"] == "cpu"
    assert "CpuDevice" in report["environment"]["devices"]
    assert [s["name"] for s in report["steps"]] == STEPS
    for step in report["steps"]:
        assert step["status"] == _expected_status(step["name"]), step.get("log_tail")
        assert (step["results"] is not None) == (step["status"] == "ok")
    assert proc.returncode == (0 if all(s["status"] == "ok" for s in report["steps"]) else 1)
    assert proc.stdout.splitlines()[:2] == ["=== devices", "devices: [CpuDevice(id=0)]"]


def test_markdown_has_a_row_per_step(tiny_run):
    _, out = tiny_run
    lines = (out / "gpu.md").read_text().splitlines()
    header = lines.index("| step | command | status | time | limit | result |")
    assert lines[header + 1].startswith("| --- |")
    rows = lines[header + 2 :]
    assert [row.split(" | ")[0] for row in rows] == [f"| {name}" for name in STEPS]
    for row, name in zip(rows, STEPS, strict=True):
        assert f"| {_expected_status(name)} |" in row
