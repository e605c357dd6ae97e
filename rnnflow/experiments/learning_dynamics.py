r"""Learning dynamics: from small initialization the teacher's modes are learned one at a
time, in order of weight, after plateaus whose length grows like $\log(1/\sigma)$.
DESIGN fact 5 (saddle-to-saddle dynamics).

Students much larger than a teacher $\hat h_i = \sum_m p_m \lambda_m^i$ start from unbalanced
random parameters of entry scale σ and are trained by gradient descent on the impulse loss
at $k \ge 2\hat d + 1$. Near zero the gradient is of the size of the parameters, so a new
direction of the state space grows exponentially from σ at a rate set by the residual it
can explain: its mode is learned after a time of order $\log(1/\sigma)$ over that rate, and
the next mode waits again, longer the smaller its weight.

**Per-mode progress.** The learned measure $h_i = \sum_j w_j \mu_j^i$
([`rnnflow.learned_measure`][]) is split among the teacher's modes by nearest eigenvalue;
the weight that falls to mode $m$, over $p_m$, goes from 0 to 1. A mode is *learned* at
the first save time after which its progress stays at or above `threshold` (interpolated
between saves); earlier crossings are transits and do not count. (Least-squares
coefficients on the teacher's basis were rejected: the early spike at lag 0 projects onto
every mode.)

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

from .._diagnostics import learned_measure
from .._losses import ImpulseLoss
from .._models import MODELS
from .._rnn_metrics import extrapolation_metric
from .._sweep import Sweep
from .._teachers import modes_teacher
from .._trajectory import Save
from . import _common, plots
from ._common import final, number, numbers, seed_median
from .base import Experiment, ExperimentConfig
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
        if len(self.weights) != len(self.eigenvalues):
            raise ValueError("`weights` must have one entry per entry of `eigenvalues`.")
        if any(p == 0 for p in self.weights):
            raise ValueError("`weights` must be non-zero.")
        if len(set(self.eigenvalues)) != len(self.eigenvalues):
            raise ValueError("`eigenvalues` must be distinct (each mode needs its own cell).")
        if self.state_dim < len(self.eigenvalues):
            raise ValueError("`state_dim` must be at least the number of teacher modes.")
        self.require_positive("train_len", "scales", "lr", "t1", "decades")
        if self.lr > self.t1:
            raise ValueError("`lr` must not exceed `t1` (at least one step).")
        if self.num_saves < 2:
            raise ValueError("`num_saves` must be at least 2.")
        if not 0 < self.threshold < 1:
            raise ValueError("`threshold` must lie strictly between 0 and 1.")


SMALL = LearningDynamicsConfig(seeds=4, t1=300.0, num_saves=150, decades=3.5)


def mode_progress(model, params, eigenvalues, weights) -> jnp.ndarray:
    """Weight of the learned measure nearest each teacher eigenvalue, over the teacher weight."""
    lam, w = learned_measure(model, params)
    nearest = jnp.argmin(jnp.abs(lam[:, None] - eigenvalues[None, :]), axis=1)
    cells = (nearest[:, None] == jnp.arange(eigenvalues.shape[0])[None, :]).astype(w.dtype)
    return (w @ cells) / weights


def time_to_learn(ts: np.ndarray, progress: np.ndarray, threshold: float) -> np.ndarray:
    """First time after which `progress` (..., saves) stays ≥ `threshold`, interpolated
    linearly between saves; NaN where the final value is below it."""
    flat = progress.reshape(-1, progress.shape[-1])
    out = np.full(flat.shape[0], np.nan)
    for n, p in enumerate(flat):
        if not np.isfinite(p[-1]) or p[-1] < threshold:
            continue
        below = np.nonzero(~(p >= threshold))[0]
        if below.size == 0:
            out[n] = ts[0]
            continue
        i = below[-1]
        lo, hi = p[i], p[i + 1]
        frac = (threshold - lo) / (hi - lo) if np.isfinite(lo) and hi > lo else 1.0
        out[n] = ts[i] + frac * (ts[i + 1] - ts[i])
    return out.reshape(progress.shape[:-1])


def sweeps(config: LearningDynamicsConfig) -> dict[str, Sweep]:
    model = MODELS[config.parameterization](config.state_dim)
    teacher = modes_teacher(config.eigenvalues, config.weights)
    loss_fn = ImpulseLoss(teacher, config.train_len).bind(model)
    lam, p = (jnp.asarray(x, jnp.result_type(float)) for x in (config.eigenvalues, config.weights))
    k = config.train_len
    metrics = {
        "loss": lambda t, prm: loss_fn(prm),
        "progress": lambda t, prm: mode_progress(model, prm, lam, p),
        "extrapolation": extrapolation_metric(model, teacher, train_len=k, horizon=10 * k),
        "measure_eigenvalues": lambda t, prm: learned_measure(model, prm)[0],
        "measure_weights": lambda t, prm: learned_measure(model, prm)[1],
    }
    method = _common.method("gd", lr=config.lr, t1=config.t1)

    def setup(point, key):
        return loss_fn, model.init(key=key, scale=point["init_scale"]), method

    save = Save(num=config.num_saves, spacing="log", decades=config.decades, metrics=metrics)
    key = _common.root_key(config.seed)
    return {"sweep": Sweep({"init_scale": config.scales}, config.seeds, setup, key, save)}


def times(ds, config: LearningDynamicsConfig):
    """The time each seed learns each mode, (init_scale, seed, mode); NaN if it did not
    by `t1` or its run failed."""
    import xarray as xr

    ts = ds.time.values
    t_learn = xr.apply_ufunc(
        lambda p: time_to_learn(ts, p, config.threshold),
        ds.progress.transpose(..., "progress_0", "time"),
        input_core_dims=[["time"]],
    )
    return t_learn.rename(progress_0="mode").where(_common.ok(ds))


def fits(ds, config: LearningDynamicsConfig):
    """Per mode, the line `median time = intercept + slope · log10(1/σ)`: (slope,
    intercept, r²). A seed that never learned a mode counts as +∞ in the median, so a
    median not reached by `t1` is NaN rather than biased low."""
    t_learn = times(ds, config)
    unlearned = t_learn.where(~(_common.ok(ds) & np.isnan(t_learn)), np.inf)
    med = seed_median(unlearned)
    med = med.where(np.isfinite(med))
    return _common.fit_line(np.log10(1.0 / med.init_scale), med, "init_scale") + (med,)


def analyse(data, config: LearningDynamicsConfig) -> Summary:
    ds = data["sweep"]
    t_learn = times(ds, config)
    slope, _, r2, med = fits(ds, config)
    ok = _common.ok(ds)
    order = np.argsort(-np.abs(np.asarray(config.weights)), kind="stable")
    learned = ok & np.isfinite(t_learn).all("mode")
    in_order = learned & (t_learn.isel(mode=order).diff("mode") > 0).all("mode")
    values = {
        "learned_fraction": number(learned.mean()),
        "in_order_fraction": number(in_order.sum() / max(int(learned.sum()), 1)),
        "final_loss_median": number(seed_median(final(ds, "loss"), ...)),
        "extrapolation_median": number(seed_median(final(ds, "extrapolation"), ...)),
        "failed": int((~ok).sum()),
        "modes": {
            f"mode{m}": {
                "eigenvalue": config.eigenvalues[m],
                "weight": config.weights[m],
                "slope_per_decade": number(slope[m]),
                "r2": number(r2[m]),
                "t_learn_median_by_scale": numbers(med.isel(mode=m)),
            }
            for m in range(len(config.eigenvalues))
        },
    }
    headline = (
        f"modes learned in order of weight in {100 * values['in_order_fraction']:.0f}% of "
        "seeds; time to learn grows by "
        + " / ".join(f"{m['slope_per_decade']:.3g}" for m in values["modes"].values())
        + " time units per decade of 1/σ (r² "
        + " / ".join(f"{m['r2']:.3f}" for m in values["modes"].values())
        + ")"
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
    plot=plots.learning_dynamics,
)
