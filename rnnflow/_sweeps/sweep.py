"""Sweeps: named axes × seeds, run as few compiled programs as their shapes allow, written
to a labelled store chunk by chunk.

A [`rnnflow.Sweep`][] is data: the axes and their values, the number of seeds, and
`setup(point, key) -> (loss_fn, params, method)` for one seed at one point.
[`rnnflow.run_sweep`][] runs it:

- axes whose values are all floats (init scales, rates, teacher values) are *vmapped*:
  `setup` receives them traced, and every point of them runs through one compiled
  program; other axes (widths, model names, integers) are *looped*: one program each;
- the work is cut into units of one point × a block of seeds (fixed by the number of
  seeds), computed `lanes` (seed, point) pairs side by side per compiled call (the lanes of
  a [`rnnflow.train_seeds`][] block) and written to the store as they finish, so a sweep
  of 10⁵ seeds never holds its results in host memory, and a killed sweep resumes from
  its last finished unit, with the same `lanes` to the same store bit for bit, or with
  fewer (after running out of memory) to values that agree to rounding;
- under `jax.distributed`, each process runs the units `u` with `u mod processes =
  process index` on its own devices and writes them to the same store: the store is
  identical to a single process's, bit for bit (the units and programs are the same).
"""

import dataclasses
import json
import os
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .._engine.blocks import gradient_bytes
from .._engine.checks import check_positive_int
from .._engine.trajectory import Save, Stop
from . import layout as layout
from .compute import _compute, _prepare
from .plan import _plan, fit_to_cache
from .store import Store
from .verify import open_results

