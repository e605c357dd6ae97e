"""One block of seeds, the unit that `train_seeds` and `run_sweep` compile: `run` vmapped
over lanes, each device running the one-device program on its share of the lanes; how many
lanes by default, and on which CPU devices it may run without deadlocking."""

import concurrent.futures
import functools
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .devices import loaded_on
from .train import run


def _block(loss_fn, method, trainable, fixed, save, stop, per_lane=False, keys=None):
    """Train lanes side by side: `run` vmapped.

    The arrays of the loss (a teacher, data) and of the method (a traced rate) go in as an
    argument: shared by every lane, or with `per_lane` one per lane, like the parameters
    (a sweep over teachers or rates); their other leaves (functions) stay in the closure.
    `keys`, if any, are the lanes' PRNG keys.
    """
    arrays, rest = eqx.partition((loss_fn, method), eqx.is_array)

    def one(arrays, p, key):
        loss_fn, method = eqx.combine(arrays, rest)
        return run(loss_fn, method, p, fixed, save, stop, key)

    one = jax.vmap(one, in_axes=(0 if per_lane else None, 0, None if keys is None else 0))
    return one(arrays, trainable, keys)


_one_device = eqx.filter_jit(_block)


class _BlockOnDevices:
    """Train one block of seeds on `devices`, each its share of the lanes, in order.

    Every device runs the program one device runs, on its share, so results are bitwise
    the same whatever the number of devices. (One program partitioned over several devices
    is not that program: XLA's partitioner runs passes of its own first, after which Adam's
    bias correction was seen to round differently.) The program is compiled once, for the
    first device, and loaded onto the others; the devices run at once, since each call
    only dispatches. The result's arrays are sharded over `devices` along the seed axis.
    """

    def __call__(
        self, loss_fn, method, trainable, fixed, save, stop, devices, per_lane=False, keys=None
    ):
        args = (loss_fn, method, trainable, fixed, save, stop, keys)
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trainable)):
            # Abstract evaluation (the shapes of a block's results): no device runs it.
            return _one_device(*args[:-1], per_lane=per_lane, keys=keys)
        here = [(i, d) for i, d in enumerate(devices) if d.process_index == jax.process_index()]
        if not here:
            raise ValueError("none of `devices` belongs to this process.")
        shares = [_placed(_share(args, per_lane, i, len(devices)), d) for i, d in here]
        first = _one_device.lower(*shares[0][:-1], per_lane=per_lane, keys=shares[0][-1])
        first = first.compile()
        programs = [first] + [loaded_on(first, d) for _, d in here[1:]]
        # Where loading is refused, `_one_device` compiles the program for that device.
        programs = [_one_device if p is None else p for p in programs]

        def dispatch(program, share):
            return program(*share[:-1], per_lane=per_lane, keys=share[-1])

        if len(here) == 1:
            outs = [dispatch(programs[0], shares[0])]
        else:
            # One thread per device: a program with host callbacks (equinox's checks in a
            # flow) runs to its end in the thread that calls it, so calls from one thread
            # would run one device after the other.
            outs = list(_threads(len(here)).map(dispatch, programs, shares))
        if len(devices) == 1:
            return outs[0]
        seeds = NamedSharding(Mesh(np.asarray(devices), ("seeds",)), PartitionSpec("seeds"))
        return jax.tree.map(functools.partial(_gather, seeds, len(devices)), *outs)

    def lower(
        self, loss_fn, method, trainable, fixed, save, stop, devices, per_lane=False, keys=None
    ):
        """The program each device runs, lowered for the first device's share, placed on
        this process's first device as a call places it, so that the call reuses this
        lowering instead of lowering the program again."""
        args = _share(
            (loss_fn, method, trainable, fixed, save, stop, keys), per_lane, 0, len(devices)
        )
        here = [d for d in devices if d.process_index == jax.process_index()]
        args = _placed(args, here[0]) if here else args
        return _one_device.lower(*args[:-1], per_lane=per_lane, keys=args[-1])


_block_jit = _BlockOnDevices()


@functools.cache
def _threads(n: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="rnnflow-device")


