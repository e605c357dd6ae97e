"""`train`: one seed, one method, one `Trajectory`; `train_seeds`: the same over many seeds."""

import functools
import hashlib
import math
import os
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from . import _fused
from ._checks import check_positive_int
from ._files import atomic_write
from ._losses import AbstractLoss
from ._methods import AbstractMethod
from ._methods.base import Objective
from ._models import AbstractRNN, RNNParams
from ._trajectory import Save, Stop, Trajectory, metric_fn


def _check(model, loss, method, save, stop, params) -> None:
    if not isinstance(model, AbstractRNN):
        raise TypeError(f"`model` must be an rnnflow model; got {type(model).__name__}.")
    if not callable(loss):
        raise TypeError(
            f"`loss` must be callable as loss(model, params); got {type(loss).__name__}."
        )
    if isinstance(loss, AbstractLoss):
        loss.check_model(model)
    if not isinstance(method, AbstractMethod):
        raise TypeError(
            "`method` must be GradientDescent, GradientFlow or ModifiedFlow; "
            f"got {type(method).__name__}."
        )
    method.check(model, loss)
    if not isinstance(save, Save):
        raise TypeError(f"`save` must be an rnnflow.Save; got {type(save).__name__}.")
    if not isinstance(stop, Stop):
        raise TypeError(f"`stop` must be an rnnflow.Stop; got {type(stop).__name__}.")
    model.check_params(params)
    method.save_times(save)  # raises on save times outside [0, t1]
    # Shapes only: traced abstractly, nothing is compiled.
    out = jax.eval_shape(loss, model, params)
    if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        raise ValueError(
            f"`loss(model, params)` must return a real scalar; got {getattr(out, 'shape', out)}."
        )


def _train(model, loss, method, params, save, stop) -> Trajectory:
    def value(p):
        return loss(model, p)

    residuals = getattr(loss, "residuals", None)
    objective = Objective(
        value,
        None if residuals is None else functools.partial(residuals, model),
        _fused.diagonal_impulse_target(model, loss),
    )
    return method.run(
        objective,
        params,
        save=save,
        stop=stop,
        metrics=metric_fn(save, model, loss),
    )


_train_jit = eqx.filter_jit(_train)


def train(
    model: AbstractRNN,
    loss,
    method: AbstractMethod,
    params: RNNParams,
    *,
    save: Save = Save(),
    stop: Stop = Stop(),
) -> Trajectory:
    """Train one seed of `model` on `loss` with `method`, from `params`.

    **Arguments:**

    - `model`: an rnnflow model, e.g. [`rnnflow.DiagonalRNN`][].
    - `loss`: `loss(model, params) -> scalar`, e.g. [`rnnflow.ImpulseLoss`][].
    - `method`: [`rnnflow.GradientDescent`][], [`rnnflow.GradientFlow`][] or
      [`rnnflow.ModifiedFlow`][].
    - `params`: the initial [`rnnflow.RNNParams`][] (unbatched).
    - `save`: what to record and when ([`rnnflow.Save`][]).
    - `stop`: early stopping on convergence or divergence ([`rnnflow.Stop`][]).

    **Returns:**

    A [`rnnflow.Trajectory`][]. Compiled once per model, method, save and stop: new
    parameters or teacher values of the same shapes do not recompile. Vmapping `train`
    over `params` gives a batched trajectory; [`rnnflow.train_seeds`][] does that with
    chunking and sharding.

    ```python
    model = DiagonalRNN(40)
    loss = ImpulseLoss(modes_teacher([0.9], [1.0]), train_len=5)
    params = model.init(key=jax.random.key(0), scale=1e-3)
    traj = train(model, loss, GradientDescent(lr=0.01, num_steps=20_000), params)
    traj.metrics["loss"][-1]
    ```
    """
    _check(model, loss, method, save, stop, params)
    return _train_jit(model, loss, method, params, save, stop)


def init_seeds(
    model: AbstractRNN, keys, *, scale: float, balanced: bool = False, dtype=None
) -> RNNParams:
    """`model.init` for each key in `keys` (shape `(seeds,)`): parameters with a seed axis.

    ```python
    params = init_seeds(model, jax.random.split(jax.random.key(0), 1000), scale=1e-3)
    ```
    """
    keys = jnp.asarray(keys)
    if keys.ndim != 1 or not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        raise ValueError(
            f"`keys` must be a 1-d array of PRNG keys (jax.random.split(key, n)); got {keys.shape}."
        )
    # Validate the arguments once, eagerly, before vmapping.
    jax.eval_shape(
        lambda k: model.init(key=k, scale=scale, balanced=balanced, dtype=dtype), keys[0]
    )
    return jax.vmap(lambda k: model.init(key=k, scale=scale, balanced=balanced, dtype=dtype))(keys)


