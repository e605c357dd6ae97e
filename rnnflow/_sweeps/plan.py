"""How a sweep is cut into units of work: combinations of its looped axes, points of its
vmapped axes and blocks of seeds; the values and the vmapped `setup` of each unit."""

import dataclasses
import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._engine.blocks import cache_lanes, take_rows
from .._engine.devices import cpu_cores


def _unit_seeds(seeds: int) -> int:
    """Seeds per unit of work (one point × a block of seeds): the grain a killed sweep
    resumes from and a damaged chunk costs. About a sixteenth of the seeds, at least 64
    and at most 1024 (so that 256 seeds are 4 units a point, not 1). Fixed by the number
    of seeds alone, never by `lanes`, so that a sweep resumes with any `lanes`."""
    return min(seeds, 1024, max(64, math.ceil(seeds / 16)))


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a sweep is cut into units: combinations of the looped axes, points of the
    vmapped axes (C order), seeds in blocks; a unit is one point × a block. Units are
    computed `width` lanes (seed × point) per compiled call, whatever their boundaries."""

    looped: tuple[str, ...]
    vmapped: tuple[str, ...]
    combos: list
    points: list
    block: int
    width: int

    def units(self, seeds: int):
        blocks = math.ceil(seeds / self.block)
        for u in range(len(self.combos) * len(self.points) * blocks):
            cp, b = divmod(u, blocks)
            c, p = divmod(cp, len(self.points))
            yield u, c, p, range(b * self.block, min((b + 1) * self.block, seeds))


def _default_lanes(runs: int) -> int:
    """Lanes for `runs` seeds × points of a looped combination: about a sixteenth of them,
    so that a kill loses about a sixteenth of the work (the call in progress, whose units
    are written when it ends), but at least 64 (narrower batches waste the vector units)
    and at most 1024 (on a CPU wider ones stop paying off)."""
    return min(runs, 1024, max(64, math.ceil(runs / 16)))


def fit_to_cache(plan: _Plan, step: int, num_devices: int) -> _Plan:
    """`plan` with at most `cache_lanes(step)` lanes a device, for a step that makes `step`
    bytes per seed: on a CPU the default lanes of a step of many values (see `blocks.py`)."""
    per_device = min(plan.width // num_devices, cache_lanes(step))
    return dataclasses.replace(plan, width=per_device * num_devices)


def _plan(sweep, lanes: int | None, num_devices: int, cpu: bool = False) -> _Plan:
    vmapped = sweep.vmapped()
    looped = tuple(a for a in sweep.axes if a not in vmapped)
    combos = list(itertools.product(*(range(len(sweep.axes[a])) for a in looped)))
    points = list(itertools.product(*(range(len(sweep.axes[a])) for a in vmapped)))
    # Lanes per device. By default on a CPU a core's share, whatever the number of devices
    # (up to one per core): each device then runs the program one device would run on the
    # same lanes, so the store is bitwise the same on one CPU device or one per core.
    share = max(cpu_cores(), num_devices) if cpu and lanes is None else num_devices
    per_device = math.ceil((lanes or _default_lanes(len(points) * sweep.seeds)) / share)
    # A call's lanes are split over the devices, `per_device` on each.
    width = per_device * num_devices
    return _Plan(looped, vmapped, combos, points, _unit_seeds(sweep.seeds), width)


def _values(sweep, plan, c, point_ids):
    """The point dicts' looped part (Python values) and vmapped part (arrays, one row per
    point in `point_ids`)."""
    looped = {a: sweep.axes[a][i] for a, i in zip(plan.looped, plan.combos[c], strict=True)}
    vmapped = {
        a: jnp.asarray(
            [sweep.axes[a][plan.points[p][j]] for p in point_ids], jnp.result_type(float)
        )
        for j, a in enumerate(plan.vmapped)
    }
    return looped, vmapped


def _setup_fn(sweep, looped):
    """`setup` over lanes, for one combination of the looped axes: vmapped values and keys
    with one row per lane. Run op by op, not compiled as one program: its operations
    (random draws above all, whose compilation takes seconds on a CPU) are then compiled
    once per shape and reused by every combination and unit, where a compiled setup
    would be compiled again for each combination and number of lanes."""

    def one(values, key):
        return sweep.setup({**looped, **values}, key)

    return eqx.filter_vmap(one)


def _lane(tree, i):
    """Lane `i` of `tree`'s arrays, as JAX arrays. Of an array in a CPU's memory, taken as a
    NumPy view and put back: indexing a JAX array compiles a program for each shape, and a
    sweep's setup has many."""

    def take(x):
        if not eqx.is_array(x):
            return x
        row = take_rows(x, i, i + 1)
        return jnp.asarray(row[0]) if isinstance(row, np.ndarray) else row[0]

    return jax.tree.map(take, tree)