def _share(args, per_lane, i, n):
    """Device `i` of `n`'s share of a block's arguments: its rows of the lanes' arrays."""
    loss_fn, method, trainable, fixed, save, stop, keys = args
    if n == 1:
        return args
    rows = jax.tree.leaves(trainable)[0].shape[0]
    if rows % n:
        raise ValueError(f"a block of {rows} lanes does not split over {n} devices.")
    k = rows // n

    def cut(tree):
        return jax.tree.map(lambda x: take_rows(x, i * k, (i + 1) * k), tree)

    if per_lane:
        arrays, rest = eqx.partition((loss_fn, method), eqx.is_array)
        loss_fn, method = eqx.combine(cut(arrays), rest)
    return loss_fn, method, cut(trainable), fixed, save, stop, cut(keys)


def take_rows(x, lo: int, hi: int):
    """Rows `lo:hi` of `x`; of an array in a CPU's memory, as a NumPy view: slicing a JAX
    array compiles a program for each shape, which a block's many leaves and shares (each
    device's, each chunk's) would pay for in compile time."""
    if isinstance(x, jax.Array) and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        if all(d.platform == "cpu" for d in x.devices()):
            return np.asarray(x)[lo:hi]
    return x[lo:hi]


def _placed(args, device):
    """`args` with every array on `device`."""
    arrays, rest = eqx.partition(args, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, device), rest)


def _gather(sharding, n, *xs):
    """One array of the devices' rows, in order, left where they are."""
    if not isinstance(xs[0], jax.Array):
        return xs[0]
    shape = (n * xs[0].shape[0],) + xs[0].shape[1:]
    return jax.make_array_from_single_device_arrays(shape, sharding, list(xs))


# Default for `lanes`: wide enough to amortise each step's overhead. On a CPU wider
# batches stop paying off at about a thousand seeds; an accelerator wants far more.
_MAX_LANES = {"cpu": 1024}
_MAX_LANES_ACCELERATOR = 65536
# On a CPU a step of a model with matrix parameters multiplies each seed's matrices into
# vectors, which runs from cache only while a block's matrices fit in it: 256 KiB of them
# (64 seeds of a dense d = 32 RNN in float32) ran gradient descent 1.4-1.5x faster than
# 1024 seeds side by side (dense d = 16 and 32, symmetric d = 32; 2-core Xeon, 2 MiB of
# L2 per core). Vectors (a diagonal RNN) stream through elementwise passes and want wide
# blocks.
_CPU_MATRIX_BYTES = 2**18
_MIN_LANES = 64
# A step whose gradient makes many values per seed (a sequence loss over many sequences:
# the tanh student of the nonlinear experiment makes 1.2 MB per seed) runs from cache only
# while a block's values fit in about the last-level cache: 32 MiB of them (27 seeds there)
# ran gradient descent 1.28x faster than 128 seeds side by side (2-core AMD EPYC, 32 MiB
# of L3). Steps that make less than this / 64 per seed keep the rules above.
_CPU_STEP_BYTES = 2**25


def step_bytes(fn, *args) -> int:
    """Bytes of the values that `fn(*args)` makes, summed over the equations of its jaxpr
    (those of a loop's body counted once): traced, not compiled."""

    def total(jaxpr) -> int:
        n = 0
        for eqn in jaxpr.eqns:
            for v in eqn.outvars:
                shape, dtype = getattr(v.aval, "shape", None), getattr(v.aval, "dtype", None)
                if shape is not None and dtype is not None:
                    n += math.prod(shape) * dtype.itemsize
            n += sum(total(sub) for sub in jax.extend.core.jaxprs_in_params(eqn.params))
        return n

    return total(jax.make_jaxpr(fn)(*args).jaxpr)


# `gradient_bytes` by signature: the structure, the arrays' shapes, the other leaves.
_GRADIENT_BYTES: dict = {}


