"""`import rnnflow` makes one JAX CPU device per core when JAX has not started and no count
was chosen; a count the user chose, or a JAX that has started, is left as it is. Each case
runs in a fresh process, since JAX fixes its devices when it starts."""

import os
import subprocess
import sys

import pytest

from rnnflow._engine.devices import cpu_cores


def _python(code: str, **env) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python on the CPU, with no device count in the environment
    but `env`'s, warnings shown."""
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        env={**clean, "JAX_PLATFORMS": "cpu", **env},
        capture_output=True,
        text=True,
        check=True,
    )


def _devices(code: str, **env) -> int:
    out = _python(code + "\nprint(len(jax.devices('cpu')))", **env)
    return int(out.stdout.split()[-1])


IMPORT = "import jax\nimport rnnflow\n"


def test_import_makes_one_device_per_core():
    assert _devices(IMPORT) == cpu_cores()


@pytest.mark.parametrize(
    "code, env, expected",
    [
        (IMPORT, {"JAX_NUM_CPU_DEVICES": "1"}, 1),
        (IMPORT, {"JAX_NUM_CPU_DEVICES": "3"}, 3),
        (IMPORT, {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, 3),
        ("import jax\njax.config.update('jax_num_cpu_devices', 3)\nimport rnnflow\n", {}, 3),
        ("import jax\njax.numpy.ones(1)\nimport rnnflow\n", {}, 1),  # JAX had started
        (IMPORT + "rnnflow.use_cpu_cores(1)\n", {}, 1),
    ],
    ids=["env-one", "env-three", "xla-flags", "config", "started", "use_cpu_cores"],
)
def test_a_chosen_count_is_kept(code, env, expected):
    assert _devices(code, **env) == expected


@pytest.mark.skipif(cpu_cores() < 2, reason="one core: one device is every core")
@pytest.mark.parametrize("env, warned", [({}, True), ({"JAX_NUM_CPU_DEVICES": "1"}, False)])
def test_a_started_jax_with_fewer_devices_than_cores_is_named(env, warned):
    # JAX started by a computation before the import keeps its one CPU device; the user is
    # told how to get every core, unless they chose one device.
    out = _python("import jax\njax.numpy.ones(1)\nimport rnnflow\n", **env)
    assert ("JAX started before rnnflow was imported" in out.stderr) == warned, out.stderr
    if warned:
        assert f"JAX_NUM_CPU_DEVICES={cpu_cores()}" in out.stderr
