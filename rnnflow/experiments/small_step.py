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

Stores: `flow` (axis `rtol`, the reference), `steps` (axes `algorithm` ∈ {gd, modified} × `lr`).

**Finite step size changes the solution** (store `dense`, axis `lr`, when `dense_seeds` >
0): a dense student from small initialization on $\hat h_i = 0.9^i$, trained to
convergence. The balanced rank-1 solution that the flow reaches has sharpness ≈ 46 for
d = 20, k = 5, so gradient descent with $\eta > 2/46 \approx 0.043$ cannot converge to it: at
η = 0.05 it settles, after a long plateau, on a flatter solution with complex eigenvalues
of modulus ≈ 1.5 that fits the training lags and does not extrapolate, while η ≤ 0.04
learns the exact solution. Saved: loss, extrapolation error, sharpness (top Hessian
eigenvalue by Lanczos, [`rnnflow.sharpness_metric`][], to compare with 2/η) and $A$ (its
spectral radius).

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
from ._common import final, fit_line, number, numbers, ok, seed_median
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
    - `dense_*`: the finite-step part (skipped when `dense_seeds` is 0): a dense student of
      size `dense_state_dim` from scale `dense_scale`, trained on `dense_teacher` with each
      of `dense_lrs` until the loss is below `dense_loss_below` or time `dense_t1`;
      extrapolation judged to `horizon`.
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
    dense_seeds: int = 8
    dense_teacher: str = "short"
    dense_state_dim: int = 20
    dense_scale: float = 1e-3
    dense_lrs: tuple[float, ...] = (0.06, 0.05, 0.045, 0.04, 0.03, 0.02, 0.01)
    dense_t1: float = 6000.0
    dense_loss_below: float = 1e-10
    horizon: int = 50

    def check(self):
        _common.check_teachers(self, "teacher", "dense_teacher")
        self.require_positive("state_dim", "train_len", "num_saves", "max_steps")
        self.require_positive("dense_state_dim", "scale", "t1", "rtol", "dense_scale")
        self.require_positive("dense_t1", "dense_loss_below", "lrs", "dense_lrs")
        if self.dense_seeds < 0:
            raise ValueError("`dense_seeds` must be non-negative (0 skips the dense part).")
        if len(self.lrs) < 2:
            raise ValueError("`lrs` needs at least two step sizes to fit a slope.")
        for t, lr in itertools.product(self.save_times, self.lrs):
            if abs(t / lr - round(t / lr)) > 1e-6:
                raise ValueError(
                    f"`lrs`: every save time must be a whole number of steps; "
                    f"t = {t} is not a multiple of η = {lr} (change `t1` or `num_saves`)."
                )
        if self.horizon <= self.train_len:
            raise ValueError("`horizon` must exceed `train_len`.")

    @property
    def save_times(self) -> tuple[float, ...]:
        return tuple(self.t1 * (i + 1) / self.num_saves for i in range(self.num_saves))


SMALL = SmallStepConfig(
    seeds=6,
    state_dim=10,
    num_saves=5,
    lrs=(0.04, 0.02, 0.01),
    dense_seeds=4,
    dense_lrs=(0.05, 0.04),
    dense_t1=4000.0,
    rtol=2e-6,
)


def sweeps(config: SmallStepConfig) -> dict[str, rf.Sweep]:
    """`flow` and `steps` share one root key (seed s starts from one point in both);
    `dense` has its own."""
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

    def setup(point, key):
        if "rtol" in point:  # the reference
            method = solve(rf.GradientFlow, config.t1, rtol=point["rtol"])
        elif point["algorithm"] == "gd":
            method = _common.method("gd", lr=point["lr"], t1=config.t1)
        else:
            method = solve(rf.ModifiedFlow, point["lr"], config.t1)
        return loss_fn, model.init(key=key, scale=config.scale), method

    key, steps = _common.root_key(config.seed), {"algorithm": ("gd", "modified"), "lr": config.lrs}
    flow = rf.Sweep({"rtol": (config.rtol,)}, config.seeds, setup, key, save, looped=("rtol",))
    out = {"flow": flow, "steps": rf.Sweep(steps, config.seeds, setup, key, save, looped=("lr",))}
    if config.dense_seeds:
        out["dense"] = _dense_sweep(config)
    return out


def _dense_sweep(config: SmallStepConfig) -> rf.Sweep:
    model = rf.DenseRNN(config.dense_state_dim)
    teacher, k, q = _common.teacher(config.dense_teacher), config.train_len, config.horizon
    loss_fn = rf.ImpulseLoss(teacher, k).bind(model)
    top = rf.sharpness_metric(loss_fn)  # shape (1,)
    metrics = {
        "loss": rf.loss_metric(loss_fn),
        "extrapolation": rf.extrapolation_metric(model, teacher, train_len=k, horizon=q),
        "sharpness": lambda t, p: top(t, p)[0],
        "transition": lambda t, p: p.a,
    }

    def setup(point, key):
        method = _common.method("gd", lr=point["lr"], t1=config.dense_t1)
        return loss_fn, model.init(key=key, scale=config.dense_scale), method

    key, save = _common.root_key(config.seed, 1), rf.Save(num=2, metrics=metrics)
    axes, stop = {"lr": config.dense_lrs}, rf.Stop(loss_below=config.dense_loss_below)
    return rf.Sweep(axes, config.dense_seeds, setup, key, save, stop, looped=("lr",))


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


def spectral_radius(a) -> np.ndarray:
    """max |eig(A)| over the last two axes (numpy: JAX's non-symmetric eig is CPU-only);
    NaN where A is not finite."""
    a = np.asarray(a, np.float64)
    finite = np.all(np.isfinite(a), axis=(-2, -1))
    radius = np.max(np.abs(np.linalg.eigvals(np.where(finite[..., None, None], a, 0.0))), -1)
    return np.where(finite, radius, np.nan)


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
    if "dense" in data:
        dense = data["dense"]
        radius = np.where(ok(dense), spectral_radius(dense.transition.isel(time=-1)), np.nan)
        values["dense"] = d = {
            "lrs": list(config.dense_lrs),
            "extrapolation": numbers(seed_median(final(dense, "extrapolation"))),
            "sharpness": numbers(seed_median(final(dense, "sharpness"))),
            "radius": numbers(_common.nanmedian(radius, 1)),
            "radius_by_seed": radius,
            "loss_max": numbers(final(dense, "loss").max("seed")),
            "diverged": int((dense.result == int(rf.Result.diverged)).sum()),
        }
        headline += "; dense student extrapolation error by η — " + ", ".join(
            f"η={lr:g}: {e:.0e}" for lr, e in zip(d["lrs"], d["extrapolation"])
        )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="small_step",
    claim=(
        "Gradient descent with step η tracks the gradient flow to O(η) and the modified flow "
        "of L + (η/4)‖∇L‖² to O(η²), and drifts from the flow's conserved balance by O(η); "
        "a step above 2/sharpness of the flow's solution lands elsewhere."
    ),
    config_type=SmallStepConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
)
