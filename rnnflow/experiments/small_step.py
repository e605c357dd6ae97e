r"""Small-step limit: gradient descent is the explicit Euler discretisation of gradient flow.
DESIGN facts 1 and 2.

From the same unbalanced random starts, a student is trained to a fixed time $t_1$ by
gradient flow (a tight adaptive diffrax solve, the reference), by gradient descent with step
$\eta$ ($t = n\eta$) for a range of $\eta$, and by the modified flow of
$L + \frac{\eta}{4}\|\nabla L\|^2$ ([`rnnflow.ModifiedFlow`][]). Recorded per step size, seed
and save time:

- $\|\theta_{GD}(t) - \theta_{GF}(t)\|$: first order, the fitted log-log slope against
  $\eta$ is ≈ 1;
- $\|\theta_{GD}(t) - \theta_{MF,\eta}(t)\|$: backward error analysis, slope ≈ 2;
- the drift $\|Q_{GD}(t) - Q(0)\|$ of the quantity the flow conserves
  ([`rnnflow.AbstractRNN.imbalance`][]): each step changes it by $O(\eta^2)$, so over $t/\eta$
  steps by $O(\eta)$, slope ≈ 1. The flow's own drift (solver error) is recorded for scale.

The start is unbalanced and of moderate scale so that the parameters move a lot within the
short horizon, while $\eta$ stays small enough for the asymptotic regime (at $\eta \gtrsim
0.1$ the errors are O(1) and the slopes meaningless).

**Finite step size changes the solution.** A second, optional part (`dense_seeds > 0`)
trains a dense student from small initialization on $\hat h_i = 0.9^i$ with several larger
step sizes to convergence. The balanced rank-1 solution that the flow reaches has sharpness
(top Hessian eigenvalue) ≈ 46 for d = 20, k = 5, so gradient descent with
$\eta > 2/46 \approx 0.043$ cannot converge to it: at $\eta = 0.05$ it settles, after a long
plateau, on a flatter solution with complex eigenvalues of modulus ≈ 1.5 that fits the
training lags and does not extrapolate at all, while $\eta \le 0.04$ learns the exact
solution. (At the full config's η = 0.045 it does not converge at all, a period-two
oscillation at loss ≈ 0.03; at η = 0.06 it fits to ≲ 1e-7 with |λ| ≈ 1.2, sharpness ≈ 2/η.)
Recorded per step size and seed: training loss, relative extrapolation error,
spectral radius of $A$, and the sharpness at the end, to compare with $2/\eta$.

**Precision.** float32 resolves the slopes at the small config (the GD errors there are far
above float32 rounding, and the flow is solved to `rtol` = 2e-6, about what float32 can
deliver); run the full scale (`rtol` = 1e-8), whose
smallest step takes thousands of steps, in float64 (`--float64`).
"""

import dataclasses
from typing import Literal

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._losses import ImpulseLoss, extrapolation_error
from .._methods import GradientDescent, GradientFlow, ModifiedFlow
from .._models import MODELS, DenseRNN
from .._seeds import init_seeds
from .._trajectory import Result, Save, Stop
from . import _common
from .base import Experiment, ExperimentConfig, Outcome, Sweep


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
        for name in ("teacher", "dense_teacher"):
            if getattr(self, name) not in _common.TEACHERS:
                raise ValueError(f"`{name}` must be one of {tuple(_common.TEACHERS)}.")
        self.require_positive("state_dim", "train_len", "num_saves", "max_steps")
        self.require_positive("dense_state_dim", "scale", "t1", "rtol", "dense_scale")
        self.require_positive("dense_t1", "dense_loss_below", "lrs", "dense_lrs")
        if self.dense_seeds < 0:
            raise ValueError("`dense_seeds` must be non-negative (0 skips the dense part).")
        if len(self.lrs) < 2:
            raise ValueError("`lrs` needs at least two step sizes to fit a slope.")
        for t in self.save_times:
            for lr in self.lrs:
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


