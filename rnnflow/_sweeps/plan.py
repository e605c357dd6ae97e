"""How a sweep is cut into units of work: combinations of its looped axes, points of its
vmapped axes and blocks of seeds; the values and the vmapped `setup` of each unit."""

import dataclasses
import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a sweep is cut into units: combinations of the looped axes, points of the
    vmapped axes (C order), seeds in blocks, `points_per_unit` points × a block a unit."""

    looped: tuple[str, ...]
    vmapped: tuple[str, ...]
    combos: list
    points: list
    block: int
    points_per_unit: int

    def units(self, seeds: int):
        per_combo = math.ceil(len(self.points) / self.points_per_unit) * math.ceil(
            seeds / self.block
        )
        for u in range(len(self.combos) * per_combo):
            c, rest = divmod(u, per_combo)
            pb, sb = divmod(rest, math.ceil(seeds / self.block))
            points = range(
                pb * self.points_per_unit, min((pb + 1) * self.points_per_unit, len(self.points))
            )
            seeds_ = range(sb * self.block, min((sb + 1) * self.block, seeds))
            yield u, c, points, seeds_


def _plan(sweep, lanes: int | None, num_devices: int) -> _Plan:
    vmapped = sweep.vmapped()
    looped = tuple(a for a in sweep.axes if a not in vmapped)
    combos = list(itertools.product(*(range(len(sweep.axes[a])) for a in looped)))
    points = list(itertools.product(*(range(len(sweep.axes[a])) for a in vmapped)))
    lanes = lanes or min(len(points) * sweep.seeds, 1024)
    block = min(sweep.seeds, lanes)
    per_unit = max(1, lanes // block)
    # A unit's lanes are sharded over the devices: a multiple of their number.
    while (per_unit * block) % num_devices:
        per_unit += 1
    return _Plan(looped, vmapped, combos, points, block, per_unit)


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
    return jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, tree)