def _fits(model, params) -> bool:
    try:
        model.check_params(params)
    except (TypeError, ValueError):
        return False
    return True


def _train_block(model, loss, method, params, save, stop, devices):
    """Train one block of seeds: vmapped, and sharded over `devices` when there are several."""
    one = jax.vmap(lambda loss, p: _train(model, loss, method, p, save, stop), in_axes=(None, 0))
    if len(devices) == 1:
        return one(loss, params)
    sharded = jax.shard_map(
        one,
        mesh=Mesh(np.asarray(devices), ("seeds",)),
        in_specs=(PartitionSpec(), PartitionSpec("seeds")),
        out_specs=PartitionSpec("seeds"),
        check_vma=False,
    )
    return sharded(loss, params)


_train_block_jit = eqx.filter_jit(_train_block)


def _fingerprint(*trees) -> str:
    """A hash of the arrays (values, shapes, dtypes) and static structure of `trees`."""
    h = hashlib.sha256()
    for tree in trees:
        leaves, treedef = jax.tree.flatten(tree)
        h.update(str(treedef).encode())
        for x in leaves:
            if eqx.is_array(x):
                x = np.asarray(x)
                h.update(f"{x.shape}{x.dtype}".encode())
                h.update(np.ascontiguousarray(x).tobytes())
            else:
                h.update(repr(x).encode())
    return h.hexdigest()


