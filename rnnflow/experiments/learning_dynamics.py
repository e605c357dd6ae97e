r"""Learning dynamics: from small initialization the teacher's modes are learned one at a
time, in order of weight, after plateaus whose length grows like $\log(1/\sigma)$.
DESIGN fact 5 (saddle-to-saddle dynamics).

Students much larger than a teacher $\hat h_i = \sum_m p_m \lambda_m^i$ start from unbalanced
random parameters of entry scale σ and are trained by gradient descent on the impulse loss
at training length $k \ge 2\hat d + 1$. Near zero the gradient is of the size of the
parameters, so a new direction of the state space grows exponentially from σ at a rate set
by the residual it can explain: its mode is learned after a time of order $\log(1/\sigma)$
divided by that rate. Once it is learned the other directions are still of size ~σ, and
the next mode waits again, longer the smaller its weight.

**Per-mode progress.** The student's learned measure $h_i = \sum_j w_j \mu_j^i$
([`rnnflow.learned_measure`][]: eigenvalues $\mu_j$ of $A$ and their weights) is split
among the teacher's modes by nearest eigenvalue, and the weight that falls to mode $m$ is
divided by $p_m$: progress goes from 0 to 1. A mode is *learned* at the first save time
after which its progress stays at or above `threshold` (linearly interpolated between
saves); earlier crossings are transits (an eigenvalue on its way to another mode passes
through this one's cell) and do not count. Least-squares coefficients of $h$ on the
teacher's basis $\lambda_m^i$ were tried first and rejected: the early student, whose
response is a spike at lag 0, projects onto every mode, and a slightly misplaced strong
mode leaks into weak ones for as long as it stays misplaced.

**Choices, measured** (float64 prototype, 3–4 seeds per scale, d = 20, k = 7, lr = 0.01;
checked again with this module in float32, 16 seeds per scale):

- *Symmetric* students show the staircase: with the default teacher the times to learn the
  three modes grew by 0.75, 2.3 and 32 time units per decade of 1/σ, linearly (r² ≥ 0.995
  over σ = 1e-2 … 1e-6; the same in float32 at full scale), in weight order in every seed.
- *Diagonal* students do not: each unit owns its eigenvalue, every unit grows together
  while the first mode is fitted (the lag-0 residual drives all of them), and later modes
  are reached by eigenvalues drifting at rates set by the O(1) weights they already have,
  not by escaping from σ. The second mode's time then barely depends on σ and modes are
  not learned in weight order. Choose `parameterization = "diagonal"` to see this.
- The teacher of `_common.TEACHERS["three_modes"]` (eigenvalues 0.95, 0.6, -0.5) has two
  close positive eigenvalues: the first learned eigenvalue sits at ≈ 0.9 with weight ≈ 1.3,
  absorbing both, and the 0.6 mode is resolved last, after the -0.5 mode. The default
  teacher here keeps the eigenvalues apart (0.9, -0.7, 0.2) with weights 1, 0.4, 0.15.
- `lr = 0.01`: lr = 0.02 gives the same final losses to three digits, lr = 0.03 is unstable
  (losses 1e-2 – 0.4 at t = 200 instead of 2e-5): a margin of 2–3 below the edge.

Recorded per seed (axes scale, seed): the loss and per-mode progress at log-spaced save
times, the time each mode is learned, the final learned measure and extrapolation error,
and the result code; then, per mode, a least-squares line of the median time to learn
against $\log_{10}(1/\sigma)$.
"""

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._diagnostics import learned_measure
from .._losses import ImpulseLoss, extrapolation_error
from .._models import MODELS
from .._teachers import modes_teacher
from .._trajectory import Result, Save
from . import _common
from .base import Experiment, ExperimentConfig, Outcome, Sweep


