"""One JAX CPU device per core, so that `train_seeds` and `run_sweep` (which spread seeds
over every local device) use every core: `import rnnflow` asks for them when JAX has not
started (`default_cpu_devices`), `use_cpu_cores` for any count (before JAX starts its
backends); and a program compiled for one device loaded onto another (`loaded_on`)."""

import dataclasses
import os
import warnings
import weakref

import jax
from jax.sharding import SingleDeviceSharding


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
    cores, see `benchmarks/README.md`). Each device runs the program one device runs, on
    the same lanes, compiled once: results are bitwise the same as on one device whatever
    the model and method (tested: the RNNs under gradient descent and a Tsit5 flow, Adam
    on an LRU-style model of one's own, a sweep).

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
                f"with {started} CPU device{'s' if started != 1 else ''}. Call it before any "
                "JAX computation (a PRNG key and jax.devices() count too), right "
                "after the imports, or set the environment variable "
                f"JAX_NUM_CPU_DEVICES={n} before Python starts."
            ) from None
    return n


def count_in_environment() -> bool:
    """Whether the environment sets the number of JAX CPU devices (`JAX_NUM_CPU_DEVICES`,
    or XLA's `--xla_force_host_platform_device_count`): the user's count, to keep."""
    return "JAX_NUM_CPU_DEVICES" in os.environ or (
        "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    )


def default_cpu_devices() -> None:
    """One JAX CPU device per core, unless the user has chosen a count or JAX has started.

    Called by `import rnnflow`. A count set in the environment (`JAX_NUM_CPU_DEVICES`, or
    XLA's `--xla_force_host_platform_device_count`) or by `jax.config` is the user's to
    keep; so are the devices of a JAX that has already started (then nothing changes but
    a warning, when it computes on fewer CPU devices than there are cores).
    `JAX_NUM_CPU_DEVICES=1` keeps JAX's one CPU device.
    """
    if count_in_environment():
        return
    if jax.config.jax_num_cpu_devices != -1:  # set in code before the import
        return
    cores = cpu_cores()
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # JAX's backends have started: its devices stay as they are
        if jax.default_backend() == "cpu" and len(jax.devices()) < cores:
            warnings.warn(
                f"JAX started before rnnflow was imported, with {len(jax.devices())} CPU "
                f"device(s) for {cores} cores: train_seeds and run_sweep will use only "
                "that many. Import rnnflow before any JAX computation (a PRNG key and "
                f"jax.devices() count too), or set JAX_NUM_CPU_DEVICES={cores}, to use "
                "every core; JAX_NUM_CPU_DEVICES=1 silences this.",
                RuntimeWarning,
                stacklevel=3,
            )


# The first device's executable -> {device: the same executable loaded there, or None}.
_LOADED = weakref.WeakKeyDictionary()


def loaded_on(compiled, device):
    """`compiled`, a filter_jit program compiled for one device, loaded onto `device`: the
    same machine code, without compiling again. None where this JAX cannot (then the caller
    compiles it for `device`, which costs time but gives the same results)."""
    try:
        loaded = _LOADED.setdefault(compiled.compiled._executable, {})
    except (AttributeError, TypeError):
        return None
    if device not in loaded:
        try:
            loaded[device] = _load(compiled, device)
        except Exception:  # an internal of another JAX version: compile instead
            loaded[device] = None
    return loaded[device]


def _load(compiled, device):
    # The executable is XLA's machine code with the devices it runs on; JAX keeps it with
    # the shardings of its arguments and results. All of them name the compiling device,
    # and are renamed here; host callbacks (Equinox's runtime errors) go along as they are.
    from jax._src import compiler
    from jax._src.lib import xla_client

    jitted = compiled.compiled
    unloaded = jitted._executable._unloaded_executable
    (source,) = unloaded.device_list
    client = device.client
    executable = unloaded.xla_executable
    if isinstance(executable, xla_client.LoadedExecutable):
        data = client.serialize_executable(executable)
    else:
        data = executable.serialize()
    executable = client.deserialize_executable(
        data,
        xla_client.DeviceList((device,)),
        compiler.get_compile_options(1, 1, [device], backend=client),
        host_callbacks=unloaded.host_callbacks,
    )

    def moved(sharding):
        if not isinstance(sharding, SingleDeviceSharding) or sharding.device_set != {source}:
            raise ValueError(f"not a one-device sharding on {source}: {sharding}")
        return SingleDeviceSharding(device, memory_kind=sharding.memory_kind)

    unloaded = dataclasses.replace(
        unloaded,
        xla_executable=executable,
        device_list=xla_client.DeviceList((device,)),
        input_shardings=[moved(s) for s in unloaded.input_shardings],
        output_shardings=[moved(s) for s in unloaded.output_shardings],
    )
    params = jitted._params
    jitted = jax.stages.Compiled(
        unloaded.load(),
        jax.device_put(list(params.const_args), device),
        jitted.args_info,
        jitted.out_tree,
        no_kwargs=params.no_kwargs,
        in_types=params.in_types,
        out_types=params.out_types,
    )
    return dataclasses.replace(compiled, compiled=jitted)