class _Checkpoints:
    """One `.npz` per finished block of seeds, written atomically, so that a killed run
    resumes where it stopped. Each file records a fingerprint of what produced it (the
    block's initial parameters, the loss's arrays, the save times and the method with its
    settings, see `AbstractMethod.settings`); a file from any other run is an error, never
    silently reused."""

    def __init__(self, folder, what: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.what = what

    def path(self, i: int) -> Path:
        return self.folder / f"seeds-chunk-{i:05d}.npz"

    def load(self, i: int, fingerprint: str, treedef):
        path = self.path(i)
        if not path.exists():
            return None
        with np.load(path) as data:
            if str(data["fingerprint"]) != fingerprint:
                raise FileExistsError(
                    f"{path} was written by a different run (other parameters, loss, method "
                    f"or save times than {self.what}); use another checkpoint folder."
                )
            leaves = [data[f"leaf{j}"] for j in range(treedef.num_leaves)]
        return jax.tree.unflatten(treedef, leaves)

    def store(self, i: int, fingerprint: str, traj) -> None:
        leaves = {f"leaf{j}": np.asarray(x) for j, x in enumerate(jax.tree.leaves(traj))}
        atomic_write(
            self.path(i), lambda f: np.savez(f, fingerprint=np.asarray(fingerprint), **leaves)
        )


# Default for `lanes`: wide enough to amortise each step's overhead. On a CPU wider
# batches stop paying off at about a thousand seeds; an accelerator wants far more.
_MAX_LANES = {"cpu": 1024}
_MAX_LANES_ACCELERATOR = 65536
# On a CPU a step multiplies each seed's transition matrix into a vector about twice per
# lag, which runs from cache only while a block's matrices fit in it: 256 KiB of them
# (64 seeds of dense d = 32 in float32) ran gradient descent 1.4-1.5x faster than 1024
# seeds side by side (dense d = 16 and 32, symmetric d = 32; 2-core Xeon, 2 MiB of L2 per
# core). Diagonal transitions stream through elementwise passes and want wide blocks.
_CPU_MATRIX_BYTES = 2**18
_MIN_LANES = 64


def _default_lanes(params: RNNParams, num_seeds: int, platform: str) -> int:
    """Seeds side by side on one device, for `num_seeds` seeds on that device."""
    cap = _MAX_LANES.get(platform, _MAX_LANES_ACCELERATOR)
    a = params.a
    if platform == "cpu" and a.ndim == 3:  # a (d, d) matrix per seed
        matrix_bytes = math.prod(a.shape[1:]) * a.dtype.itemsize
        cap = min(cap, max(_MIN_LANES, _CPU_MATRIX_BYTES // matrix_bytes))
    # The fewest blocks the cap allows, all of one width, so that padding stays small.
    return math.ceil(num_seeds / math.ceil(num_seeds / cap))


def _without_lapack_deadlock(model, loss, method, params, save, stop, devices, lanes):
    """`devices`, or the first of them alone if the step or a save metric calls LAPACK,
    for blocks of `lanes` seeds per device.

    With several CPU devices running at once, jaxlib 0.10.2's batched LAPACK calls (e.g.
    `jnp.linalg.eigh` under vmap) can deadlock: each device's thread waits inside the call
    for batch tasks queued on the thread pool that those same threads make up. One device
    leaves a thread free. The check lowers the first block as it will run, so the call
    that follows reuses the trace.
    """
    block = jax.tree.map(
        lambda x: jnp.zeros((lanes * len(devices),) + x.shape[1:], x.dtype), params
    )
    lowered = _train_block_jit.lower(model, loss, method, block, save, stop, devices)
    if "custom_call @lapack_" not in lowered.as_text():
        return devices
    warnings.warn(
        f"train_seeds runs on one CPU device instead of {len(devices)}: the step or a save "
        "metric calls LAPACK (e.g. jnp.linalg.eigh), which can deadlock when several CPU "
        "devices run at once (jaxlib 0.10.2).",
        RuntimeWarning,
        stacklevel=3,
    )
    return devices[:1]


def train_seeds(
    model: AbstractRNN,
    loss,
    method: AbstractMethod,
    params: RNNParams,
    *,
    save: Save = Save(),
    stop: Stop = Stop(),
    chunk_size: int | None = None,
    lanes: int | None = None,
    devices=None,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
) -> Trajectory:
    """[`rnnflow.train`][] over a leading seed axis of `params`, chunked and sharded.

    **Arguments:** those of [`rnnflow.train`][], with `params` batched (see
    [`rnnflow.init_seeds`][]), and

    - `lanes`: seeds computed side by side (vmapped) on each device. Working memory grows
      with it, not with the number of seeds. Default: a device's share of the seeds, in
      blocks of equal width of at most 65536 on an accelerator, and on a CPU of at most
      1024, or as many as keep 256 KiB of transition matrices (dense models: 64 seeds of
      d = 32 in float32), which the CPU's cache then holds.
    - `chunk_size`: seeds per chunk. Chunks are computed one after another; each finished
      chunk is moved to host memory (and written to `checkpoint`), so device memory holds
      one chunk's results. Rounded up to a multiple of `lanes` × the number of devices.
      Default: all seeds in one chunk.
    - `devices`: the devices to shard the seed axis over (default: `jax.devices()` when it
      holds more than one). Multi-host: call `jax.distributed.initialize()` first, then
      pass `jax.devices()`. On a CPU, JAX makes one device of all its cores; with
      `jax.config.update("jax_num_cpu_devices", n)` before any JAX operation it makes n,
      and the seeds then run on all n at once: with one per core on two cores, gradient
      descent ran 2.0-2.3× and a Tsit5 flow 1.9× faster. If the step or a save metric
      calls LAPACK (e.g. `jnp.linalg.eigh`), which with jaxlib 0.10.2 can deadlock when
      several CPU devices run at once, the seeds run on the first device alone, with a
      warning.
    - `progress`: print a line as each chunk finishes.
    - `checkpoint`: a folder to keep each finished chunk in. A run killed at any point and
      called again with the same arguments loads the finished chunks and computes only
      the rest; the result is identical to an uninterrupted run. Use one folder per run.

    **Returns:**

    A [`rnnflow.Trajectory`][] whose fields have a leading seed axis. Each seed is computed
    independently: a diverging seed is marked in `result` and leaves every other seed's
    values untouched.

    **Reproducibility.** Seed `i` is always computed in lane `i mod lanes` of the same
    compiled program, so for a given `lanes` results are bitwise identical whatever the
    `chunk_size` and whether or not the run was interrupted (and they were bitwise equal
    across 1 and 4 CPU devices in the tests). A different `lanes` is a different batch
    width, which XLA may vectorise with different rounding: gradient descent then agrees
    to about one ulp, while an adaptive gradient flow, whose step-size control amplifies
    rounding, agrees to about its tolerance (3e-8 at the default rtol = 1e-6, dense
    d = 8, float64).

    ```python
    keys = jax.random.split(jax.random.key(0), 1000)
    traj = train_seeds(model, loss, method, init_seeds(model, keys, scale=1e-3), chunk_size=250)
    traj.summary()  # {'finished': 1000}
    ```
    """
    leaves = jax.tree.leaves(params)
    if not isinstance(params, RNNParams) or not leaves or leaves[0].ndim < 1:
        raise ValueError("`params` must be RNNParams with a leading seed axis (see init_seeds).")
    if isinstance(model, AbstractRNN) and _fits(model, params):
        # Otherwise the first axis would be taken for seeds, and the error would be a
        # confusing shape mismatch of one parameter.
        raise ValueError(
            "`params` are one seed's parameters (no leading seed axis): use `train`, or "
            "stack seeds (see init_seeds)."
        )
    num_seeds = leaves[0].shape[0]
    seeds = [getattr(x, "shape", (None,))[:1] for x in leaves]
    if any(s != (num_seeds,) for s in seeds):
        raise ValueError(
            f"every field of `params` must have the same leading seed axis; got {seeds}."
        )
    _check(model, loss, method, save, stop, jax.tree.map(lambda x: x[0], params))
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("`devices` must name at least one device.")
    if lanes is not None:
        lanes = check_positive_int("lanes", lanes)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)

    def default_lanes(devices):
        return _default_lanes(params, math.ceil(num_seeds / len(devices)), devices[0].platform)

    if devices[0].platform == "cpu" and len(devices) > 1:
        devices = _without_lapack_deadlock(
            model, loss, method, params, save, stop, devices, lanes or default_lanes(devices)
        )
    lanes = lanes or default_lanes(devices)
    block = lanes * len(devices)  # seeds per compiled call
    num_blocks = math.ceil(num_seeds / block)
    per_chunk = num_blocks if chunk_size is None else math.ceil(chunk_size / block)

    def seeds(first, last):  # blocks first, ..., last - 1
        lo, hi = first * block, min(last * block, num_seeds)
        p = jax.tree.map(lambda x: x[lo:hi], params)
        if pad := last * block - hi:
            # Padding seeds repeat the last seed; they are computed and dropped. Only the
            # last block is padded, so the seeds are never copied as a whole.
            p = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, 0)]), p)
        return p

    def run(p):  # dispatched asynchronously
        return _train_block_jit(model, loss, method, p, save, stop, devices)

    if num_blocks == 1 and checkpoint is None:
        traj = run(seeds(0, 1))
        return jax.tree.map(lambda x: x[:num_seeds], traj) if block > num_seeds else traj

    # Chunks run one after another from the host: device memory holds one chunk's
    # results at a time; each finished chunk is copied into the result in host memory
    # (and kept on disk, with `checkpoint`).
    store = None if checkpoint is None else _Checkpoints(checkpoint, "this call")
    treedef = jax.tree.structure(jax.eval_shape(run, seeds(0, 1)))
    # The method's settings name its type and every setting (step size, steps, solver,
    # tolerances), without memory addresses, so they are the same in the process that resumes.
    static = None
    if store is not None:
        one_seed = jax.tree.map(lambda x: x[0], params)
        static = (method.settings(one_seed), method.save_times(save).tolist(), stop, lanes)
    out = None
    for c, first in enumerate(range(0, num_blocks, per_chunk)):
        ids = range(first, min(first + per_chunk, num_blocks))
        key = None if store is None else _fingerprint(seeds(ids[0], ids[-1] + 1), loss, static)
        traj = None if store is None else store.load(c, key, treedef)
        if traj is None:
            traj = jax.device_get([run(seeds(i, i + 1)) for i in ids])
            traj = jax.tree.map(lambda *xs: np.concatenate(xs), *traj)
            if store is not None:
                store.store(c, key, traj)
        if out is None:
            out = jax.tree.map(lambda x: np.empty((num_seeds,) + x.shape[1:], x.dtype), traj)
        lo, hi = first * block, min((ids[-1] + 1) * block, num_seeds)
        for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(traj), strict=True):
            o[lo:hi] = x[: hi - lo]
        if progress:
            print(f"rnnflow: seeds {hi}/{num_seeds} done", flush=True)
    return jax.tree.map(jnp.asarray, out)
