"""One JAX CPU device per core, so that `train_seeds` and `run_sweep` (which spread seeds
over every local device) use every core: the default `import rnnflow` sets
(`default_cpu_devices`) when JAX has not started, and `use_cpu_cores`, which sets any count
and must run before JAX starts its backends."""

import os

import jax


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity call
        return os.cpu_count() or 1


def use_cpu_cores(n: int | None = None) -> int:
    """Make JAX's CPU backend `n` devices, one per core, so that [`rnnflow.train_seeds`][]
    and [`rnnflow.run_sweep`][] spread their seeds over all of them.

    On a CPU, JAX makes one device of all its cores by default, and each step of a block of
    seeds is then split across the cores op by op; with one device per core, each core runs
    its own share of the seeds through the whole step (1.8-2.3× the throughput on two
    cores, see `benchmarks/README.md`). Each device runs the program one device would run
    on the same lanes: results are bitwise the same as on one device for the RNNs under
    gradient descent and Tsit5 flows (tested); XLA compiles a program for several devices on
    its own, and an optimizer's arithmetic has been seen to round differently there (Adam
    on an LRU-style model: 3e-5 relative in the loss after 300 steps).

    `import rnnflow` already makes one device per core when JAX has not started and no
    count was chosen; call this for another count (`use_cpu_cores(1)`: JAX's single CPU
    device), or when JAX was started by something imported before rnnflow is too late
    (below). Call it before any JAX computation (right after the imports): JAX fixes its
    devices when its backends start. The environment variable `JAX_NUM_CPU_DEVICES=n` does
    the same without code; the `rnnflow` command's `--one-device` keeps one.

    **Arguments:**

    - `n`: the number of CPU devices (default: the cores this process may run on).

    **Returns:**

    The number of CPU devices JAX will make.

    **Raises:**

    `RuntimeError` if JAX's backends have already started with another number of CPU
    devices.

    ```python
    import jax
    import rnnflow as rf

    rf.use_cpu_cores()  # before any JAX computation
    ```
    """
    if n is None:
        n = cpu_cores()
    elif isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"`n` must be a positive integer or None; got {type(n).__name__}.")
    elif n < 1:
        raise ValueError(f"`n` must be a positive integer; got {n}.")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX's backends have started: fine only if with n CPU devices
        try:
            started = len(jax.devices("cpu"))
        except RuntimeError:  # no CPU backend (JAX_PLATFORMS names another platform only)
            started = 0
        if started != n:
            raise RuntimeError(
                f"use_cpu_cores({n}) came too late: JAX's backends have already started, "
                f"with {started} CPU devices. Call it before any JAX computation, right "
                "after the imports, or set the environment variable "
                f"JAX_NUM_CPU_DEVICES={n} before Python starts."
            ) from None
    return n


def default_cpu_devices() -> None:
    """One JAX CPU device per core, unless the user has chosen a count or JAX has started.

    Called by `import rnnflow`. A count set in the environment (`JAX_NUM_CPU_DEVICES`, or
    XLA's `--xla_force_host_platform_device_count`) or by `jax.config` is the user's to
    keep; so are the devices of a JAX that has already started (then nothing changes).
    `JAX_NUM_CPU_DEVICES=1` keeps JAX's one CPU device.
    """
    if "JAX_NUM_CPU_DEVICES" in os.environ:
        return
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    if jax.config.jax_num_cpu_devices != -1:  # set in code before the import
        return
    try:
        jax.config.update("jax_num_cpu_devices", cpu_cores())
    except RuntimeError:  # JAX's backends have started: its devices stay as they are
        pass