def fit_slope(lrs, errors) -> np.ndarray:
    """Least-squares slope of log(error) against log(η) along axis 0 of `errors`, using only
    the finite positive entries (NaN where fewer than two)."""
    x = np.log(np.asarray(lrs, np.float64))
    errors = np.asarray(errors, np.float64)
    flat = errors.reshape(errors.shape[0], -1)
    out = np.full(flat.shape[1], np.nan)
    for j in range(flat.shape[1]):
        ok = np.isfinite(flat[:, j]) & (flat[:, j] > 0)
        if ok.sum() >= 2:
            out[j] = np.polyfit(x[ok], np.log(flat[ok, j]), 1)[0]
    return out.reshape(errors.shape[1:])


def _flat(params):
    """Parameters saved over (seeds, saves) as one vector each."""
    return jax.vmap(jax.vmap(lambda p: ravel_pytree(p)[0]))(params)


def _ok(traj) -> np.ndarray:
    return np.asarray(traj.result) <= Result.converged


def _drift(traj, q0) -> np.ndarray:
    q = traj.metrics["imbalance"]
    diff = (q - q0[:, None]).reshape(q.shape[0], q.shape[1], -1)
    return np.asarray(jnp.linalg.norm(diff, axis=-1))


def _small_step_part(config: SmallStepConfig, keys, sweep: Sweep) -> tuple[dict, dict]:
    model = MODELS[config.parameterization](config.state_dim)
    loss = ImpulseLoss(_common.teacher(config.teacher), config.train_len)
    params = init_seeds(model, keys, scale=config.scale)
    metrics = {
        "loss": lambda t, p: loss(model, p),
        "imbalance": lambda t, p: model.imbalance(p),
    }
    save = Save(config.save_times, params=True, metrics=metrics)
    controller = diffrax.PIDController(rtol=config.rtol, atol=config.rtol * 1e-3)
    flow = dict(stepsize_controller=controller, max_steps=config.max_steps)
    q0 = jax.vmap(model.imbalance)(params)

    sweep.log("small_step: gradient flow (reference)", flush=True)
    gf = sweep.train("gf", loss.bind(model), GradientFlow(config.t1, **flow), params, save=save)
    gf_ok = _ok(gf)
    theta_gf = _flat(gf.params)
    shape = (len(config.lrs), config.seeds, config.num_saves)
    out = {
        name: np.full(shape, np.nan)
        for name in ("gd_gf_distance", "modified_gd_distance", "gd_drift", "gd_loss")
    }
    out["gd_result"] = np.zeros(shape[:2], np.int32)
    out["modified_result"] = np.zeros(shape[:2], np.int32)
    out["modified_num_steps"] = np.zeros(shape[:2], np.int64)
    for i, lr in enumerate(config.lrs):
        sweep.log(f"small_step: η = {lr}: gradient descent and modified flow", flush=True)
        gd = sweep.train(
            f"gd-{lr}",
            loss.bind(model),
            GradientDescent(lr, int(round(config.t1 / lr))),
            params,
            save=save,
        )
        mf = sweep.train(
            f"modified-{lr}",
            loss.bind(model),
            ModifiedFlow(lr, config.t1, **flow),
            params,
            save=save,
        )
        theta_gd = _flat(gd.params)
        both_gf = (_ok(gd) & gf_ok)[:, None]
        both_mf = (_ok(gd) & _ok(mf))[:, None]
        out["gd_gf_distance"][i] = np.where(
            both_gf, np.asarray(jnp.linalg.norm(theta_gd - theta_gf, axis=-1)), np.nan
        )
        out["modified_gd_distance"][i] = np.where(
            both_mf, np.asarray(jnp.linalg.norm(theta_gd - _flat(mf.params), axis=-1)), np.nan
        )
        out["gd_drift"][i] = np.where(_ok(gd)[:, None], _drift(gd, q0), np.nan)
        out["gd_loss"][i] = _common.masked(gd.metrics["loss"], gd.result)
        out["gd_result"][i] = np.asarray(gd.result)
        out["modified_result"][i] = np.asarray(mf.result)
        out["modified_num_steps"][i] = np.asarray(mf.num_steps)
    out["gf_drift"] = np.where(gf_ok[:, None], _drift(gf, q0), np.nan)
    out["gf_loss"] = _common.masked(gf.metrics["loss"], gf.result)
    out["gf_norm"] = np.where(
        gf_ok[:, None], np.asarray(jnp.linalg.norm(theta_gf, axis=-1)), np.nan
    )
    out["gf_result"] = np.asarray(gf.result)
    out["gf_num_steps"] = np.asarray(gf.num_steps)
    out["lrs"] = np.asarray(config.lrs)
    out["ts"] = np.asarray(config.save_times)

    # Convergence orders, per seed and save time.
    for name, key in (
        ("gd_gf", "gd_gf_distance"),
        ("modified_gd", "modified_gd_distance"),
        ("drift", "gd_drift"),
    ):
        out[f"slope_{name}"] = fit_slope(config.lrs, out[key])  # (seeds, saves)
    summary = {
        "slope_gd_gf": _common.median(out["slope_gd_gf"][:, -1]),
        "slope_modified_gd": _common.median(out["slope_modified_gd"][:, -1]),
        "slope_drift": _common.median(out["slope_drift"][:, -1]),
        # The slope of the median errors, less sensitive to one odd seed.
        "slope_gd_gf_of_median": float(
            fit_slope(config.lrs, _common.nanmedian(out["gd_gf_distance"][:, :, -1], 1))
        ),
        "slope_modified_gd_of_median": float(
            fit_slope(config.lrs, _common.nanmedian(out["modified_gd_distance"][:, :, -1], 1))
        ),
        "gd_gf_distance_smallest_lr": _common.median(out["gd_gf_distance"][-1, :, -1]),
        "modified_gd_distance_smallest_lr": _common.median(out["modified_gd_distance"][-1, :, -1]),
        "gd_drift_smallest_lr": _common.median(out["gd_drift"][-1, :, -1]),
        "gf_drift_max": float(np.nanmax(out["gf_drift"])) if gf_ok.any() else float("nan"),
        "gf_num_steps_max": int(np.max(out["gf_num_steps"])),
        "gd_diverged": int(np.sum(out["gd_result"] == Result.diverged)),
        "flow_failed": int(np.sum(~gf_ok) + np.sum(out["modified_result"] > Result.converged)),
    }
    return out, summary


