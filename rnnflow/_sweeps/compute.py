"""Running a planned sweep: every point checked and traced before anything compiles, then
this process's unfinished units computed, block by block, and written to the store."""

import jax
import jax.numpy as jnp
import numpy as np

from .._engine import blocks as _blocks
from .._engine.checkpoints import computation_hash
from .._engine.objective import check_finite, split
from .._engine.train import check_call, run
from .plan import _lane, _setup_fn, _values


def _prepare(sweep, plan, seed_keys):
    """Check every point and find what the store holds, before the sweep compiles its
    training: every point is set up with the first seed's key (all points of a combination
    of the looped axes at once), checked as `train` checks and asked its save times; one
    lane per combination is traced for the shapes of its trajectory and a hash of its
    computation. Returns those, and the setup function of each combination."""
    shapes, hashes, times, setups = [], [], [], []
    # As many lanes as a unit has, so that the setup's operations (random draws above all,
    # slow to compile) compile for one number of lanes, here and in `_compute`.
    width = plan.points_per_unit * plan.block
    for c in range(len(plan.combos)):
        setups.append(_setup_fn(sweep, _values(sweep, plan, c, [])[0]))
        for start in range(0, len(plan.points), width):
            ids = list(range(start, min(start + width, len(plan.points))))
            _, vmapped = _values(sweep, plan, c, ids + [ids[-1]] * (width - len(ids)))
            problems = setups[-1](vmapped, jnp.broadcast_to(seed_keys[0], (width,)))
            for lane in range(len(ids)):
                loss_fn, params, method = _lane(problems, lane)
                check_call(loss_fn, params, method, sweep.save, sweep.stop)
                times.append(np.asarray(method.save_times(sweep.save), np.float64))
            if start == 0:
                first = _lane(problems, 0)
        loss_fn, params, method = first
        trainable, fixed = split(params)

        def one(p, loss_fn=loss_fn, method=method, fixed=fixed):
            return run(loss_fn, method.quiet(), p, fixed, sweep.save, sweep.stop)

        shapes.append(jax.eval_shape(one, trainable))
        hashes.append(computation_hash(one, trainable))
    return shapes, hashes, times, setups


def _compute(out, sweep, plan, seed_keys, setups, devices, progress):
    """Run this process's unfinished units and write them."""
    axes = list(sweep.axes)
    processes, me = jax.process_count(), jax.process_index()
    width = plan.points_per_unit * plan.block
    bar = _Progress(len(plan.combos) * len(plan.points) * sweep.seeds, progress)
    for u, c, points, seeds in plan.units(sweep.seeds):
        n = len(points) * len(seeds)
        if u % processes != me or out.done(u):
            bar.update(n)
            continue
        lanes = [(p, s) for p in points for s in seeds]
        lanes += [lanes[-1]] * (width - len(lanes))  # padding lanes are computed and dropped
        _, vmapped = _values(sweep, plan, c, [p for p, _ in lanes])
        keys = seed_keys[np.asarray([s for _, s in lanes])]
        loss_fn, params, method = setups[c](vmapped, keys)
        trainable, fixed = split(params)
        check_finite("params", params)
        traj = _blocks._block_jit(
            loss_fn, method, trainable, fixed, sweep.save, sweep.stop, devices, per_lane=True
        )
        traj = jax.device_get(traj)
        for k, p in enumerate(points):
            index = dict(zip(plan.looped, plan.combos[c], strict=True))
            index.update(zip(plan.vmapped, plan.points[p], strict=True))
            at = tuple(index[a] for a in axes)
            rows = slice(k * len(seeds), (k + 1) * len(seeds))
            seed_slice = slice(seeds.start, seeds.stop)
            out.write("t", at + (slice(None),), np.asarray(traj.ts)[rows.start])
            for name in ("result", "t_stop", "num_steps", "num_grad_evals"):
                out.write(name, at + (seed_slice,), np.asarray(getattr(traj, name))[rows])
            for name, values in traj.metrics.items():
                out.write(name, at + (seed_slice,), np.asarray(values)[rows])
        out.mark_done(u)
        bar.update(n)
    bar.close()


class _Progress:
    """A progress bar over seeds × points (tqdm), shown when asked or on a terminal."""

    def __init__(self, total: int, enabled: bool | None):
        self.bar = None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        disable = None if enabled is None else not enabled
        self.bar = tqdm(total=total, unit="seed", desc="rnnflow sweep", disable=disable)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
