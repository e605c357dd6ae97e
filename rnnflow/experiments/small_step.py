r"""Small-step limit: gradient descent is the explicit Euler discretisation of gradient flow.
Facts 1 and 2 on the science page.

From the same unbalanced random starts (seed s has one key in every sweep below), a student
is trained to a fixed time $t_1$ by gradient flow (a tight adaptive solve, the reference),
by gradient descent with step $\eta$ ($t = n\eta$) for a range of $\eta$, and by the
modified flow of $L + \frac{\eta}{4}\|\nabla L\|^2$ ([`rnnflow.ModifiedFlow`][]). The
parameters θ and the imbalance $Q$ are saved at $t = 0$ and the save times; the analysis
compares slices of the stores:

- $\|\theta_{GD}(t) - \theta_{GF}(t)\|$: first order, the log-log slope against η is ≈ 1;
- $\|\theta_{GD}(t) - \theta_{MF,\eta}(t)\|$: backward error analysis, slope ≈ 2;
- the drift $\|Q_{GD}(t) - Q(0)\|$ of the quantity the flow conserves: $O(\eta^2)$ per
  step, $O(\eta)$ over $t/\eta$ steps, slope ≈ 1. The flow's own drift (solver error) is
  recorded for scale.

Stores: `flow` (axis `rtol`, the reference), `steps` (axes `algorithm` ∈ {gd, modified} × `lr`;
every η of an algorithm runs in one compiled program).

The limit needs the step small on the scale of the curvature; above 2/sharpness of the
flow's solution gradient descent lands elsewhere: see [finite_step](finite_step.md).

**Precision.** float32 resolves the slopes at the small config (`rtol` = 2e-6); run the
full scale (`rtol` = 1e-8) in float64 (`--float64`).
"""

import dataclasses
import itertools
from typing import Literal

import numpy as np
from jax.flatten_util import ravel_pytree

import rnnflow as rf

from . import _common
from ._stats import fit_line, number, numbers, ok, seed_median
from .base import Experiment, ExperimentConfig
from .plots import small_step as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class SmallStepConfig(ExperimentConfig):
    """- `parameterization`, `state_dim`, `scale`, `teacher`, `train_len`: the student, its
      (unbalanced) init scale, and the impulse loss it is trained on.
    - `t1`: the common end time; `num_saves` save times $t_1 i / n$, $i = 1..n$.
    - `lrs`: the GD step sizes η; every save time must be a whole number of steps.
    - `rtol`, `max_steps`: the reference flows' PID tolerance (atol = rtol × 1e-3) and budget.
    """

    experiment = "small_step"
    seeds: int = 16
    parameterization: Literal["diagonal", "symmetric", "dense"] = "diagonal"
    teacher: str = "two_modes"
    state_dim: int = 20
    scale: float = 0.2
    train_len: int = 5
    t1: float = 5.0
    num_saves: int = 25
    lrs: tuple[float, ...] = (0.04, 0.02, 0.01, 0.005, 0.0025)
    rtol: float = 1e-8
    max_steps: int = 100_000

    def check(self):
        _common.check_teachers(self, "teacher")
        self.require_positive("state_dim", "train_len", "num_saves", "max_steps")
        self.require_positive("scale", "t1", "rtol", "lrs")
        if len(self.lrs) < 2:
            raise ValueError("`lrs` needs at least two step sizes to fit a slope.")
        for t, lr in itertools.product(self.save_times, self.lrs):
            if abs(t / lr - round(t / lr)) > 1e-6:
                raise ValueError(
                    f"`lrs`: every save time must be a whole number of steps; "
                    f"t = {t} is not a multiple of η = {lr} (change `t1` or `num_saves`)."
                )

    @property
    def save_times(self) -> tuple[float, ...]:
        return tuple(self.t1 * (i + 1) / self.num_saves for i in range(self.num_saves))


SMALL = SmallStepConfig(seeds=6, state_dim=10, num_saves=5, lrs=(0.04, 0.02, 0.01), rtol=2e-6)


