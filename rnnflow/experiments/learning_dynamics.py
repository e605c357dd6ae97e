r"""Learning dynamics: from small initialization the teacher's modes are learned one at a
time, in order of weight, after plateaus whose length grows like $\log(1/\sigma)$.
Fact 5 on the science page (saddle-to-saddle dynamics).

Students much larger than a teacher $\hat h_i = \sum_m p_m \lambda_m^i$ start from unbalanced
random parameters of entry scale σ and are trained by gradient descent on the impulse loss
at $k \ge 2\hat d + 1$. Near zero the gradient is of the size of the parameters, so a new
direction of the state space grows exponentially from σ at a rate set by the residual it
can explain: its mode is learned after a time of order $\log(1/\sigma)$ over that rate, and
the next mode waits again, longer the smaller its weight.

**Per-mode progress.** The learned measure $h_i = \sum_j w_j \mu_j^i$
([`rnnflow.learned_measure`][]) is split among the teacher's modes by nearest eigenvalue;
the weight that falls to mode $m$, over $p_m$, goes from 0 to 1. A mode is *learned* at
the first save time after which its progress stays ≥ `threshold` (interpolated between
saves); earlier crossings are transits and do not count. (Least-squares coefficients on
the teacher's basis were rejected: the early spike at lag 0 projects onto every mode.)

**Choices, measured** (float64 prototype, d = 20, k = 7, lr = 0.01; again in float32):
*symmetric* students show the staircase (times grew by 0.75, 2.3 and 32 time units per
decade of 1/σ, r² ≥ 0.995 over σ = 1e-2 … 1e-6, in weight order in every seed); *diagonal*
students do not (every unit owns its eigenvalue and grows while the first mode is fitted;
choose `parameterization = "diagonal"` to see it). The default teacher keeps its
eigenvalues apart (0.9, -0.7, 0.2; close ones are absorbed by one learned eigenvalue).
`lr = 0.01`: 0.02 gives the same losses to three digits, 0.03 is unstable.

One sweep, axes (init_scale, seed, time): loss, per-mode progress, relative extrapolation
error to 10 k and the learned measure at log-spaced times; the analysis finds the time
each mode is learned and fits, per mode, the median time against $\log_{10}(1/\sigma)$.
"""

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np

import rnnflow as rf

from . import _common, _stats
from ._stats import number, numbers, seed_median
from .base import Experiment, ExperimentConfig
from .plots import learning_dynamics as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class LearningDynamicsConfig(ExperimentConfig):
    """- `parameterization`: the student, `symmetric` (shows the staircase) or `diagonal`.
    - `eigenvalues`, `weights`: the teacher; distinct eigenvalues, non-zero weights.
    - `state_dim`: the student's d; `scales`: the init entry scales σ (unbalanced starts).
    - `train_len`: k, at least 2 × the number of modes + 1 so that the fit is unique.
    - `lr`, `t1`: gradient descent step and end time.
    - `num_saves`, `decades`: save times, 0 then log-spaced over `decades` decades up to `t1`.
    - `threshold`: the progress at which a mode counts as learned.
    """

    experiment = "learning_dynamics"
    seeds: int = 16
    parameterization: Literal["symmetric", "diagonal"] = "symmetric"
    eigenvalues: tuple[float, ...] = (0.9, -0.7, 0.2)
    weights: tuple[float, ...] = (1.0, 0.4, 0.15)
    state_dim: int = 20
    scales: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    train_len: int = 7
    lr: float = 0.01
    t1: float = 1000.0
    num_saves: int = 300
    decades: float = 4.0
    threshold: float = 0.5

    def check(self):
        lam = self.eigenvalues
        if len(self.weights) != len(lam) or 0 in self.weights:
            raise ValueError("`weights` must be non-zero, one per entry of `eigenvalues`.")
        if len(set(lam)) != len(lam):
            raise ValueError("`eigenvalues` must be distinct (each mode needs its own cell).")
        if self.state_dim < len(lam):
            raise ValueError("`state_dim` must be at least the number of teacher modes.")
        self.require_positive("train_len", "scales", "lr", "t1", "decades")
        if self.train_len < 2 * len(lam) + 1:
            raise ValueError(
                f"`train_len` must be at least 2 × {len(lam)} modes + 1 = {2 * len(lam) + 1} "
                f"for the fit to determine the teacher; got {self.train_len}."
            )
        _common.check_steps(self)
        if not 0 < self.threshold < 1:
            raise ValueError("`threshold` must lie strictly between 0 and 1.")


SMALL = LearningDynamicsConfig(seeds=4, t1=300.0, num_saves=150, decades=3.5)