def _sharpness(model, loss, params, iters: int = 150):
    """The top eigenvalue of the training loss's Hessian, by power iteration on
    Hessian-vector products: GD with step η is linearly stable at a minimum only if it is
    below 2/η. (Near a minimum the Hessian is positive semi-definite, so the dominant
    eigenvalue is the top one.)"""
    x, unravel = ravel_pytree(params)
    grad = jax.grad(lambda x: loss(model, unravel(x)))

    def hvp(v):
        return jax.jvp(grad, (x,), (v,))[1]

    def body(_, v):
        w = hvp(v)
        return w / jnp.linalg.norm(w)

    # A fixed, dense start vector: not orthogonal to the top eigenvector in practice.
    v0 = jnp.cos(jnp.arange(x.size, dtype=x.dtype))
    v = jax.lax.fori_loop(0, iters, body, v0 / jnp.linalg.norm(v0))
    return v @ hvp(v)


def _dense_part(config: SmallStepConfig, keys, sweep: Sweep) -> tuple[dict, dict]:
    model = DenseRNN(config.dense_state_dim)
    teacher = _common.teacher(config.dense_teacher)
    loss = ImpulseLoss(teacher, config.train_len)
    params = init_seeds(model, keys, scale=config.dense_scale)
    shape = (len(config.dense_lrs), config.dense_seeds)
    out = {
        name: np.full(shape, np.nan)
        for name in (
            "dense_loss",
            "dense_extrapolation",
            "dense_radius",
            "dense_sharpness",
            "dense_t_stop",
        )
    }
    out["dense_result"] = np.zeros(shape, np.int32)

    # One compiled program for the per-seed diagnostics (eager, each operation would compile
    # on its own), shared by every step size.
    @jax.jit
    def analyse(final):
        def one(p):
            ext = extrapolation_error(
                model,
                p,
                teacher,
                train_len=config.train_len,
                horizon=config.horizon,
                relative=True,
            )
            return ext, _sharpness(model, loss, p)

        return jax.vmap(one)(final)

    for i, lr in enumerate(config.dense_lrs):
        sweep.log(f"small_step: dense student, η = {lr}", flush=True)
        method = GradientDescent(lr, int(round(config.dense_t1 / lr)))
        traj = sweep.train(
            f"dense-{lr}",
            loss.bind(model),
            method,
            params,
            save=Save(num=2),
            stop=Stop(loss_below=config.dense_loss_below),
        )
        ext, sharpness = analyse(traj.final)
        # numpy's eigvals: JAX's non-symmetric eig runs on the CPU only.
        radius = np.max(np.abs(np.linalg.eigvals(np.asarray(traj.final.a, np.float64))), axis=-1)
        cells = {
            "dense_loss": traj.metrics["loss"][:, -1],
            "dense_extrapolation": ext,
            "dense_radius": radius,
            "dense_sharpness": sharpness,
            "dense_t_stop": traj.t_stop,
        }
        for name, v in cells.items():
            out[name][i] = _common.masked(v, traj.result)
        out["dense_result"][i] = np.asarray(traj.result)
    out["dense_lrs"] = np.asarray(config.dense_lrs)
    summary = {}
    for i, lr in enumerate(config.dense_lrs):
        summary[f"dense/lr={lr}/extrapolation"] = _common.median(out["dense_extrapolation"][i])
        summary[f"dense/lr={lr}/sharpness"] = _common.median(out["dense_sharpness"][i])
        summary[f"dense/lr={lr}/radius"] = _common.median(out["dense_radius"][i])
    summary["dense_diverged"] = int(np.sum(out["dense_result"] == Result.diverged))
    return out, summary


