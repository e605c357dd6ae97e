"""Init-scale sweep: small initialization extrapolates, large initialization does not.

For each parameterization and teacher, students much larger than the teacher start from
unbalanced random parameters of entry scale σ and are trained to (near) zero training loss.
Recorded per seed: the relative extrapolation error to `horizon`, the effective state
dimension (Hankel rank of the learned impulse response), the relative imbalance
‖Q‖/‖θ‖², and the result code. DESIGN fact 5.
"""

import dataclasses
from typing import Literal

import jax
import numpy as np

from .._diagnostics import effective_dim
from .._losses import ImpulseLoss, extrapolation_error
from .._models import MODELS
from .._trajectory import Result, Save, Stop
from . import _common
from .base import Experiment, ExperimentConfig, Outcome, Sweep


@dataclasses.dataclass(frozen=True, kw_only=True)
class InitScaleConfig(ExperimentConfig):
    """- `parameterizations`: among `dense`, `symmetric`, `diagonal`.
    - `teachers`: among `short` (0.9ⁱ), `long` (eigenvalue 1), `two_modes`, `three_modes`.
    - `state_dim`: the student's d; `scales`: the init entry scales σ swept.
    - `train_len`, `horizon`: k and q; `method` `gd` (step `lr`) or `gf` (gradient flow,
      solved by [`rnnflow.LeastSquaresRosenbrock`][] at rtol 1e-6); run to `t1` or until
      the loss is below `loss_below`.
    - `num_saves`: curves of the loss, relative imbalance and extrapolation error (to 10 k)
      are kept at this many log-spaced times (`ts`) for every seed.
    """

    experiment = "init_scale"
    seeds: int = 16
    parameterizations: tuple[str, ...] = ("diagonal", "symmetric", "dense")
    teachers: tuple[str, ...] = ("short", "long", "two_modes")
    state_dim: int = 40
    scales: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0)
    train_len: int = 5
    horizon: int = 50
    method: Literal["gd", "gf"] = "gd"
    lr: float = 0.01
    t1: float = 6000.0
    loss_below: float = 1e-12
    num_saves: int = 31

    def check(self):
        for p in self.parameterizations:
            if p not in ("dense", "symmetric", "diagonal"):
                raise ValueError(
                    f"`parameterizations` entries must be dense, symmetric or diagonal; got {p!r}."
                )
        for t in self.teachers:
            if t not in _common.TEACHERS:
                raise ValueError(
                    f"`teachers` entries must be in {tuple(_common.TEACHERS)}; got {t!r}."
                )
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


