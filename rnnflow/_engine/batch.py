"""`train_seeds`: [`rnnflow.train`][] over a leading seed axis, in blocks and chunks, over
every device."""

import contextlib
import functools
import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from . import blocks as _blocks
from .blocks import _default_lanes, _without_lapack_deadlock, take_rows
from .checkpoints import Checkpoints, array_hash, computation_hash
from .checks import check_positive_int
from .devices import cpu_cores
from .methods import AbstractMethod
from .objective import Objective, check_finite, check_leaves, offered, split, split_real
from .real_view import to_complex
from .train import check_call, check_kinds, run, with_fixed
from .trajectory import Save, Stop, Trajectory


def _key_data(keys, num_seeds: int):
    """The raw data of one PRNG key per seed (slices and hashes like any array)."""
    if keys is None:
        raise TypeError(
            "this run draws random numbers (minibatches or noise): give `keys`, one PRNG key "
            "per seed (jax.random.split(key, seeds))."
        )
    keys = jnp.asarray(keys)
    if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) or keys.shape != (num_seeds,):
        raise ValueError(
            f"`keys` must be {num_seeds} PRNG keys, one per seed (jax.random.split(key, "
            f"{num_seeds})); got {keys.dtype} of shape {keys.shape}."
        )
    return jax.random.key_data(keys)


def _num_seeds(loss_fn, params) -> int:
    """The length of the leading seed axis shared by every array of `params`."""
    arrays = jax.tree_util.tree_leaves_with_path(split(params)[0])
    if not arrays or any(x.ndim < 1 for _, x in arrays):
        raise ValueError(
            "`params` must have a leading seed axis on every floating-point array "
            "(see init_seeds, or stack one seed's parameters with jax.vmap)."
        )
    own = offered(loss_fn, "check")
    if own is not None:
        try:
            own(params)
        except (TypeError, ValueError):
            pass
        else:  # the batch fits the model as one seed: its first axis would be taken for seeds
            raise ValueError(
                "`params` are one seed's parameters (no leading seed axis): use `train`, or "
                "stack seeds (see init_seeds)."
            )
    sizes = {jax.tree_util.keystr(k): x.shape[0] for k, x in arrays}
    if len(set(sizes.values())) != 1:
        raise ValueError(
            f"every array of `params` must have the same leading seed axis; got {sizes}."
        )
    return next(iter(sizes.values()))


