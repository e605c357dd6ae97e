"""Init-scale sweep: small initialization extrapolates, large initialization does not.

For each parameterization and teacher, students much larger than the teacher start from
unbalanced random parameters of entry scale σ and are trained to (near) zero training loss.
One sweep, axes (parameterization, teacher, init_scale, seed, time): the training loss, the
relative imbalance ‖Q‖/‖θ‖², the relative extrapolation error to `horizon` and the
effective state dimension (Hankel rank of the impulse response to `horizon`) at log-spaced
times; the last save is the end of the run. Fact 5 on the science page.
"""

import dataclasses
from typing import Literal

import numpy as np

import rnnflow as rf

from . import _common, _stats
from ._stats import final, number, numbers, seed_median
from .base import Experiment, ExperimentConfig
from .plots import init_scale as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class InitScaleConfig(ExperimentConfig):
    """- `parameterizations`: among `dense`, `symmetric`, `diagonal`.
    - `teachers`: among `short` (0.9ⁱ), `long` (eigenvalue 1), `two_modes`, `three_modes`.
    - `state_dim`: the student's d; `scales`: the init entry scales σ swept. Entries of
      scale σ give A a spectral radius of about σ√d (2σ√d when symmetric), and gradient
      descent diverges where the impulse response grows too fast: at d = 40 and `lr` 0.01
      the symmetric student from σ = 0.2, the dense one from 0.3, the diagonal one at 1.
      Such scales are counted (`diverged_by_scale`), not compared.
    - `train_len`, `horizon`: k and q; `method` `gd` (step `lr`) or `gf` (gradient flow,
      solved by [`rnnflow.LeastSquaresRosenbrock`][] at rtol 1e-6); run to `t1` or until
      the loss is below `loss_below`.
    - `num_saves`: the metrics are saved at this many log-spaced times (3 decades).
    """

    experiment = "init_scale"
    seeds: int = 16
    parameterizations: tuple[str, ...] = ("diagonal", "symmetric", "dense")
    teachers: tuple[str, ...] = ("short", "long", "two_modes")
    state_dim: int = 40
    scales: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.2, 0.3)
    train_len: int = 5
    horizon: int = 50
    method: Literal["gd", "gf"] = "gd"
    lr: float = 0.01
    t1: float = 6000.0
    loss_below: float = 1e-12
    num_saves: int = 31

    def check(self):
        _common.check_among(self, "parameterizations", ("dense", "symmetric", "diagonal"))
        _common.check_teachers(self, "teachers")
        self.require_positive("state_dim", "train_len", "horizon", "scales", "lr", "t1")
        self.require_positive("loss_below", "num_saves")
        if self.horizon <= self.train_len:
            raise ValueError("`horizon` must exceed `train_len`.")


SMALL = InitScaleConfig(
    seeds=8,
    parameterizations=("diagonal", "dense"),
    teachers=("short",),
    state_dim=20,
    scales=(1e-2, 0.05, 0.2),
    t1=1000.0,
    loss_below=1e-9,
)


def metrics(loss_fn, config: InitScaleConfig) -> dict:
    """What is saved, for the student and teacher of a point."""
    model, teacher, k, q = loss_fn.model, loss_fn.loss.teacher, config.train_len, config.horizon
    return {
        "loss": lambda t, params: loss_fn(params),
        "relative_imbalance": rf.imbalance_metric(model),
        "extrapolation": rf.extrapolation_metric(model, teacher, train_len=k, horizon=q),
        "dim": rf.effective_dim_metric(model, length=q),
    }


def sweeps(config: InitScaleConfig) -> dict[str, rf.Sweep]:
    method = _common.method(config.method, lr=config.lr, t1=config.t1)
    measure = _common.MetricsOf(metrics, config)
    losses = {
        (p, t): rf.ImpulseLoss(_common.teacher(t), config.train_len).bind(
            rf.make_model(p, config.state_dim)
        )
        for p in config.parameterizations
        for t in config.teachers
    }

    def setup(point, key):
        loss_fn = losses[point["parameterization"], point["teacher"]]
        params = loss_fn.model.init(key=key, scale=point["init_scale"])
        return _common.Measured(loss_fn, measure), params, method

    axes = {
        "parameterization": config.parameterizations,
        "teacher": config.teachers,
        "init_scale": config.scales,
    }
    save = rf.Save(num=config.num_saves, spacing="log", decades=3)
    return {
        "sweep": rf.Sweep(
            axes,
            config.seeds,
            setup,
            _common.root_key(config.seed),
            save,
            rf.Stop(loss_below=config.loss_below),
            attrs={"config": config.to_dict()},
        )
    }


def analyse(data, config: InitScaleConfig) -> Summary:
    """Per parameterization and teacher: the seed medians at the end, by scale, and at the
    smallest and the largest scale at which at least half of the seeds trained (large
    entries make the recurrence unstable, and gradient descent diverges there: those
    scales are counted in `diverged_by_scale`, not compared)."""
    ds = data["sweep"]
    trained = _stats.ok(ds).mean("seed") >= 0.5
    diverged = (ds.result == int(rf.Result.diverged)).sum("seed")
    values, parts = {}, []
    for p in config.parameterizations:
        values[p] = {}
        for t in config.teachers:
            here = dict(parameterization=p, teacher=t)
            scales = ds.init_scale.where(trained.sel(here), drop=True).values
            ends = {  # NaN where every scale diverged
                "small_init": float(min(scales, default=np.nan)),
                "large_init": float(max(scales, default=np.nan)),
            }
            cell = {"small_scale": ends["small_init"], "large_scale": ends["large_init"]}
            for name in ("extrapolation", "dim", "loss"):
                med = seed_median(final(ds, name).sel(here))
                cell[name] = {
                    end: number(med.sel(init_scale=s)) if scales.size else np.nan
                    for end, s in ends.items()
                }
                cell[name]["by_scale"] = numbers(med)
            cell["diverged_by_scale"] = [int(n) for n in diverged.sel(here).values]
            values[p][t] = cell
            ext = cell["extrapolation"]
            parts.append(
                f"{p}/{t}: {ext['small_init']:.1e} (σ = {cell['small_scale']:g}) vs "
                f"{ext['large_init']:.1e} (σ = {cell['large_scale']:g})"
                if scales.size
                else f"{p}/{t}: diverged at every scale"
            )
    values["diverged"] = int(diverged.sum())
    return Summary("median relative extrapolation error — " + "; ".join(parts), values)


EXPERIMENT = Experiment(
    name="init_scale",
    claim=(
        "Gradient descent from small initialization learns a low-dimensional, nearly balanced "
        "state space that extrapolates; from large initialization it fits the training "
        "lengths without extrapolating."
    ),
    config_type=InitScaleConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=12,
)