def run(config: SmallStepConfig, sweep: Sweep = Sweep()) -> Outcome:
    keys, key_data = _common.seed_keys(config.seed, config.seeds + config.dense_seeds)
    out, summary = _small_step_part(config, keys[: config.seeds], sweep)
    if config.dense_seeds:
        dense_out, dense_summary = _dense_part(config, keys[config.seeds :], sweep)
        out.update(dense_out)
        summary.update(dense_summary)
    return Outcome(out, summary, key_data)


def plot(arrays, summary, config: SmallStepConfig, file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = "dense_lrs" in arrays
    fig, axes = plt.subplots(2 if dense else 1, 3, figsize=(15, 9.5 if dense else 5), squeeze=False)
    lrs, ts = arrays["lrs"], arrays["ts"]
    series = (
        ("gd_gf_distance", "‖θ_GD − θ_GF‖", "tab:blue", "slope_gd_gf"),
        ("modified_gd_distance", "‖θ_GD − θ_MF‖", "tab:orange", "slope_modified_gd"),
        ("gd_drift", "‖Q_GD − Q(0)‖", "tab:green", "slope_drift"),
    )

    # (a) errors at t1 against η: seeds faint, median bold, fitted slopes in the legend.
    ax = axes[0, 0]
    for key, label, color, slope in series:
        v = arrays[key][:, :, -1]
        ax.plot(lrs, v, color=color, alpha=0.25, lw=0.8)
        ax.plot(
            lrs,
            _common.nanmedian(v, 1),
            "o-",
            color=color,
            lw=2,
            label=f"{label}: slope {summary[slope]:.2f}",
        )
    ax.plot(
        lrs,
        np.nanmax(arrays["gf_drift"][:, -1]) * np.ones_like(lrs),
        "k:",
        label="‖Q_GF − Q(0)‖ (solver error)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(lrs)
    ax.set_xticklabels([f"{lr:g}" for lr in lrs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("step size η")
    ax.set_title(f"(a) distances at t = {config.t1} (seeds faint, median bold)")
    ax.legend(fontsize=8)

    # (b) distances over time, one line per η.
    ax = axes[0, 1]
    cmap = plt.get_cmap("viridis")
    for i, lr in enumerate(lrs):
        color = cmap(i / max(len(lrs) - 1, 1))
        ax.plot(
            ts,
            _common.nanmedian(arrays["gd_gf_distance"][i], 0),
            "-",
            color=color,
            label=f"η = {lr}",
        )
        ax.plot(ts, _common.nanmedian(arrays["modified_gd_distance"][i], 0), "--", color=color)
    ax.set_yscale("log")
    ax.set_xlabel("time t = step × η")
    ax.set_title("(b) median ‖θ_GD − θ_GF‖ (solid), ‖θ_GD − θ_MF‖ (dashed)")
    ax.legend(fontsize=8)

    # (c) fitted slopes at each save time.
    ax = axes[0, 2]
    for key, label, color, slope in series:
        s = arrays[f"slope_{slope[len('slope_') :]}"]
        ax.plot(ts, _common.nanmedian(s, 0), "o-", color=color, label=label)
        ax.fill_between(ts, np.nanmin(s, axis=0), np.nanmax(s, axis=0), color=color, alpha=0.15)
    for ref in (1, 2):
        ax.axhline(ref, color="k", lw=0.8, ls=":")
    ax.set_ylim(0, 3)
    ax.set_xlabel("time t")
    ax.set_ylabel("log-log slope against η")
    ax.set_title("(c) convergence order over time (median, min–max)")
    ax.legend(fontsize=8)

    if dense:
        dlrs = arrays["dense_lrs"]
        panels = (
            ("dense_extrapolation", "relative extrapolation error", True),
            ("dense_sharpness", "sharpness (top Hessian eigenvalue) at the end", False),
            ("dense_radius", "spectral radius of A at the end", False),
        )
        rng = np.random.default_rng(0)
        for c, (key, label, log) in enumerate(panels):
            ax = axes[1, c]
            v = arrays[key]
            converged = arrays["dense_result"] == Result.converged
            for i, lr in enumerate(dlrs):
                x = lr * (1 + rng.uniform(-0.02, 0.02, v.shape[1]))
                for mask, face in ((converged[i], "tab:purple"), (~converged[i], "none")):
                    ax.scatter(
                        x[mask],
                        v[i][mask],
                        s=18,
                        facecolors=face,
                        edgecolors="tab:purple",
                        label=None
                        if i or c
                        else (
                            f"loss < {config.dense_loss_below:g}"
                            if face != "none"
                            else "not below it at t1"
                        ),
                    )
            ax.plot(dlrs, _common.nanmedian(v, 1), "_:", color="tab:purple", ms=14, label="median")
            if key == "dense_sharpness":
                grid = np.linspace(dlrs.min(), dlrs.max(), 50)
                ax.plot(grid, 2 / grid, "k--", label="2/η (GD stability limit)")
                ax.set_ylim(0, 1.4 * np.nanmax(v))
            ax.legend(fontsize=8)
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("step size η")
            ax.set_title(f"({'def'[c]}) dense d={config.dense_state_dim}: {label}", fontsize=10)

    fig.suptitle(
        f"Small-step limit: {config.parameterization} d={config.state_dim}, teacher "
        f"{config.teacher}, k={config.train_len}, init scale {config.scale} (unbalanced), "
        f"{config.seeds} seeds"
        + (
            f"\nbottom: dense student from scale {config.dense_scale}, teacher "
            f"{config.dense_teacher}, GD to loss < {config.dense_loss_below} or t = "
            f"{config.dense_t1}, {config.dense_seeds} seeds"
            if dense
            else ""
        )
    )
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


def headline(summary) -> str:
    text = (
        f"log-log slopes against η — GD vs GF: {summary['slope_gd_gf']:.2f} (first order), "
        f"GD vs modified flow: {summary['slope_modified_gd']:.2f} (second order), drift of Q: "
        f"{summary['slope_drift']:.2f}"
    )
    dense = [
        f"η={key.split('/')[1][3:]}: {summary[key]:.0e}"
        for key in summary
        if key.startswith("dense/") and key.endswith("/extrapolation")
    ]
    if dense:
        text += "; dense student extrapolation error by η — " + ", ".join(dense)
    return text


EXPERIMENT = Experiment(
    name="small_step",
    claim=(
        "Gradient descent with step η tracks the gradient flow to O(η) and the modified flow "
        "of L + (η/4)‖∇L‖² to O(η²), and drifts from the flow's conserved balance by O(η); "
        "a step above 2/sharpness of the flow's solution lands elsewhere."
    ),
    config_type=SmallStepConfig,
    small=SMALL,
    run=run,
    plot=plot,
    headline=headline,
)