def run(config: InitScaleConfig, sweep: Sweep = Sweep()) -> Outcome:
    n_scales, n_seeds = len(config.scales), config.seeds
    keys, key_data = _common.seed_keys(config.seed, n_scales * n_seeds)
    shape = (len(config.parameterizations), len(config.teachers), n_scales, n_seeds)
    out = {name: np.zeros(shape) for name in ("extrapolation", "loss", "imbalance", "dim")}
    out["result"] = np.zeros(shape, dtype=np.int32)
    method = _common.method(config.method, lr=config.lr, t1=config.t1)
    # Curves at log-spaced times: the loss, relative imbalance and extrapolation error
    # (the default metrics, extrapolating to 10 k) of every seed.
    save = Save(num=config.num_saves, spacing="log", decades=3)
    curves = {
        name: np.zeros(shape + (config.num_saves,))
        for name in ("loss", "relative_imbalance", "extrapolation")
    }
    for i, pname in enumerate(config.parameterizations):
        model = MODELS[pname](config.state_dim)
        # One batch holds every scale: seed s of scale j is row j * n_seeds + s.
        params = _common.init_scales(model, keys, config.scales)
        for j, tname in enumerate(config.teachers):
            sweep.log(f"init_scale: {pname} student, {tname} teacher", flush=True)
            teacher = _common.teacher(tname)
            loss = ImpulseLoss(teacher, config.train_len)
            traj = sweep.train(
                f"{pname}-{tname}",
                loss.bind(model),
                method,
                params,
                save=save,
                stop=Stop(loss_below=config.loss_below),
            )
            final = traj.final
            extrap = jax.vmap(
                lambda p: extrapolation_error(
                    model,
                    p,
                    teacher,
                    train_len=config.train_len,
                    horizon=config.horizon,
                    relative=True,
                )
            )(final)
            dim = jax.vmap(lambda p: effective_dim(model.impulse_response(p, config.horizon)))(
                final
            )
            cells = {
                "extrapolation": extrap,
                "loss": traj.metrics["loss"][:, -1],
                "imbalance": jax.vmap(model.relative_imbalance)(final),
                "dim": dim,
                "result": traj.result,
            }
            for name, v in cells.items():
                out[name][i, j] = np.asarray(v).reshape(n_scales, n_seeds)
            for name, v in traj.metrics.items():
                curves[name][i, j] = np.asarray(v).reshape(n_scales, n_seeds, -1)
            ts = np.asarray(traj.ts[0])
    summary = {}
    for i, pname in enumerate(config.parameterizations):
        for j, tname in enumerate(config.teachers):
            ext = _common.masked(out["extrapolation"][i, j], out["result"][i, j])
            dim = _common.masked(out["dim"][i, j], out["result"][i, j])
            for label, col in (("smallest", 0), ("largest", -1)):
                summary[f"{pname}/{tname}/extrapolation_{label}_scale"] = _common.median(ext[col])
                summary[f"{pname}/{tname}/dim_{label}_scale"] = _common.median(dim[col])
    summary["diverged"] = int(np.sum(out["result"] == Result.diverged))
    out["scales"] = np.asarray(config.scales)
    out["ts"] = ts
    out.update({f"{name}_curve": v for name, v in curves.items()})
    return Outcome(out, summary, key_data)


def plot(arrays, summary, config: InitScaleConfig, file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_t = len(config.teachers)
    fig, axes = plt.subplots(3, n_t, figsize=(4.2 * n_t, 9), squeeze=False, sharex=True)
    scales = arrays["scales"]
    rows = (
        ("extrapolation", "relative extrapolation error", True),
        ("dim", "effective state dimension", False),
        ("imbalance", "relative imbalance ‖Q‖/‖θ‖²", True),
    )
    for j, tname in enumerate(config.teachers):
        for r, (name, label, log) in enumerate(rows):
            ax = axes[r, j]
            for i, pname in enumerate(config.parameterizations):
                v = _common.masked(arrays[name][i, j], arrays["result"][i, j])
                med = _common.nanmedian(np.where(np.isfinite(v), v, np.nan), 1)
                lo, hi = np.nanpercentile(v, [25, 75], axis=1)
                ax.plot(scales, med, "o-", label=pname)
                ax.fill_between(scales, lo, hi, alpha=0.2)
            ax.set_xscale("log")
            if log:
                ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(label)
            if r == 0:
                ax.set_title(f"teacher: {tname}")
            if r == 2:
                ax.set_xlabel("init scale σ")
    axes[0, 0].legend()
    fig.suptitle(
        f"Init-scale sweep: d={config.state_dim}, k={config.train_len}, q={config.horizon},\n"
        f"{config.method.upper()}, median and IQR over {config.seeds} seeds"
    )
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


def headline(summary) -> str:
    parts = []
    for key, small in summary.items():
        if key.endswith("extrapolation_smallest_scale"):
            prefix = key.rsplit("/", 1)[0]
            large = summary[f"{prefix}/extrapolation_largest_scale"]
            parts.append(f"{prefix}: {small:.1e} (small init) vs {large:.1e} (large init)")
    return "median relative extrapolation error — " + "; ".join(parts)


EXPERIMENT = Experiment(
    name="init_scale",
    claim=(
        "Gradient descent from small initialization learns a low-dimensional, nearly balanced "
        "state space that extrapolates; from large initialization it fits the training "
        "lengths without extrapolating."
    ),
    config_type=InitScaleConfig,
    small=SMALL,
    run=run,
    plot=plot,
    headline=headline,
)
