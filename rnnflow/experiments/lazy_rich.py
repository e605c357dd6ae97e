r"""Lazy and rich: where training leaves the kernel regime, against the init scale.

For each student (`diagonal`, `dense`, `tanh`) and init entry scale σ, `seeds` students
much larger than the teacher are trained on the impulse loss, each in one run beside its
own linearization at its initialization ([`rnnflow.side_by_side`][]; see
[lazy and rich](../lazy_rich.md)). Saved per seed at log-spaced times: both training
losses, the relative kernel change $\|K_t - K_0\|_F / \|K_0\|_F$, the relative parameter
change, the relative extrapolation error over lags $k \le i < q$ of the student (`real`)
and of its linearization (whose response beyond training is linearized too), and the
effective state dimension of the student (Hankel rank of its impulse response to $q$).

The students are centered (`centered`, the default; Chizat, Oyallon & Bach 2019): each
outputs $h(θ) - h(θ_0)$, $θ_0$ its own initialization, held, so every run starts from
output zero and its linearization is $J(θ_0)δ$. Uncentered, a student from large σ must
first cancel its large initial output, and no seed's kernel change falls below 10%;
centered, the scale of a homogeneous student acts as Chizat's α = σᵖ and the run becomes
lazy (the tanh student instead by saturation, at larger σ: its states pinned at ±1 are
fixed features). The kernel change at the end falls as σ grows: from small σ the kernel moves by
orders of magnitude of its own size (rich), from large σ by little (lazy). Where it is
rich the real run and its linearization extrapolate differently and the real run's state
space is low-dimensional; as σ grows the two come together. The summary reports, per
student, the scale at which the final kernel change first falls below `threshold` (per
seed, by log-log interpolation between neighbouring scales; NaN for a seed that does not
cross within the swept range), with its median and quartiles over the seeds that cross.

One sweep, axes (parameterization, init_scale, seed, time).
"""

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np

from .._diagnostics import effective_dim
from .._laziness import kernel_change_metric, parameter_change_metric
from .._losses import ImpulseLoss
from .._models import make_model
from .._side_by_side import SideBySide, side_by_side
from .._sweep import Sweep
from .._trajectory import Result, Save
from . import _common, plots
from ._common import final, number, numbers, seed_median
from .base import Experiment, ExperimentConfig
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
        for p in self.parameterizations:
            if p not in ("diagonal", "symmetric", "dense", "tanh"):
                raise ValueError(
                    "`parameterizations` entries must be diagonal, symmetric, dense or tanh; "
                    f"got {p!r}."
                )
        if self.teacher not in _common.TEACHERS:
            raise ValueError(
                f"`teacher` must be one of {tuple(_common.TEACHERS)}; got {self.teacher!r}."
            )
        self.require_positive("state_dim", "train_len", "horizon", "scales", "lr", "t1")
        self.require_positive("decades", "threshold")
        if len(self.scales) < 2 or any(a >= b for a, b in zip(self.scales, self.scales[1:])):
            raise ValueError(
                f"`scales` must be at least two increasing values; got {self.scales!r}."
            )
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
    state_dim=10,
    scales=(0.01, 0.03, 0.1, 0.3, 0.6),
    method="gd",
    t1=50.0,
    num_saves=11,
)


def metrics(pair, config: LazyRichConfig) -> dict:
    """What is saved, for the side-by-side loss of a point's student."""
    loss_fn, k, q = pair.loss, config.train_len, config.horizon
    model = loss_fn.model
    target = _common.teacher(config.teacher).impulse_response(q)[k:]

    def response(p):  # to the horizon; centered with the pair
        return model.impulse_response(p, q)

    def relative(h):
        return jnp.sum((h[k:] - target) ** 2) / jnp.sum(target**2)

    return {
        "loss": lambda t, p: jnp.sum(pair.real_residuals(p) ** 2),
        "linear_loss": lambda t, p: jnp.sum(pair.linear_residuals(p) ** 2),
        "kernel_change": kernel_change_metric(loss_fn),
        "parameter_change": parameter_change_metric(),
        "extrapolation": lambda t, p: relative(pair.real_output(response, p)),
        "linear_extrapolation": lambda t, p: relative(pair.linear_output(response, p)),
        "dim": lambda t, p: effective_dim(pair.real_output(response, p)),
    }