def sweeps(config: SmallStepConfig) -> dict[str, rf.Sweep]:
    """`flow` and `steps` share one root key: seed s starts from one point in both."""
    model = rf.MODELS[config.parameterization](config.state_dim)
    loss_fn = rf.ImpulseLoss(_common.teacher(config.teacher), config.train_len).bind(model)
    metrics = {
        "loss": rf.loss_metric(loss_fn),
        "imbalance": lambda t, p: model.imbalance(p),
        "theta": lambda t, p: ravel_pytree(p)[0],
    }
    save = rf.Save((0.0,) + config.save_times, metrics=metrics)

    def solve(method, *args, rtol=config.rtol):  # an adaptive solve: the flow or modified flow
        return method(*args, stepsize_controller=_common.pid(rtol), max_steps=config.max_steps)

    most = round(config.t1 / min(config.lrs))  # steps at the smallest η

    def setup(point, key):
        if "rtol" in point:  # the reference
            method = solve(rf.GradientFlow, config.t1, rtol=point["rtol"])
        elif point["algorithm"] == "gd":  # each η its own t1/η steps, all η in one program
            method = rf.GradientDescent(point["lr"], t1=config.t1, max_steps=most)
        else:
            method = solve(rf.ModifiedFlow, point["lr"], config.t1)
        return loss_fn, model.init(key=key, scale=config.scale), method

    key, steps = _common.root_key(config.seed), {"algorithm": ("gd", "modified"), "lr": config.lrs}
    flow = rf.Sweep({"rtol": (config.rtol,)}, config.seeds, setup, key, save, looped=("rtol",))
    return {"flow": flow, "steps": rf.Sweep(steps, config.seeds, setup, key, save)}


def distances(data, config: SmallStepConfig):
    """Per step size, seed and save time t > 0: ‖θ_GD − θ_GF‖ (`gd_gf`), ‖θ_GD − θ_MF‖
    (`modified_gd`), ‖Q_GD − Q(0)‖ (`drift`), and the flow's own drift (`gf_drift`); NaN
    where a run failed."""
    import xarray as xr  # an optional dependency (rnnflow[sweep])

    times = np.asarray((0.0,) + config.save_times)  # the stores' save times, by position
    flow = data["flow"].isel(rtol=0).assign_coords(time=times)
    steps = data["steps"].assign_coords(time=times)
    gd, mf = steps.sel(algorithm="gd"), steps.sel(algorithm="modified")

    def norm(x):
        return np.sqrt((x**2).sum([d for d in x.dims if d.startswith(("theta_", "imbalance_"))]))

    def drift(ds):
        return norm(ds.imbalance - ds.imbalance.isel(time=0)).where(ok(ds))

    out = xr.Dataset(
        {
            "gd_gf": norm(gd.theta - flow.theta).where(ok(gd) & ok(flow)),
            "modified_gd": norm(gd.theta - mf.theta).where(ok(gd) & ok(mf)),
            "drift": drift(gd),
            "gf_drift": drift(flow),
        }
    )
    return out.isel(time=slice(1, None))


def slopes(dist, keys=("gd_gf", "modified_gd", "drift")):
    """Log-log slopes against η of the distances, per seed and save time."""
    return {k: fit_line(np.log(dist.lr), np.log(dist[k]), "lr")[0] for k in keys}


def analyse(data, config: SmallStepConfig) -> Summary:
    """The slopes and end values, and for the figure the distances at $t_1$ (lr, seed), their
    medians over time (lr, time) and the slopes' median and range over seeds by time."""
    dist = distances(data, config)
    last, med, flow, steps = dist.isel(time=-1), seed_median(dist), data["flow"], data["steps"]
    fitted, of_median = slopes(dist), slopes(seed_median(last), ("gd_gf", "modified_gd"))
    values = {
        "slope": {k: number(seed_median(s.isel(time=-1))) for k, s in fitted.items()},
        "slope_of_median": {k: number(s) for k, s in of_median.items()},
        "smallest_lr": {k: number(seed_median(last[k].sel(lr=min(config.lrs)))) for k in fitted},
        "gf_drift_max": number(dist.gf_drift.max()),
        "gf_num_steps_max": int(flow.num_steps.max()),
        "gd_diverged": int((steps.result == int(rf.Result.diverged)).sum()),
        "flow_failed": int((~ok(flow)).sum() + (~ok(steps)).sum()),
        "at_t1": {k: last[k].transpose("lr", "seed").values for k in fitted}
        | {"gf_drift_max": number(last.gf_drift.max())},
        "by_time": {"time": numbers(dist.time)}
        | {k: med[k].transpose("lr", "time").values for k in ("gd_gf", "modified_gd")},
        "slope_by_time": {
            k: {"median": numbers(seed_median(s)), "min": numbers(s.min("seed"))}
            | {"max": numbers(s.max("seed"))}
            for k, s in fitted.items()
        },
    }
    s = values["slope"]
    headline = (
        f"log-log slopes against η — GD vs GF: {s['gd_gf']:.2f} (first order), GD vs modified "
        f"flow: {s['modified_gd']:.2f} (second order), drift of Q: {s['drift']:.2f}"
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="small_step",
    claim=(
        "Gradient descent with step η tracks the gradient flow to O(η) and the modified flow "
        "of L + (η/4)‖∇L‖² to O(η²), and drifts from the flow's conserved balance by O(η)."
    ),
    config_type=SmallStepConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=16,
)
