r"""Finite step size changes the solution: where the small-step limit ends.

The [small_step](small_step.md) experiment shows gradient descent tracking the gradient
flow as η → 0 (facts 1 and 2 on the science page). That limit needs the step small on
the scale of the curvature: gradient descent cannot settle at a minimum whose sharpness
(top Hessian eigenvalue) exceeds 2/η. Here the flow's own solution is too sharp for the
larger steps.

A dense student from small initialization on $\hat h_i = 0.9^i$ (teacher `short`) is
trained by gradient descent with each step η (store `dense`, axis `lr`) until its loss
is below `loss_below` or time `t1`. The balanced rank-1 solution that the flow reaches
has sharpness ≈ 46 for d = 20, k = 5, so gradient descent with $\eta > 2/46 \approx
0.043$ cannot converge to it: at η = 0.05 it settles, after a long plateau, on a flatter
solution with complex eigenvalues of modulus ≈ 1.5 that fits the training lags and does
not extrapolate, while η ≤ 0.04 learns the exact solution. Saved at the start and the
end: loss, extrapolation error, sharpness (top Hessian eigenvalue by Lanczos,
[`rnnflow.sharpness_metric`][], to compare with 2/η) and $A$ (its spectral radius).

**Precision.** float32 separates the two sides at the small config, though some seeds at
η = 0.04 end just above a loss of 1e-10; the docs' figure is float64 (`--float64`).
"""

import dataclasses

import numpy as np

import rnnflow as rf

from . import _common, _stats
from ._stats import final, numbers, ok, seed_median
from .base import Experiment, ExperimentConfig
from .plots import finite_step as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class FiniteStepConfig(ExperimentConfig):
    """- `state_dim`, `scale`, `teacher`, `train_len`: the dense student, its init entry
      scale, and the impulse loss it is trained on.
    - `lrs`: the step sizes η, on both sides of 2/sharpness of the flow's solution.
    - `t1`, `loss_below`: each run stops once its loss is below `loss_below`, or at `t1`.
    - `horizon`: the extrapolation error is judged up to this lag.
    """

    experiment = "finite_step"
    seeds: int = 8
    teacher: str = "short"
    state_dim: int = 20
    scale: float = 1e-3
    train_len: int = 5
    lrs: tuple[float, ...] = (0.06, 0.05, 0.045, 0.04, 0.03, 0.02, 0.01)
    t1: float = 6000.0
    loss_below: float = 1e-10
    horizon: int = 50

    def check(self):
        _common.check_teachers(self, "teacher")
        self.require_positive("state_dim", "train_len", "scale", "lrs", "t1", "loss_below")
        if self.horizon <= self.train_len:
            raise ValueError("`horizon` must exceed `train_len`.")


SMALL = FiniteStepConfig(seeds=4, lrs=(0.05, 0.04), t1=4000.0)


def sweeps(config: FiniteStepConfig) -> dict[str, rf.Sweep]:
    model = rf.DenseRNN(config.state_dim)
    teacher, k, q = _common.teacher(config.teacher), config.train_len, config.horizon
    loss_fn = rf.ImpulseLoss(teacher, k).bind(model)
    top = rf.sharpness_metric(loss_fn)  # shape (1,)
    metrics = {
        "loss": rf.loss_metric(loss_fn),
        "extrapolation": rf.extrapolation_metric(model, teacher, train_len=k, horizon=q),
        "sharpness": lambda t, p: top(t, p)[0],
        "transition": lambda t, p: p.a,
    }

    def setup(point, key):
        method = _common.method("gd", lr=point["lr"], t1=config.t1)
        return loss_fn, model.init(key=key, scale=config.scale), method

    # Part 1 of the seed's key (small_step's starts are part 0): the docs' numbers were
    # drawn from these starts.
    key, save = _common.root_key(config.seed, 1), rf.Save(num=2, metrics=metrics)
    axes, stop = {"lr": config.lrs}, rf.Stop(loss_below=config.loss_below)
    return {"dense": rf.Sweep(axes, config.seeds, setup, key, save, stop, looped=("lr",))}


def spectral_radius(a) -> np.ndarray:
    """max |eig(A)| over the last two axes (numpy: JAX's non-symmetric eig is CPU-only);
    NaN where A is not finite."""
    a = np.asarray(a, np.float64)
    finite = np.all(np.isfinite(a), axis=(-2, -1))
    radius = np.max(np.abs(np.linalg.eigvals(np.where(finite[..., None, None], a, 0.0))), -1)
    return np.where(finite, radius, np.nan)


def analyse(data, config: FiniteStepConfig) -> Summary:
    """Per η, the medians over seeds of the final extrapolation error, sharpness and
    spectral radius of $A$, the largest final loss; for the figure each seed's radius."""
    ds = data["dense"]
    radius = np.where(ok(ds), spectral_radius(ds.transition.isel(time=-1)), np.nan)
    values = {
        "lrs": list(config.lrs),
        "extrapolation": numbers(seed_median(final(ds, "extrapolation"))),
        "sharpness": numbers(seed_median(final(ds, "sharpness"))),
        "radius": numbers(_stats.nanmedian(radius, 1)),
        "radius_by_seed": radius,
        "loss_max": numbers(final(ds, "loss").max("seed")),
        "diverged": int((ds.result == int(rf.Result.diverged)).sum()),
    }
    headline = "dense student, median extrapolation error (sharpness) by η — " + ", ".join(
        f"η={lr:g}: {e:.0e} ({s:.1f})"
        for lr, e, s in zip(config.lrs, values["extrapolation"], values["sharpness"])
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="finite_step",
    claim=(
        "Gradient descent with a step above 2/sharpness of the flow's solution cannot "
        "converge to it: the dense student ends elsewhere, on solutions that fit the "
        "training lags and do not extrapolate."
    ),
    config_type=FiniteStepConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=10,
)
