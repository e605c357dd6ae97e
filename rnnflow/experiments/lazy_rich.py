r"""Lazy and rich: where training leaves the kernel regime, against the init scale. The
science and the tools are on [lazy and rich](../lazy_rich.md); the figure, its numbers and
the reasons for the defaults, on its docs page, docs/experiments/lazy_rich.md.

For each student and init entry scale σ, `seeds` students much larger than the teacher are
trained on the impulse loss, each in one run beside its own linearization at its
initialization ([`rnnflow.side_by_side`][]), centered by default (each outputs
$h(θ) - h(θ_0)$). One sweep, axes (parameterization, init_scale, seed, time), saved per seed
at log-spaced times: both training losses, the relative kernel change
$\|K_t - K_0\|_F / \|K_0\|_F$, the relative parameter change, the relative extrapolation error
over lags $k \le i < q$ of the student (`real`) and of its linearization, and the student's
effective state dimension. The summary reports, per student, the scale at which the final
kernel change falls below `threshold` (per seed; median and quartiles).
"""

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np

import rnnflow as rf

from . import _common, _stats
from ._stats import numbers, seed_median
from .base import Experiment, ExperimentConfig
from .plots import lazy_rich as _plot
from .summary import Summary

FIELDS = ("kernel_change", "parameter_change", "extrapolation", "linear_extrapolation", "dim")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LazyRichConfig(ExperimentConfig):
    """- `parameterizations`: students among `diagonal`, `symmetric`, `dense`, `tanh`.
    - `teacher`: a name in `short` (0.9ⁱ), `long` (eigenvalue 1), `two_modes`, `three_modes`.
    - `state_dim`: the student's d; `scales`: the init entry scales σ, increasing.
    - `train_len`, `horizon`: k and q; `method` `gf` (gradient flow, solved by
      [`rnnflow.LeastSquaresRosenbrock`][] at rtol 1e-6) or `gd` (step `lr`), to `t1`.
    - `num_saves`: log-spaced saves over `decades` decades before `t1`.
    - `threshold`: the kernel change whose crossing the summary reports.
    - `centered`: train the centered students $h(θ) - h(θ_0)$ (see [`rnnflow.side_by_side`][]).
    """

    experiment = "lazy_rich"
    seeds: int = 256
    parameterizations: tuple[str, ...] = ("diagonal", "dense", "tanh")
    teacher: str = "short"
    state_dim: int = 10
    scales: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    train_len: int = 5
    horizon: int = 50
    method: Literal["gd", "gf"] = "gf"
    lr: float = 0.01
    t1: float = 1000.0
    num_saves: int = 31
    decades: float = 5.0
    threshold: float = 0.1
    centered: bool = True

    def check(self):
        _common.check_among(self, "parameterizations", rf.MODELS)
        _common.check_teachers(self, "teacher")
        self.require_positive("state_dim", "train_len", "horizon", "scales", "lr", "t1")
        self.require_positive("decades", "threshold")
        if len(self.scales) < 2 or np.any(np.diff(self.scales) <= 0):
            raise ValueError(f"`scales` must be two or more increasing values; got {self.scales}.")
        if self.horizon <= self.train_len:
            raise ValueError("`horizon` must exceed `train_len`.")
        if self.num_saves < 2:
            raise ValueError("`num_saves` must be at least 2.")


# Gradient descent: its program compiles in a third of the time of the flow's Rosenbrock
# solver. Step 0.01 is stable up to σ = 0.6 for these students (a dense one diverges there),
# below the σ ≈ 1 where the centered diagonal student's kernel change crosses 10%: the
# small version shows the fall and the parting, the full one the crossing.
SMALL = LazyRichConfig(
    seeds=6,
    parameterizations=("diagonal", "tanh"),
    scales=(0.01, 0.03, 0.1, 0.3, 0.6),
    method="gd",
    t1=50.0,
    num_saves=11,
)


def metrics(pair, config: LazyRichConfig) -> dict:
    """What is saved, for the side-by-side loss of a point's student: its defaults but the
    linearization gap (both losses, kernel and parameter change), and the extrapolation."""
    k, q = config.train_len, config.horizon
    target = _common.teacher(config.teacher).impulse_response(q)[k:]

    def response(p):  # to the horizon; centered with the pair
        return pair.loss.model.impulse_response(p, q)

    def relative(output):  # of `pair.real_output` or `pair.linear_output`
        return lambda t, p: jnp.sum((output(response, p)[k:] - target) ** 2) / jnp.sum(target**2)

    defaults = {n: m for n, m in pair.default_metrics().items() if n != "linearization_gap"}
    return defaults | {
        "extrapolation": relative(pair.real_output),
        "linear_extrapolation": relative(pair.linear_output),
        "dim": lambda t, p: rf.effective_dim(pair.real_output(response, p)),
    }