@dataclasses.dataclass(frozen=True, kw_only=True)
class LearningDynamicsConfig(ExperimentConfig):
    """- `parameterization`: the student, `symmetric` (shows the staircase) or `diagonal`.
    - `eigenvalues`, `weights`: the teacher $\\hat h_i = \\sum_m p_m \\lambda_m^i$; distinct
      eigenvalues, non-zero weights. Modes are expected to be learned in order of |weight|.
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


# 10 s on an idle 2-core CPU in float32, compilation and figure included (measured; 15 s
# with the machine loaded by other work).
SMALL = LearningDynamicsConfig(
    seeds=4,
    t1=300.0,
    num_saves=150,
    decades=3.5,
)


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


def fit_log_scale(scales, times) -> tuple[float, float, float]:
    """Least-squares line `time = intercept + slope · log10(1/σ)` through finite points;
    returns (slope, intercept, r²), NaNs if fewer than two points."""
    x = np.log10(1.0 / np.asarray(scales, dtype=np.float64))
    y = np.asarray(times, dtype=np.float64)
    ok = np.isfinite(y)
    if np.sum(ok) < 2 or np.ptp(x[ok]) == 0:
        return float("nan"), float("nan"), float("nan")
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    resid = y[ok] - (intercept + slope * x[ok])
    total = np.sum((y[ok] - y[ok].mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / total if total > 0 else float("nan")
    return float(slope), float(intercept), float(r2)


@eqx.filter_jit
def _final(model, teacher, train_len, final):
    """Relative extrapolation error to 10 k and the learned measure, per seed (one program)."""

    def one(prm):
        err = extrapolation_error(
            model, prm, teacher, train_len=train_len, horizon=10 * train_len, relative=True
        )
        return (err,) + learned_measure(model, prm)

    return jax.vmap(one)(final)


def run(config: LearningDynamicsConfig, sweep: Sweep = Sweep()) -> Outcome:
    n_scales, n_seeds = len(config.scales), config.seeds
    keys, key_data = _common.seed_keys(config.seed, n_scales * n_seeds)
    model = MODELS[config.parameterization](config.state_dim)
    teacher = modes_teacher(config.eigenvalues, config.weights)
    loss = ImpulseLoss(teacher, config.train_len)
    dtype = jnp.result_type(float)
    lam = jnp.asarray(config.eigenvalues, dtype)
    p = jnp.asarray(config.weights, dtype)
    save = Save(
        num=config.num_saves,
        spacing="log",
        decades=config.decades,
        metrics={
            "loss": lambda t, prm: loss(model, prm),
            "progress": lambda t, prm: mode_progress(model, prm, lam, p),
        },
    )
    method = _common.method("gd", lr=config.lr, t1=config.t1)
    params = _common.init_scales(model, keys, config.scales)
    sweep.log(
        f"learning_dynamics: {n_scales * n_seeds} {config.parameterization} students, "
        f"{method.num_steps} steps",
        flush=True,
    )
    traj = sweep.train("train", loss.bind(model), method, params, save=save)
    extrap, final_lam, final_w = _final(model, teacher, config.train_len, traj.final)

    grid = (n_scales, n_seeds)
    ts = np.asarray(traj.ts).reshape(n_scales * n_seeds, -1)[0]
    result = np.asarray(traj.result).reshape(grid)
    loss_curve = np.asarray(traj.metrics["loss"]).reshape(grid + (-1,))
    # (scale, seed, mode, save): time runs along the last axis for `time_to_learn`.
    prog = np.asarray(traj.metrics["progress"]).reshape(grid + (len(ts), -1))
    t_learn = time_to_learn(ts, np.moveaxis(prog, -1, -2), config.threshold)
    t_learn = _common.masked(t_learn, result)

    extrap_grid = np.asarray(extrap).reshape(grid)
    ok = result <= Result.converged
    # Medians over the seeds that ran; a seed that never learned a mode counts as +inf, so
    # a median that is not reached by `t1` is reported as NaN rather than biased low.
    unlearned = np.where(ok[..., None] & np.isnan(t_learn), np.inf, t_learn)
    med = np.array(
        [
            [_common.median(unlearned[j, :, m]) for m in range(unlearned.shape[-1])]
            for j in range(n_scales)
        ]
    )
    med = np.where(np.isfinite(med), med, np.nan)  # (scale, mode)
    n_modes = len(config.eigenvalues)
    fits = np.array([fit_log_scale(config.scales, med[:, m]) for m in range(n_modes)])

    order = np.argsort(-np.abs(np.asarray(config.weights)), kind="stable")
    all_learned = ok & np.all(np.isfinite(t_learn), axis=-1)
    in_order = all_learned & np.all(np.diff(t_learn[..., order], axis=-1) > 0, axis=-1)
    summary: dict[str, float] = {
        "learned_fraction": float(np.mean(all_learned)),
        "in_order_fraction": float(np.sum(in_order) / max(int(np.sum(all_learned)), 1)),
        "final_loss_median": _common.median(_common.masked(loss_curve[..., -1], result)),
        "extrapolation_median": _common.median(_common.masked(extrap_grid, result)),
        "failed": int(np.sum(~ok)),
    }
    for m in range(n_modes):
        summary[f"mode{m}/slope_per_decade"] = fits[m, 0]
        summary[f"mode{m}/r2"] = fits[m, 2]
        for j, s in enumerate(config.scales):
            summary[f"mode{m}/t_learn_median/scale_{s:g}"] = float(med[j, m])

    arrays = {
        "loss": loss_curve,
        "progress": prog,
        "t_learn": t_learn,
        "final_eigenvalues": np.asarray(final_lam).reshape(grid + (-1,)),
        "final_weights": np.asarray(final_w).reshape(grid + (-1,)),
        "extrapolation": extrap_grid,
        "result": result.astype(np.int32),
        "num_steps": np.asarray(traj.num_steps).reshape(grid),
        "ts": ts,
        "scales": np.asarray(config.scales),
        "eigenvalues": np.asarray(config.eigenvalues),
        "weights": np.asarray(config.weights),
        "fit_slope": fits[:, 0],
        "fit_intercept": fits[:, 1],
        "fit_r2": fits[:, 2],
    }
    return Outcome(arrays, summary, key_data)


def plot(arrays, summary, config: LearningDynamicsConfig, file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ts, scales = arrays["ts"], arrays["scales"]
    lam, p = arrays["eigenvalues"], arrays["weights"]
    result = arrays["result"]
    styles = ["-", "--", ":"]
    scale_colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(scales)))
    mode_labels = [f"λ={e:g}, p={w:g}" for e, w in zip(lam, p)]
    t = ts[1:]  # time 0 has no place on a log axis

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0, 0]
    loss = _common.masked(arrays["loss"], result)
    for j, s in enumerate(scales):
        for curve in loss[j]:
            ax.plot(t, curve[1:], color=scale_colors[j], lw=0.5, alpha=0.4)
        ax.plot(t, _common.nanmedian(loss[j], 0)[1:], color=scale_colors[j], lw=2, label=f"σ={s:g}")
    _common.log_axes(ax, loss)
    ax.set(xlabel="time t = step × lr", ylabel="training loss")
    ax.set_title("Loss: one plateau per mode (thin: seeds, thick: median)")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    prog = _common.masked(arrays["progress"], result)
    # Largest, middle and smallest scale only: fifteen curves would hide the staircase.
    shown = sorted({0, len(scales) // 2, len(scales) - 1})
    for i, j in enumerate(shown):
        med = _common.nanmedian(prog[j], 0)
        for m in range(len(lam)):
            ax.plot(t, med[1:, m], color=f"C{m}", ls=styles[i], lw=1.5)
    ax.axhline(config.threshold, color="gray", lw=0.8, ls=":")
    _common.log_axes(ax, np.where(np.isfinite(prog), 1.0, np.nan), y=False)
    # Headroom above the curves (1.5) for the legend; only transit spikes reach it.
    ax.set(ylim=(-0.3, 2.6), xlabel="time t", ylabel="weight nearest λ_m / p_m")
    ax.set_title("Per-mode progress, median over seeds (early spikes: transits)")
    handles = [Line2D([], [], color=f"C{m}", label=mode_labels[m]) for m in range(len(lam))]
    handles += [
        Line2D([], [], color="k", ls=styles[i], label=f"σ={scales[j]:g}")
        for i, j in enumerate(shown)
    ]
    ax.legend(handles=handles, fontsize=8, ncol=2, loc="upper left")

    # One panel per mode: their times differ by orders of magnitude, and each line is
    # straight only on its own linear axis.
    axes[1, 0].remove()
    cells = axes[1, 0].get_subplotspec().subgridspec(1, len(lam), wspace=0.45)
    x = np.log10(1.0 / scales)
    t_learn = arrays["t_learn"]
    rng = np.random.default_rng(0)
    for m in range(len(lam)):
        ax = fig.add_subplot(cells[0, m])
        jitter = 0.08 * (rng.random(t_learn.shape[1]) - 0.5)
        for j in range(len(scales)):
            ax.plot(x[j] + jitter, t_learn[j, :, m], ".", color=f"C{m}", alpha=0.6)
        slope, intercept, r2 = (arrays[k][m] for k in ("fit_slope", "fit_intercept", "fit_r2"))
        if np.isfinite(slope):
            ax.plot(x, intercept + slope * x, color=f"C{m}")
            fit = f"{slope:.3g} per decade\nr²={r2:.3f}"
            ax.set_title(f"λ={lam[m]:g}, p={p[m]:g}\n{fit}", fontsize=9)
        else:
            ax.set_title(f"λ={lam[m]:g}, p={p[m]:g}\nnot learned", fontsize=9)
        ax.set_xlabel("log10(1/σ)")
        ax.tick_params(labelsize=8)
        if m == 0:
            ax.set_ylabel(f"time to reach {config.threshold:g} × p_m")

    ax = axes[1, 1]
    j = int(np.argmin(scales))
    ok = result[j] <= Result.converged
    ax.plot(
        arrays["final_eigenvalues"][j][ok].ravel(),
        arrays["final_weights"][j][ok].ravel(),
        "o",
        color="C7",
        ms=4,
        alpha=0.6,
        label="students (all units)",
    )
    ax.plot(lam, p, "x", color="k", ms=10, mew=2, label="teacher")
    ax.axhline(0.0, color="gray", lw=0.5)
    ax.set(xlabel="eigenvalue of A", ylabel="weight in h_i")
    ax.set_title(f"Learned measure at t = {ts[-1]:g}, σ={scales[j]:g}")
    ax.legend(fontsize=8)

    fig.suptitle(
        f"Learning dynamics: {config.parameterization} student d={config.state_dim}, "
        f"k={config.train_len}, GD lr={config.lr:g}, {config.seeds} seeds per scale\n"
        f"modes learned in weight order in {100 * summary['in_order_fraction']:.0f}% of seeds "
        f"that learned all of them ({100 * summary['learned_fraction']:.0f}%)"
    )
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=100)
    plt.close(fig)


def headline(summary) -> str:
    slopes, r2s = [], []
    m = 0
    while f"mode{m}/slope_per_decade" in summary:
        slopes.append(f"{summary[f'mode{m}/slope_per_decade']:.3g}")
        r2s.append(f"{summary[f'mode{m}/r2']:.3f}")
        m += 1
    return (
        f"modes learned in order of weight in {100 * summary['in_order_fraction']:.0f}% of "
        f"seeds; time to learn grows by {' / '.join(slopes)} time units per decade of 1/σ "
        f"(r² {' / '.join(r2s)})"
    )


EXPERIMENT = Experiment(
    name="learning_dynamics",
    claim=(
        "From near-zero initialization gradient descent learns the teacher's modes one at a "
        "time, in order of weight, after plateaus whose length grows like log(1/scale)."
    ),
    config_type=LearningDynamicsConfig,
    small=SMALL,
    run=run,
    plot=plot,
    headline=headline,
)