def train_seeds(
    loss_fn,
    params: PyTree,
    method: AbstractMethod,
    *,
    save: Save = Save(),
    stop: Stop = Stop(),
    chunk_size: int | None = None,
    lanes: int | None = None,
    devices=None,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    keys=None,
) -> Trajectory:
    """[`rnnflow.train`][] over a leading seed axis of `params`, chunked and spread over devices.

    **Arguments:** those of [`rnnflow.train`][], with every floating-point array of
    `params` carrying a leading seed axis (see [`rnnflow.init_seeds`][], or
    `eqx.filter_vmap` of a model's constructor over keys), and

    - `lanes`: seeds computed side by side (vmapped) on each device. Working memory grows
      with it, not with the number of seeds. Default: a device's share of the seeds, in
      blocks of equal width of at most 65536 on an accelerator; on a CPU a core's share
      (whatever the number of devices, up to one per core), in blocks of at most 1024, or
      as many as keep 256 KiB of per-seed matrices (a dense RNN: 64 seeds of d = 32 in
      float32), which the CPU's cache then holds; where one seed's loss and gradient make
      over half a megabyte of values (read from their jaxpr, traced for the first seed), as
      many as keep 32 MiB of them.
    - `chunk_size`: seeds per chunk. Chunks are computed one after another; each finished
      chunk is moved to host memory (and written to `checkpoint`), so device memory holds
      one chunk's results. Rounded up to a multiple of `lanes` × the number of devices.
      Default: all seeds in one chunk.
    - `devices`: the devices to spread the seed axis over (default: `jax.devices()`, all
      of them); each runs the one-device program on its share of a block's lanes.
      Multi-host: call `jax.distributed.initialize()` first, then pass `jax.devices()`.
      On a CPU, JAX by itself makes one device of all its cores; `import rnnflow` makes
      one per core instead, when JAX has not started and no count was chosen (see
      [`rnnflow.use_cpu_cores`][] for another count, or `JAX_NUM_CPU_DEVICES`), and the
      seeds then run on all of them at once: with one per core on two cores, gradient
      descent ran 2.0-2.3× and a Tsit5 flow 1.9× faster. If the step or a save metric
      calls LAPACK (e.g. `jnp.linalg.eigh`; rnnflow's own metrics do not), which with
      jaxlib 0.10.2 can deadlock when several CPU devices run at once, the seeds run on
      the first device alone, with a warning.
    - `progress`: print a line as each chunk finishes, and show a gradient flow's progress
      within a chunk (a `diffrax.TextProgressMeter`, if it has no meter).
    - `keys`: one PRNG key per seed (`jax.random.split(key, seeds)`), for runs that draw
      random numbers (minibatches, Brownian paths): seed `i` draws from `keys[i]` alone, so
      its run is the same whatever else runs beside it.
    - `checkpoint`: a folder to keep each finished chunk in. A run killed at any point and
      called again with the same arguments loads the finished chunks and computes only
      the rest; the result is identical to an uninterrupted run. A chunk file that is
      damaged is recomputed (with a warning); a folder of another run is refused.

    **Returns:**

    A [`rnnflow.Trajectory`][] whose fields have a leading seed axis, as fresh arrays on
    the default device on a CPU (whatever devices computed them). Each seed is computed
    independently: a diverging seed is marked in `result` and leaves every other seed's
    values untouched.

    **Reproducibility.** Seed `i` is always computed in lane `i mod lanes` of the same
    compiled program (one device's, whatever the number of devices), so for a given `lanes`
    results are bitwise identical whatever the `chunk_size`, the number of devices and
    whether or not the run was interrupted, for any model and method; on a CPU the default
    `lanes` are the same on one device as on one per core, so results are too (tested
    bitwise: the RNNs under gradient descent and Tsit5, Adam on an LRU-style model of
    one's own). A different `lanes` is a different batch width, which XLA may vectorise
    with different rounding: gradient descent then agrees to about one ulp, while an
    adaptive gradient flow, whose step-size control amplifies rounding, agrees to about
    its tolerance (3e-8 at the default rtol = 1e-6, dense d = 8, float64).

    ```python
    keys = jax.random.split(jax.random.key(0), 1000)
    params = init_seeds(model, keys, scale=1e-3)
    traj = train_seeds(loss.bind(model), params, method, chunk_size=250)
    traj.summary()  # {'finished': 1000}
    ```
    """
    # The arguments' kinds and the leaves' dtypes first: `method` is used below, and a
    # seed axis is looked for on floating-point leaves only.
    check_kinds(loss_fn, method, save, stop)
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((loss_fn, params, method))):
        raise TypeError(
            "train_seeds runs from the host (it moves finished chunks to host memory, and "
            "can write them to disk), so jax.jit, jax.grad and jax.vmap cannot trace it: "
            "under a transformation use jax.vmap(rnnflow.train) over the seeds, e.g. "
            "jax.grad(lambda lr: jax.vmap(lambda p: rnnflow.train(loss_fn, p, "
            "GradientDescent(lr, n)).metrics['loss'][-1])(params).mean())."
        )
    check_leaves(params)
    num_seeds = _num_seeds(loss_fn, params)
    if progress:
        method = method.with_progress()
    check_finite("params", params)  # every seed's; `check_call` sees the first seed
    trainable, fixed = split_real(params)
    first_seed = jax.tree.map(lambda x: take_rows(x, 0, 1)[0], trainable)
    if method.needs_key(loss_fn) or keys is not None:
        keys = _key_data(keys, num_seeds)
    if not method.needs_key(loss_fn):
        keys = None
    first_key = None if keys is None else jax.random.wrap_key_data(keys[0])
    check_call(loss_fn, eqx.combine(to_complex(first_seed), fixed), method, save, stop, first_key)
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("`devices` must name at least one device.")
    if lanes is not None:
        lanes = check_positive_int("lanes", lanes)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    args = (loss_fn, method, trainable, fixed, save, stop, keys)

    @functools.cache
    def default_lanes(devices):
        step = 0
        if devices[0].platform == "cpu":
            step = _blocks.gradient_bytes(Objective(loss_fn, fixed), first_seed)
        # On a CPU a core's share of the seeds, whatever the number of devices (up to one
        # per core): each device then runs the block one device would run, in the same
        # lanes, so results are bitwise the same on one CPU device or one per core.
        share = len(devices)
        if devices[0].platform == "cpu":
            share = max(share, cpu_cores())
        return _default_lanes(trainable, math.ceil(num_seeds / share), devices[0].platform, step)

    if devices[0].platform == "cpu" and len(devices) > 1:
        devices = _without_lapack_deadlock(args, devices, lanes or default_lanes(devices))
    lanes = lanes or default_lanes(devices)
    block = lanes * len(devices)  # seeds per compiled call
    num_blocks = math.ceil(num_seeds / block)
    per_chunk = num_blocks if chunk_size is None else math.ceil(chunk_size / block)

    def seeds(first, last):  # blocks first, ..., last - 1: (parameters, key data)
        lo, hi = first * block, min(last * block, num_seeds)
        p = jax.tree.map(lambda x: take_rows(x, lo, hi), (trainable, keys))
        if pad := last * block - hi:
            # Padding seeds repeat the last seed; they are computed and dropped. Only the
            # last block is padded, so the seeds are never copied as a whole.
            xp = np if isinstance(jax.tree.leaves(p)[0], np.ndarray) else jnp
            p = jax.tree.map(lambda x: xp.concatenate([x, xp.repeat(x[-1:], pad, 0)]), p)
        return p

    def compute(p):  # dispatched asynchronously
        p, k = p
        k = None if k is None else jax.random.wrap_key_data(k)
        return _blocks._block_jit(loss_fn, method, p, fixed, save, stop, devices, keys=k)

    if num_blocks == 1 and checkpoint is None:
        traj = compute(seeds(0, 1))
        if len(devices) > 1 and devices[0].platform == "cpu":
            # The devices' rows, gathered in (the CPU's own) memory and handed back as
            # fresh arrays, like those of the chunked path: arrays left on several devices
            # would make the user's next computations run on all of them, or refuse arrays
            # on one device.
            return with_fixed(
                jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[:num_seeds]), traj), fixed
            )
        traj = jax.tree.map(lambda x: x[:num_seeds], traj) if block > num_seeds else traj
        return with_fixed(traj, fixed)

    # Chunks run one after another from the host: device memory holds one chunk's
    # results at a time; each finished chunk is copied into the result in host memory
    # (and kept on disk, with `checkpoint`).
    store = None
    if checkpoint is not None:
        one_seed = functools.partial(
            run, loss_fn, method.quiet(), fixed=fixed, save=save, stop=stop, key=first_key
        )
        store = Checkpoints(
            checkpoint,
            computation_hash(one_seed, first_seed) + f"/{lanes}",
            array_hash((trainable, keys)),
        )
    with contextlib.nullcontext() if store is None else store:
        out = _chunks(store, seeds, compute, num_seeds, num_blocks, per_chunk, block, progress)
    return with_fixed(jax.tree.map(jnp.asarray, out), fixed)


def _chunks(store, seeds, compute, num_seeds, num_blocks, per_chunk, block, progress):
    """Compute the chunks one after another (or load them from `store`), into host memory."""
    treedef = jax.tree.structure(jax.eval_shape(compute, seeds(0, 1)))
    out = None
    for c, first in enumerate(range(0, num_blocks, per_chunk)):
        ids = range(first, min(first + per_chunk, num_blocks))
        chunk = None if store is None else array_hash(seeds(ids[0], ids[-1] + 1))
        traj = None if store is None else store.load(c, chunk, treedef)
        if traj is None:
            traj = jax.device_get([compute(seeds(i, i + 1)) for i in ids])
            traj = jax.tree.map(lambda *xs: np.concatenate(xs), *traj)
            if store is not None:
                store.store(c, chunk, traj)
        if out is None:
            out = jax.tree.map(lambda x: np.empty((num_seeds,) + x.shape[1:], x.dtype), traj)
        lo, hi = first * block, min((ids[-1] + 1) * block, num_seeds)
        for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(traj), strict=True):
            o[lo:hi] = x[: hi - lo]
        if progress:
            print(f"rnnflow: seeds {hi}/{num_seeds} done", flush=True)
    return out