def sweeps(config: LazyRichConfig) -> dict[str, Sweep]:
    method = _common.method(config.method, lr=config.lr, t1=config.t1)
    measure = _common.MetricsOf(metrics, config)
    loss = ImpulseLoss(_common.teacher(config.teacher), config.train_len)
    pairs = {
        p: side_by_side(loss.bind(make_model(p, config.state_dim)), centered=config.centered)
        for p in config.parameterizations
    }

    def setup(point, key):
        pair = pairs[point["parameterization"]]
        params = pair.loss.model.init(key=key, scale=point["init_scale"])
        return _common.Measured(pair, measure), SideBySide(params), method

    axes = {"parameterization": config.parameterizations, "init_scale": config.scales}
    save = Save(num=config.num_saves, spacing="log", decades=config.decades)
    key = _common.root_key(config.seed)
    attrs = {"config": config.to_dict()}
    return {"sweep": Sweep(axes, config.seeds, setup, key, save, attrs=attrs)}


def crossing(change, scales, threshold: float) -> np.ndarray:
    """Per seed, the scale at which `change` (scales × seeds) first falls below `threshold`
    going up the scales, by linear interpolation of log change against log scale; NaN where
    it does not cross between two finite neighbours. A change of exactly 0 (a kernel that
    does not move: saturated tanh units) is below any threshold; the interpolation's limit
    puts the crossing at the scale before it."""
    x = np.log(np.asarray(scales, np.float64))
    with np.errstate(divide="ignore"):
        y = np.log(np.asarray(change, np.float64))
    out = np.full(y.shape[1], np.nan)
    level = np.log(threshold)
    for s in range(y.shape[1]):
        for j in range(1, len(x)):
            a, b = y[j - 1, s], y[j, s]
            if np.isfinite(a) and (np.isfinite(b) or b == -np.inf) and a >= level > b:
                out[s] = np.exp(x[j - 1] + (level - a) * (x[j] - x[j - 1]) / (b - a))
                break
    return out


def analyse(data, config: LazyRichConfig) -> Summary:
    ds = data["sweep"]
    small, large = min(config.scales), max(config.scales)
    values, parts = {}, []
    for p in config.parameterizations:
        cell = {}
        for name in FIELDS:
            med = seed_median(final(ds, name).sel(parameterization=p))
            cell[name] = {
                "small_init": number(med.sel(init_scale=small)),
                "large_init": number(med.sel(init_scale=large)),
                "by_scale": numbers(med),
            }
        change = final(ds, "kernel_change").sel(parameterization=p)
        at = crossing(
            change.transpose("init_scale", "seed").values, config.scales, config.threshold
        )
        cell["crossing"] = c = dict(_common.quartiles(at), crossed=int(np.isfinite(at).sum()))
        values[p] = cell
        kc = cell["kernel_change"]
        parts.append(
            f"{p} {kc['small_init']:.2g} → {kc['large_init']:.2g}, below at σ = {c['median']:.2g} "
            f"[{c['q25']:.2g}, {c['q75']:.2g}] ({c['crossed']}/{config.seeds} seeds)"
        )
    values["diverged"] = int((ds.result == int(Result.diverged)).sum())
    values["failed"] = int((ds.result > int(Result.converged)).sum())
    headline = (
        f"median final kernel change from σ = {small:g} to {large:g}, and where it falls below "
        f"{config.threshold:g} (median [quartiles]): " + "; ".join(parts)
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
    plot=plots.lazy_rich,
)
