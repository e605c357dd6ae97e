"""Running a planned sweep: every point checked and traced before anything compiles, then
this process's unfinished units computed, block by block, and written to the store."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from .._engine import blocks as _blocks
from .._engine.checkpoints import hash_and_shape
from .._engine.objective import Objective, check_finite, split_real
from .._engine.train import check_call, run
from .plan import _lane, _setup_fn, _values


def _prepare(sweep, plan, seed_keys):
    """Check every point and find what the store holds, before the sweep compiles its
    training: every point is set up with the first seed's key (all points of a combination
    of the looped axes at once), checked as `train` checks and asked its save times; one
    lane per combination is traced for the shapes of its trajectory and a hash of its
    computation. Returns those, the setup function of each combination, and the first
    point's objective and trainable leaves for one seed (what the lanes are sized by)."""
    shapes, hashes, times, setups = [], [], [], []
    # As many lanes as a unit has, so that the setup's operations (random draws above all,
    # slow to compile) compile for one number of lanes, here and in `_compute`.
    width = plan.width
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
        trainable, fixed = split_real(params)
        if c == 0:
            first_problem = Objective(loss_fn, fixed), trainable

        def one(p, loss_fn=loss_fn, method=method, fixed=fixed):
            return run(loss_fn, method.quiet(), p, fixed, sweep.save, sweep.stop)

        computation, shape = hash_and_shape(one, trainable)
        shapes.append(shape)
        hashes.append(computation)
    return shapes, hashes, times, setups, first_problem


def _compute(out, sweep, plan, seed_keys, setups, devices, progress):
    """Run this process's unfinished units and write them: their lanes (point × seed) in
    order, `plan.width` per compiled call; a unit is written and marked as soon as its last
    lane is computed, so host memory holds about one call's results."""
    processes, me = jax.process_count(), jax.process_index()
    bar = _Progress(len(plan.combos) * len(plan.points) * sweep.seeds, progress)
    run_on = {}  # per combination of the looped axes: `devices`, or one if LAPACK is called
    for c in range(len(plan.combos)):
        todo = []
        for u, c_, p, seeds in plan.units(sweep.seeds):
            if c_ != c:
                continue
            if u % processes != me or out.done(u):
                bar.update(len(seeds))
            else:
                todo.append((u, p, seeds))
        lanes = [(p, s) for _, p, seeds in todo for s in seeds]
        ends = list(itertools.accumulate(len(seeds) for _, _, seeds in todo))
        buffer, first, next_unit = None, 0, 0  # buffer holds lanes first, first + 1, ...
        for start in range(0, len(lanes), plan.width):
            call = lanes[start : start + plan.width]
            n = len(call)
            call += [call[-1]] * (plan.width - n)  # padding lanes are computed and dropped
            _, vmapped = _values(sweep, plan, c, [p for p, _ in call])
            keys = seed_keys[np.asarray([s for _, s in call])]
            loss_fn, params, method = setups[c](vmapped, keys)
            trainable, fixed = split_real(params)
            check_finite("params", params)
            args = (loss_fn, method, trainable, fixed, sweep.save, sweep.stop)
            if c not in run_on:
                run_on[c] = _blocks._lapack_safe(
                    devices,
                    lambda: _blocks._block_jit.lower(*args, devices, per_lane=True),
                    "run_sweep",
                    stacklevel=4,
                )
            traj = _blocks._block_jit(*args, run_on[c], per_lane=True)
            traj = jax.tree.map(lambda x: np.asarray(x)[:n], jax.device_get(traj))
            buffer = traj if buffer is None else jax.tree.map(_concat, buffer, traj)
            while next_unit < len(todo) and ends[next_unit] <= start + n:
                u, p, seeds = todo[next_unit]
                lo = ends[next_unit] - len(seeds) - first
                rows = jax.tree.map(lambda x, lo=lo, k=len(seeds): x[lo : lo + k], buffer)
                _write_unit(out, sweep, plan, u, c, p, seeds, rows)
                bar.update(len(seeds))
                next_unit += 1
            done = ends[next_unit - 1] if next_unit else 0
            buffer = jax.tree.map(lambda x, k=done - first: x[k:], buffer)
            first = done
    bar.close()


def _concat(a, b):
    return np.concatenate([a, b])


def _write_unit(out, sweep, plan, u, c, p, seeds, traj):
    """Write one unit's rows of `traj` (its seeds at point `p`), then mark it done."""
    index = dict(zip(plan.looped, plan.combos[c], strict=True))
    index.update(zip(plan.vmapped, plan.points[p], strict=True))
    at = tuple(index[a] for a in sweep.axes)
    block = (slice(seeds.start, seeds.stop),)
    chunks = {"t": out.write("t", at, np.asarray(traj.ts)[0])}
    for name in ("result", "t_stop", "num_steps", "num_grad_evals"):
        chunks[name] = out.write(name, at + block, np.asarray(getattr(traj, name)))
    for name, values in traj.metrics.items():
        chunks[name] = out.write(name, at + block, np.asarray(values))
    where = ", ".join(f"{a}={sweep.axes[a][i]}" for a, i in zip(sweep.axes, at, strict=True))
    out.mark_done(u, f"{where}, seeds {seeds.start}-{seeds.stop - 1}", chunks, plan.width)


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