def sweeps(config: LazyRichConfig) -> dict[str, rf.Sweep]:
    method = _common.method(config.method, lr=config.lr, t1=config.t1)
    measure = _common.MetricsOf(metrics, config)
    loss = rf.ImpulseLoss(_common.teacher(config.teacher), config.train_len)

    def setup(point, key):
        model = rf.make_model(point["parameterization"], config.state_dim)
        pair = rf.side_by_side(loss.bind(model), centered=config.centered)
        params = model.init(key=key, scale=point["init_scale"])
        return _common.Measured(pair, measure), rf.SideBySide(params), method

    axes = {"parameterization": config.parameterizations, "init_scale": config.scales}
    save = rf.Save(num=config.num_saves, spacing="log", decades=config.decades)
    key = _common.root_key(config.seed)
    attrs = {"config": config.to_dict()}
    return {"sweep": rf.Sweep(axes, config.seeds, setup, key, save, attrs=attrs)}


def crossing(change, scales, threshold: float) -> np.ndarray:
    """Per seed, the scale at which `change` (scales × seeds) first falls below `threshold`
    going up the scales, by linear interpolation of log change against log scale; NaN where
    it does not cross between two finite neighbours. A change of exactly 0 (a kernel that
    does not move: saturated tanh units) is below any threshold; the interpolation's limit
    puts the crossing at the scale before it. Further axes after the seeds' are kept."""
    y = np.asarray(change, np.float64)
    x = np.log(np.asarray(scales, np.float64)).reshape((-1,) + (1,) * (y.ndim - 1))
    with np.errstate(all="ignore"):  # log 0 = -inf; where no crossing, `at` is unused
        y, level = np.log(y), np.log(threshold)
        a, b = y[:-1], y[1:]
        at = np.exp(x[:-1] + (level - a) * (x[1:] - x[:-1]) / (b - a))
    crosses = (level <= a) & (a < np.inf) & (level > b)
    first = np.take_along_axis(at, crosses.argmax(0)[None], 0)[0]
    return np.where(crosses.any(0), first, np.nan)


def analyse(data, config: LazyRichConfig) -> Summary:
    ds = data["sweep"]
    last = ds[list(FIELDS)].isel(time=-1).where(_stats.ok(ds))  # `_stats.final` of each
    med = seed_median(last)
    change = last.kernel_change.transpose("init_scale", ...).values  # (σ, student, seed)
    crossings = crossing(change, config.scales, config.threshold)
    values, parts = {}, []
    for p, at in zip(config.parameterizations, crossings, strict=True):
        rows = {name: numbers(med[name].sel(parameterization=p)) for name in FIELDS}  # by σ
        cell = {
            n: {"small_init": v[0], "large_init": v[-1], "by_scale": v} for n, v in rows.items()
        }
        c = cell["crossing"] = _stats.quartiles(at) | {"crossed": int(np.isfinite(at).sum())}
        values[p], kc = cell, cell["kernel_change"]
        where = (  # the quartiles are over the seeds that cross
            f"below at σ = {c['median']:.2g} [{c['q25']:.2g}, {c['q75']:.2g}]"
            if c["crossed"]
            else f"not below by σ = {config.scales[-1]:g}"
        )
        parts.append(
            f"{p} {kc['small_init']:.2g} → {kc['large_init']:.2g}, {where} "
            f"({c['crossed']}/{config.seeds} seeds)"
        )
    values["diverged"] = int((ds.result == int(rf.Result.diverged)).sum())
    values["failed"] = int((~_stats.ok(ds)).sum())
    headline = (
        f"median final kernel change from σ = {config.scales[0]:g} to {config.scales[-1]:g}, and "
        f"where it falls below {config.threshold:g} (median [quartiles]): " + "; ".join(parts)
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="lazy_rich",
    claim=(
        "From small initialization the kernel moves by orders of magnitude of its own size "
        "(rich) and the student learns a low-dimensional state space that extrapolates, "
        "unlike its linearization; the larger the initialization, the less the kernel moves "
        "and the closer the student's extrapolation comes to its linearization's (lazy)."
    ),
    config_type=LazyRichConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=12,
)