def time_to_learn(ts: np.ndarray, progress: np.ndarray, threshold: float) -> np.ndarray:
    """First time after which `progress` (..., saves) stays ≥ `threshold`, interpolated
    linearly between saves; NaN where the final value is below it (or not finite)."""
    n = progress.shape[-1]
    below = np.where(progress >= threshold, -1, np.arange(n)).max(-1)  # last save below, or -1
    i = np.clip(below, 0, n - 2)
    lo, hi = (np.take_along_axis(progress, j[..., None], -1)[..., 0] for j in (i, i + 1))
    with np.errstate(divide="ignore", invalid="ignore"):  # hi = lo only where t is unused
        frac = np.where(np.isfinite(lo), (threshold - lo) / (hi - lo), 1.0)
    t = np.where(below < 0, ts[0], ts[i] + frac * (ts[i + 1] - ts[i]))
    last = progress[..., -1]
    return np.where(np.isfinite(last) & (last >= threshold), t, np.nan).astype(np.float64)


def sweeps(config: LearningDynamicsConfig) -> dict[str, rf.Sweep]:
    model = rf.MODELS[config.parameterization](config.state_dim)
    teacher = rf.modes_teacher(config.eigenvalues, config.weights)
    loss_fn, k = rf.ImpulseLoss(teacher, config.train_len).bind(model), config.train_len
    lam, p = (jnp.asarray(x, jnp.result_type(float)) for x in (config.eigenvalues, config.weights))

    def progress(t, params):  # the learned weight nearest each teacher eigenvalue, over p_m
        mu, w = rf.learned_measure(model, params)
        nearest = jnp.argmin(jnp.abs(mu[:, None] - lam[None, :]), axis=1)
        return w @ (nearest[:, None] == jnp.arange(len(p))[None, :]).astype(w.dtype) / p

    metrics = {
        "loss": rf.loss_metric(loss_fn),
        "progress": progress,
        "extrapolation": rf.extrapolation_metric(model, teacher, train_len=k, horizon=10 * k),
        "measure_eigenvalues": lambda t, prm: rf.learned_measure(model, prm)[0],
        "measure_weights": lambda t, prm: rf.learned_measure(model, prm)[1],
    }
    save = rf.Save(num=config.num_saves, spacing="log", decades=config.decades, metrics=metrics)
    return {"sweep": _common.scale_sweep(config, model, loss_fn, save)}


def times(ds, config: LearningDynamicsConfig):
    """The time each seed learns each mode, (init_scale, seed, mode); NaN if it did not
    by `t1` or its run failed."""
    progress = ds.progress.rename(progress_0="mode").transpose(..., "time")
    t_learn = time_to_learn(ds.time.values, progress.values, config.threshold)
    return progress.isel(time=-1, drop=True).copy(data=t_learn).where(_stats.ok(ds))


def analyse(data, config: LearningDynamicsConfig) -> Summary:
    """Whether each seed learns the modes, in which order, and per mode the fitted line
    `median time = intercept + slope · log10(1/σ)` and (for the figure) the times."""
    ds = data["sweep"]
    ok, t_learn = _stats.ok(ds), times(ds, config)
    # A seed that never learned a mode counts as +∞ in the median, so a median not reached
    # by `t1` is NaN rather than biased low.
    med = seed_median(t_learn.fillna(np.inf).where(ok)).where(np.isfinite)
    slope, intercept, r2 = _stats.fit_line(np.log10(1.0 / med.init_scale), med, "init_scale")
    order = np.argsort(-np.abs(np.asarray(config.weights)), kind="stable")
    learned = np.isfinite(t_learn).all("mode")  # every mode, by a seed that did not fail
    in_order = learned & (t_learn.isel(mode=order).diff("mode") > 0).all("mode")
    last = seed_median(ds[["loss", "extrapolation"]].isel(time=-1).where(ok), ...)
    fitted = {"slope_per_decade": slope, "intercept": intercept, "r2": r2}
    by_scale = {"t_learn_median_by_scale": med, "t_learn_by_scale": t_learn}
    values = {
        "learned_fraction": number(learned.mean()),
        "in_order_fraction": number(in_order.sum() / max(int(learned.sum()), 1)),
        "final_loss_median": number(last.loss),
        "extrapolation_median": number(last.extrapolation),
        "failed": int((~ok).sum()),
        "modes": {  # per mode: the fitted line; by scale, the median and every seed's time
            f"mode{m}": {"eigenvalue": lam, "weight": p}
            | {k: v.isel(mode=m).values for k, v in (fitted | by_scale).items()}
            for m, (lam, p) in enumerate(zip(config.eigenvalues, config.weights))
        },
    }
    headline = (
        f"modes learned in order of weight in {100 * values['in_order_fraction']:.0f}% of "
        f"seeds; time to learn grows by {' / '.join(f'{s:.3g}' for s in numbers(slope))} time "
        f"units per decade of 1/σ (r² {' / '.join(f'{r:.3f}' for r in numbers(r2))})"
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="learning_dynamics",
    claim=(
        "From near-zero initialization gradient descent learns the teacher's modes one at a "
        "time, in order of weight, after plateaus whose length grows like log(1/scale)."
    ),
    config_type=LearningDynamicsConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=8,
)
