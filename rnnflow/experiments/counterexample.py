r"""Overparameterization permits bad solutions: a shift register fits the training lags
exactly and does not extrapolate, while gradient descent from small initialization on the same
student size fits and extrapolates. DESIGN fact 4.

With state dimension $d \ge k$, the shift register

$$A = \text{down-shift } (A_{i+1,i} = 1),\quad B = e_1,\quad
C = (\hat h_0, \dots, \hat h_{k-1}, c_k, \dots, c_{d-1})$$

has $h_i = C A^i B = C_i$ for $i < d$ and $h_i = 0$ for $i \ge d$ ($A$ is nilpotent): zero
training loss for any free part $c_k, \dots, c_{d-1}$, and an extrapolation that is whatever
that free part says. Recorded for three free parts: `zeros` ($h_i = 0$ beyond $k$), `random`
(i.i.d. $N(0, \hat h_k^2)$, the size of the first lag it was not trained on; one draw
per seed), and `teacher` ($c_i = \hat h_i$, the best a
shift register can do, still $h_i = 0$ for $i \ge d$).

Against them, dense students of the same size $d$ are trained by gradient descent from small
unbalanced random initialization (scale `scale`). The step must be small: for $d = 20$,
$k = 5$, $\hat h_i = 0.9^i$ the balanced rank-1 solution has sharpness ≈ 46, so GD with
$\eta > 2/46$ cannot converge to it and settles on a non-extrapolating solution (see the
`small_step` experiment); the default `lr` = 0.01 is well inside.

Recorded per student: training loss, relative extrapolation error to `horizon`, effective
state dimension (Hankel rank), and the impulse responses $h_i$, $i <$ `horizon`, for the figure.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._diagnostics import effective_dim
from .._losses import ImpulseLoss, extrapolation_error
from .._methods import GradientDescent
from .._models import DenseRNN, RNNParams
from .._seeds import init_seeds
from .._trajectory import Result, Save, Stop
from . import _common
from .base import Experiment, ExperimentConfig, Outcome, Sweep

FREE_PARTS = ("zeros", "random", "teacher")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CounterexampleConfig(ExperimentConfig):
    """- `teacher`: a named teacher (`short` = 0.9ⁱ, `long`, `two_modes`, `three_modes`).
    - `state_dim`: the student size d (at least `train_len`, so that a shift register fits).
    - `train_len`, `horizon`: k and q.
    - `scale`, `lr`, `t1`, `loss_below`: the GD students' init scale, step, end time and
      convergence threshold.
    """

    experiment = "counterexample"
    seeds: int = 16
    teacher: str = "short"
    state_dim: int = 20
    train_len: int = 5
    horizon: int = 50
    scale: float = 1e-3
    lr: float = 0.01
    t1: float = 400.0
    loss_below: float = 1e-12

    def check(self):
        if self.teacher not in _common.TEACHERS:
            raise ValueError(f"`teacher` must be one of {tuple(_common.TEACHERS)}.")
        self.require_positive("train_len", "scale", "lr", "t1", "loss_below")
        if self.state_dim < self.train_len:
            raise ValueError(
                f"`state_dim` must be at least `train_len` = {self.train_len} for a shift "
                "register to fit the training lags."
            )
        if self.horizon <= self.state_dim:
            # Beyond d every shift register is zero: q > d shows that even the best one fails.
            raise ValueError("`horizon` must exceed `state_dim`.")
        if self.lr > self.t1:
            raise ValueError("`lr` must not exceed `t1` (at least one step).")


SMALL = CounterexampleConfig(seeds=8, t1=200.0)


def shift_register(target, free) -> RNNParams:
    """The shift-register realisation (single input and output) of the response
    $h = $ (`target`, `free`): $A$ the down-shift, $B = e_1$, $C$ = the concatenation."""
    c = jnp.concatenate([jnp.asarray(target), jnp.asarray(free, jnp.asarray(target).dtype)])
    d = c.shape[0]
    a = jnp.eye(d, k=-1, dtype=c.dtype)  # A[i+1, i] = 1
    b = jnp.zeros((d, 1), c.dtype).at[0, 0].set(1.0)
    return RNNParams(a, b, c[None, :])


def _measure(model, teacher, config, params):
    """Training loss, relative extrapolation error, effective dim and impulse response."""
    k, q = config.train_len, config.horizon
    h = model.impulse_response(params, q)
    return {
        "loss": ImpulseLoss(teacher, k)(model, params),
        "extrapolation": extrapolation_error(
            model, params, teacher, train_len=k, horizon=q, relative=True
        ),
        "dim": effective_dim(h),
        "impulse": h[:, 0, 0],
    }


def run(config: CounterexampleConfig, sweep: Sweep = Sweep()) -> Outcome:
    teacher = _common.teacher(config.teacher)
    model = DenseRNN(config.state_dim)
    k, d, q = config.train_len, config.state_dim, config.horizon
    keys, key_data = _common.seed_keys(config.seed, 2 * config.seeds)
    train_keys, free_keys = keys[: config.seeds], keys[config.seeds :]
    target = teacher.impulse_response(q)[:, 0, 0]
    # One compiled program per batch of students (eager, each operation would compile alone).
    measure = jax.jit(jax.vmap(lambda p: _measure(model, teacher, config, p)))

    # Shift registers: one per seed for each free part (only `random` differs across seeds).
    free = {
        "zeros": jnp.zeros((config.seeds, d - k)),
        "random": jax.vmap(lambda key: jnp.abs(target[k]) * jax.random.normal(key, (d - k,)))(
            free_keys
        ),
        "teacher": jnp.broadcast_to(target[k:d], (config.seeds, d - k)),
    }
    out = {}
    registers = {
        name: measure(jax.vmap(lambda f: shift_register(target[:k], f))(f))
        for name, f in free.items()
    }
    for field in ("loss", "extrapolation", "dim", "impulse"):
        out[f"register_{field}"] = np.stack(
            [np.asarray(registers[name][field], np.float64) for name in FREE_PARTS]
        )  # (free parts, seeds, ...)

    sweep.log(f"counterexample: GD on a dense d={d} student from scale {config.scale}", flush=True)
    params = init_seeds(model, train_keys, scale=config.scale)
    loss = ImpulseLoss(teacher, k)
    method = GradientDescent(config.lr, int(round(config.t1 / config.lr)))
    traj = sweep.train(
        "gd",
        loss.bind(model),
        method,
        params,
        save=Save(num=2),
        stop=Stop(loss_below=config.loss_below),
    )
    trained = measure(traj.final)
    for field in ("loss", "extrapolation", "dim", "impulse"):
        out[f"gd_{field}"] = _common.masked(trained[field], traj.result)
    out["gd_result"] = np.asarray(traj.result)
    out["gd_t_stop"] = np.asarray(traj.t_stop)
    out["gd_relative_imbalance"] = _common.masked(
        jax.vmap(model.relative_imbalance)(traj.final), traj.result
    )
    out["teacher_impulse"] = np.asarray(target)
    out["free_parts"] = np.asarray(FREE_PARTS)
    out["lags"] = np.arange(q)

    summary = {}
    for i, name in enumerate(FREE_PARTS):
        summary[f"register_{name}/loss_max"] = float(np.max(out["register_loss"][i]))
        summary[f"register_{name}/extrapolation"] = _common.median(out["register_extrapolation"][i])
        summary[f"register_{name}/dim"] = _common.median(out["register_dim"][i])
    summary["gd/loss"] = _common.median(out["gd_loss"])
    summary["gd/extrapolation"] = _common.median(out["gd_extrapolation"])
    summary["gd/extrapolation_worst"] = (
        float(np.nanmax(out["gd_extrapolation"]))
        if np.any(np.isfinite(out["gd_extrapolation"]))
        else float("nan")
    )
    summary["gd/dim"] = _common.median(out["gd_dim"])
    summary["gd_diverged"] = int(np.sum(out["gd_result"] == Result.diverged))
    return Outcome(out, summary, key_data)


def plot(arrays, summary, config: CounterexampleConfig, file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, d, q = config.train_len, config.state_dim, config.horizon
    lags = arrays["lags"]
    colors = {"zeros": "tab:red", "random": "tab:orange", "teacher": "tab:purple"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), gridspec_kw={"width_ratios": [1.6, 1, 1]})

    # (a) impulse responses.
    ax = axes[0]
    ax.axvspan(-0.5, k - 0.5, color="0.9", label=f"training lags i < k = {k}")
    ax.axvline(d - 0.5, color="0.5", ls=":", lw=1)
    gd = arrays["gd_impulse"]
    for s in range(gd.shape[0]):
        ax.plot(
            lags,
            gd[s],
            color="tab:blue",
            lw=1,
            alpha=0.6,
            label="GD students, small init" if s == 0 else None,
        )
    for i, name in enumerate(arrays["free_parts"]):
        ax.plot(
            lags,
            arrays["register_impulse"][i, 0],
            ".-",
            color=colors[str(name)],
            ms=4,
            lw=1,
            label=f"shift register, free part: {name}",
        )
    ax.plot(lags, arrays["teacher_impulse"], "k--", lw=2, label="teacher")
    ax.text(d, ax.get_ylim()[1] * 0.95, f" i = d = {d}", va="top", fontsize=8, color="0.4")
    ax.set_xlabel("lag i")
    ax.set_ylabel("h_i")
    ax.set_title(f"(a) impulse responses (dense d={d} students; register: seed 0)")
    ax.legend(fontsize=8)

    # (b), (c): training loss and extrapolation error per student kind.
    names = [f"register\n{n}" for n in arrays["free_parts"]] + ["GD\nsmall init"]
    dims = [summary[f"register_{n}/dim"] for n in arrays["free_parts"]] + [summary["gd/dim"]]
    labels = [f"{n}\n(dim {dm:.0f})" for n, dm in zip(names, dims)]
    floor = 1e-35
    for ax, field, title in (
        (axes[1], "loss", f"(b) training loss (lags < {k}); 0 drawn at {floor:.0e}"),
        (axes[2], "extrapolation", f"(c) relative extrapolation error to q={q}"),
    ):
        groups = [arrays[f"register_{field}"][i] for i in range(len(arrays["free_parts"]))]
        groups.append(arrays[f"gd_{field}"])
        for x, (v, name) in enumerate(zip(groups, list(arrays["free_parts"]) + ["gd"])):
            v = np.asarray(v, np.float64)
            jitter = np.linspace(-0.15, 0.15, v.size) if v.size > 1 else np.zeros(1)
            ax.scatter(
                x + jitter,
                np.maximum(v, floor),
                s=18,
                color=colors.get(str(name), "tab:blue"),
                alpha=0.8,
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title, fontsize=10)

    fig.suptitle(
        f"Shift registers vs gradient descent: teacher {config.teacher}, k={k}, d={d}, "
        f"GD lr={config.lr} from scale {config.scale}, {config.seeds} seeds "
        "(dim = Hankel rank of the learned response)"
    )
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


def headline(summary) -> str:
    regs = ", ".join(
        f"{name} {summary[f'register_{name}/extrapolation']:.1e}" for name in FREE_PARTS
    )
    return (
        f"relative extrapolation error — shift registers (zero training loss): {regs}; "
        f"GD from small init: {summary['gd/extrapolation']:.1e} "
        f"(training loss {summary['gd/loss']:.1e})"
    )


EXPERIMENT = Experiment(
    name="counterexample",
    claim=(
        "An overparameterized linear RNN (d ≥ k) has zero-loss solutions, such as shift "
        "registers, that do not extrapolate; gradient descent from small initialization on "
        "the same student size finds one that does."
    ),
    config_type=CounterexampleConfig,
    small=SMALL,
    run=run,
    plot=plot,
    headline=headline,
)