def gradient_bytes(objective, trainable) -> int:
    """`step_bytes` of one seed's loss and gradient (`objective.value_and_grad(trainable)`),
    or 0 where they cannot be traced (a method may never ask for the gradient; it says what
    is wrong, not this estimate). Kept by the shapes of the arrays and the other leaves, so
    that a call with new numbers of the same shapes traces nothing."""
    leaves, treedef = jax.tree.flatten((objective, trainable))
    signature = (treedef, *((x.shape, x.dtype) if eqx.is_array(x) else x for x in leaves))
    try:
        return _GRADIENT_BYTES[signature]
    except KeyError:
        pass
    except TypeError:  # an unhashable leaf: not kept
        signature = None
    try:
        size = step_bytes(objective.value_and_grad, trainable)
    except (TypeError, ValueError):
        size = 0
    if signature is not None:
        if len(_GRADIENT_BYTES) > 256:
            _GRADIENT_BYTES.clear()
        _GRADIENT_BYTES[signature] = size
    return size


def cache_lanes(step: int) -> int:
    """The most lanes on a CPU for a step that makes `step` bytes per seed: as many as
    `_CPU_STEP_BYTES` holds where that is fewer than `_MIN_LANES`, else no limit."""
    if step * _MIN_LANES > _CPU_STEP_BYTES:
        return max(1, _CPU_STEP_BYTES // step)
    return _MAX_LANES_ACCELERATOR


def _default_lanes(trainable, num_seeds: int, platform: str, step: int = 0) -> int:
    """Seeds side by side on one device, for `num_seeds` seeds on that device; `step` is
    the bytes of one seed's gradient (`step_bytes`), or 0 if unknown."""
    cap = _MAX_LANES.get(platform, _MAX_LANES_ACCELERATOR)
    if platform == "cpu":
        cap = min(cap, cache_lanes(step))
    # Per-seed matrices: leaves whose last two axes are both longer than 1.
    matrix_bytes = sum(
        math.prod(x.shape[1:]) * x.dtype.itemsize
        for x in jax.tree.leaves(trainable)
        if x.ndim >= 3 and min(x.shape[-2:]) > 1
    )
    if platform == "cpu" and matrix_bytes:
        cap = min(cap, max(_MIN_LANES, _CPU_MATRIX_BYTES // matrix_bytes))
    # The fewest blocks the cap allows, all of one width, so that padding stays small.
    return math.ceil(num_seeds / math.ceil(num_seeds / cap))


def _without_lapack_deadlock(args, devices, lanes):
    """`devices`, or the first of them alone if the step or a save metric calls LAPACK,
    for blocks of `lanes` seeds per device (see `_lapack_safe`). The check lowers the first
    block as it will run, so the call that follows reuses the trace."""
    loss_fn, method, trainable, fixed, save, stop, keys = args
    block, keys = jax.tree.map(  # NumPy zeros: no program to compile for them
        lambda x: np.zeros((lanes * len(devices),) + x.shape[1:], x.dtype), (trainable, keys)
    )
    keys = None if keys is None else jax.random.wrap_key_data(keys)
    return _lapack_safe(
        devices,
        lambda: _block_jit.lower(loss_fn, method, block, fixed, save, stop, devices, keys=keys),
        "train_seeds",
        stacklevel=4,
    )


def _lapack_safe(devices, lower, caller: str, stacklevel: int):
    """`devices`, or the first of them alone if `lower()` (a block lowered for `devices`)
    calls LAPACK on several CPU devices.

    With several CPU devices running at once (each its own program, in this process),
    jaxlib 0.10.2's batched LAPACK calls (e.g. `jnp.linalg.eigh` under vmap) can deadlock:
    each device's thread waits inside the call for batch tasks queued on the thread pool
    that those same threads make up. One device leaves a thread free.
    """
    if len(devices) == 1 or devices[0].platform != "cpu":
        return devices
    if "custom_call @lapack_" not in lower().as_text():
        return devices
    warnings.warn(
        f"{caller} runs on one CPU device instead of {len(devices)}: the step or a save "
        "metric calls LAPACK (e.g. jnp.linalg.eigh), which can deadlock when several CPU "
        "devices run at once (jaxlib 0.10.2). rnnflow.symmetric_eigenvalues, "
        "symmetric_eigh, singular_values, triangular_factor and cholesky compute without "
        "LAPACK.",
        RuntimeWarning,
        stacklevel=stacklevel,
    )
    return devices[:1]