_RESERVED = ("seed", "time", "t")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A sweep: every combination of the `axes`' values, each with `seeds` seeds.

    **Arguments:**

    - `axes`: axis name → its values, e.g. `{"init_scale": [1e-3, 1e-2, 0.1], "lr": [0.01],
      "width": [20, 40]}`. Float axes are vmapped (one program for all their values);
      other axes (and any named in `looped`) are looped over.
    - `seeds`: how many seeds at each point; seed `s` uses the same key at every point.
    - `setup`: `setup(point, key) -> (loss_fn, params, method)`, for one seed: `point`
      maps every axis name to its value at this point (traced for vmapped axes), `key`
      is the seed's PRNG key. Everything it returns may depend on the point, and each
      seed's own (an update rule, [`rnnflow.Rule`][], in place of the loss, with a
      feedback matrix drawn from the seed's key, say).
    - `key`: the root PRNG key; seed `s`'s key is `jax.random.split(key, seeds)[s]`.
    - `save`, `stop`: as for [`rnnflow.train`][], the same at every point.
    - `looped`: float axes to loop over rather than vmap (those a method needs as a
      Python number, such as a flow's `t1`).
    - `attrs`: a JSON-able description (e.g. the config the sweep was made from), kept
      in the store's attributes.

    ```python
    def setup(point, key):
        model = DiagonalRNN(40)
        params = model.init(key=key, scale=point["init_scale"])
        loss_fn = ImpulseLoss(modes_teacher([0.9], [1.0]), 5).bind(model)
        return loss_fn, params, GradientDescent(point["lr"], 10_000)

    sweep = Sweep({"init_scale": [1e-3, 1e-2, 0.1], "lr": [0.01, 0.02]}, seeds=1000,
                  setup=setup, key=jax.random.key(0), save=Save(num=11))
    ds = run_sweep(sweep, "sweep.zarr")
    ```
    """

    axes: Mapping[str, tuple]
    seeds: int
    setup: Callable
    key: jax.Array
    save: Save = Save()
    stop: Stop = Stop()
    looped: tuple[str, ...] = ()
    attrs: Mapping = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.axes, Mapping) or not self.axes:
            raise TypeError("`axes` must map axis names to lists of values.")
        axes = {}
        for name, values in self.axes.items():
            if not isinstance(name, str) or not name.isidentifier() or name in _RESERVED:
                raise ValueError(
                    f"axis names must be identifiers other than {_RESERVED}; got {name!r}."
                )
            values = tuple(values) if isinstance(values, list | tuple | np.ndarray) else None
            if not values:
                raise ValueError(f"axis `{name}` must have a non-empty list of values.")
            if len(set(values)) != len(values):
                raise ValueError(f"axis `{name}` repeats a value: {list(values)}.")
            axes[name] = values
        object.__setattr__(self, "axes", axes)
        check_positive_int("seeds", self.seeds)
        if not callable(self.setup):
            raise TypeError(f"`setup` must be callable; got {type(self.setup).__name__}.")
        key = jnp.asarray(self.key)
        if key.shape != () or not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            raise TypeError("`key` must be one PRNG key, e.g. jax.random.key(0).")
        if not isinstance(self.save, Save) or not isinstance(self.stop, Stop):
            raise TypeError("`save` and `stop` must be an rnnflow.Save and an rnnflow.Stop.")
        if self.save.params:
            raise ValueError(
                "`save`: a sweep stores metrics, not parameters (`Save(params=True)`); save "
                "what you need of them as a metric, e.g. metrics={'theta': lambda t, p: "
                "jax.flatten_util.ravel_pytree(p)[0]}."
            )
        unknown = [a for a in self.looped if a not in axes]
        if unknown:
            raise ValueError(f"`looped` names axes the sweep does not have: {unknown}.")
        json.dumps(dict(self.attrs))  # JSON-able, or a TypeError now

    def vmapped(self) -> tuple[str, ...]:
        """The axes run through one program: all-float values, not in `looped`."""
        return tuple(
            name
            for name, values in self.axes.items()
            if name not in self.looped
            and all(isinstance(v, float | np.floating) and not isinstance(v, bool) for v in values)
        )


def run_sweep(
    sweep: Sweep,
    store: str | os.PathLike,
    *,
    lanes: int | None = None,
    devices=None,
    progress: bool | None = None,
):
    """Run `sweep` into the zarr store at `store` and return its results as a lazily read
    `xarray.Dataset`.

    **Arguments:**

    - `sweep`: a [`rnnflow.Sweep`][].
    - `store`: a folder. If it holds this same sweep (same axes, seeds, computation and
      precision) unfinished, the sweep resumes there; finished, it is verified and opened
      and nothing is computed; any other store or files there, or a store another run is
      writing (its lock names a live process), are refused (`FileExistsError`), and
      nothing in them is changed. Every chunk of every finished unit is verified (it
      exists, its CRC-32C checksum matches): a damaged unit is computed again, with a
      one-line warning naming it, and the store ends as an undamaged run's would.
    - `lanes`: seeds × points computed side by side per compiled call, shared by the
      devices (default: about a sixteenth of the points and seeds of a combination of the
      looped axes, at least 64 and at most 1024; on a CPU, a core's share of those on each
      device); working memory grows with it. A call's units of work (one point × a block
      of about a sixteenth of the seeds, 64 to 1024) are written as it ends, so a kill
      loses the call in progress: for long runs choose `lanes` so that a call takes
      seconds to a minute (the progress bar advances call by call). Results are bitwise
      the same for the same lanes per device, whatever the number of processes and
      however often the run was killed and resumed; with the default on a CPU, whatever
      the number of devices too. It is not part of
      the store's identity: a run killed (or out of memory) resumes with other `lanes`,
      with a warning, since another batch width may round differently (XLA vectorises
      widths differently: the last bits of some values, as for
      [`rnnflow.train_seeds`][]).
    - `devices`: the devices of this process to split each call over (default: all its
      local devices; on a CPU one per core after [`rnnflow.use_cpu_cores`][]). If the
      step or a save metric calls LAPACK, the calls run on the first device alone, with a
      warning, as in [`rnnflow.train_seeds`][].
    - `progress`: a progress bar over seeds × points (default: when the output is a
      terminal).

    **Returns:**

    An `xarray.Dataset` with dimensions the sweep's axes, `seed` and `time` (the save
    points; its coordinate is the flow time where every point saves at the same times,
    and the variable `t` holds each point's flow times), and any dimensions of the
    metrics. Variables: every saved metric (axes, seed, time, ...), and per seed
    `result` (a [`rnnflow.Result`][] code), `t_stop`, `num_steps`, `num_grad_evals`.
    Attributes: the sweep's `attrs`, package versions, backend, precision, the root key.
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"`sweep` must be an rnnflow.Sweep; got {type(sweep).__name__}.")
    if lanes is not None:
        lanes = check_positive_int("lanes", lanes)
    devices = tuple(jax.local_devices() if devices is None else devices)
    out = Store(store)
    layout.check_place(out)  # a file in the way is said before anything is traced
    cpu = devices[0].platform == "cpu"
    plan = _plan(sweep, lanes, len(devices), cpu=cpu)
    seed_keys = jax.random.split(sweep.key, sweep.seeds)
    shapes, hashes, times, setups, first_problem = _prepare(sweep, plan, seed_keys)
    if cpu and lanes is None:  # a step of many values per seed runs from cache
        plan = fit_to_cache(plan, gradient_bytes(*first_problem), len(devices))
    identity = layout.identity(sweep, plan, hashes)
    if jax.process_index() != 0:
        if json.dumps(out.wait_created(), sort_keys=True) != json.dumps(identity, sort_keys=True):
            raise FileExistsError(
                f"{out.path} holds another sweep than this process's: "
                f"{layout.differences(out.wait_created(), identity)}."
            )
        if not out.complete():
            _compute(out, sweep, plan, seed_keys, setups, devices, progress)
        out.wait_complete()
        return open_results(out.path, verify=False)
    layout.check(out, identity)  # a store of another sweep is refused untouched
    out.progress.mkdir(parents=True, exist_ok=True)
    with out.lock:
        layout.open_or_create(out, sweep, plan, identity, shapes, times, seed_keys)
        if not out.complete():
            _compute(out, sweep, plan, seed_keys, setups, devices, progress)
            out.wait_done(identity["units"])
            out.finish()
    return open_results(out.path, verify=False)  # verified above, or written just now
