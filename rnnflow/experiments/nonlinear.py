r"""Non-linear students: the small-versus-large initialization contrast for a tanh RNN.
DESIGN fact 6.

A [`rnnflow.TanhRNN`][] student, $s_t = \tanh(A s_{t-1} + B x_t)$, $y_t = C s_t$, much larger
than a low-dimensional linear teacher, is trained by gradient descent on a
[`rnnflow.SequenceLoss`][]: `num_sequences` Gaussian input sequences of length $k$, scaled
by `input_scale` so that the tanh is only mildly non-linear at the teacher's amplitudes.
It starts from unbalanced random parameters of entry scale σ.

**Extrapolation.** On `num_test` fresh Gaussian sequences (same `input_scale`) of length
$q$ = `horizon` ≫ $k$, the relative error of the last output,
$\sum_n (y^{(n)}_{q-1} - \hat y^{(n)}_{q-1})^2 / \sum_n (\hat y^{(n)}_{q-1})^2$; the same at
step $k - 1$ of those sequences is the in-distribution error at the training length.

**Effective dimension.** The numerical rank of the (`num_test` · q) × d matrix of the
student's hidden states on the test sequences: the number of singular values above
`dim_rtol` × the largest (computed in float64). A linear student that learned the teacher's
d̂-dimensional state space has rank d̂. A tanh student bends that space: a state
$\tanh(u z)$ driven along a direction $u$ has components along $u$, $u^{\circ 3}$,
$u^{\circ 5}$, … (tanh is odd), with relative sizes of order $z^2$, $z^4$, …; at the
default `input_scale` the second and third singular values sit near 5e-2 and 1e-3 – 3e-3
of the first, so with `dim_rtol = 1e-3` a student that learned the one-dimensional teacher
reports 2–4, while one that did not uses all d directions.

**Calibration** (float32, d = 20, k = 5, teacher 0.9ⁱ, `input_scale` 0.5, supervising all
steps). Step size: `lr = 0.1` diverges from σ = 0.5 and stalls small inits at the edge of
stability; `lr = 0.05` trains but, once a small init's loss is near 1e-3 (t ≈ 100), it
oscillates and the loss rises again (to 3–4e-3); `lr = 0.025` decreases monotonically, and
the full scale uses 0.02 for its longer run. Doubling `input_scale` needs a four times
smaller step. At full scale (8 seeds per scale, t = 1000; 11 minutes on a busy 2-core CPU)
every scale fits the training length alike (training loss 2.7–3.9e-4, relative error at
step k 1.3–2.7e-4), while the median relative error at q = 100 is 3.0e-3, 2.9e-3, 3.4e-3,
0.15 and 1.3 for σ = 1e-3, 1e-2, 0.1, 0.2 (≈ 0.9/√d; seeds range from 5e-3 to 7) and 0.5,
with effective dimensions 2.5, 3, 9, 19.5 and 20.

Recorded per seed (axes scale, seed): training loss and relative error at $q$ at log-spaced
save times, final relative errors at $k$ and $q$, the normalized singular values of the
hidden states and the effective dimension, and the result code.
"""

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._losses import SequenceLoss
from .._models import TanhRNN
from .._trajectory import Result, Save
from . import _common
from .base import Experiment, ExperimentConfig, Outcome, Sweep


@dataclasses.dataclass(frozen=True, kw_only=True)
class NonlinearConfig(ExperimentConfig):
    """- `teacher`: a name in `short` (0.9ⁱ), `long` (eigenvalue 1), `two_modes`, `three_modes`.
    - `state_dim`: the tanh student's d; `scales`: the init entry scales σ swept.
    - `train_len`, `num_sequences`, `supervise`: the training set, k-step sequences with the
      last (`last`) or every (`all`) output supervised; `input_scale` multiplies the N(0, 1)
      inputs of training and test sequences alike.
    - `lr`, `t1`: gradient descent step and end time; `num_saves` log-spaced saves.
    - `horizon`, `num_test`: q and the number of fresh test sequences.
    - `dim_rtol`: singular values of the hidden states above this × the largest are counted.
    """

    experiment = "nonlinear"
    seeds: int = 8
    teacher: str = "short"
    state_dim: int = 20
    scales: tuple[float, ...] = (1e-3, 1e-2, 0.1, 0.2, 0.5)
    train_len: int = 5
    num_sequences: int = 256
    input_scale: float = 0.5
    supervise: Literal["last", "all"] = "all"
    lr: float = 0.02
    t1: float = 1000.0
    num_saves: int = 30
    horizon: int = 100
    num_test: int = 256
    dim_rtol: float = 1e-3

    def check(self):
        if self.teacher not in _common.TEACHERS:
            raise ValueError(
                f"`teacher` must be one of {tuple(_common.TEACHERS)}; got {self.teacher!r}."
            )
        self.require_positive("state_dim", "train_len", "num_sequences", "horizon", "num_test")
        self.require_positive("scales", "input_scale", "lr", "t1")
        if self.horizon <= self.train_len:
            raise ValueError("`horizon` must exceed `train_len`.")
        if self.lr > self.t1:
            raise ValueError("`lr` must not exceed `t1` (at least one step).")
        if self.num_saves < 2:
            raise ValueError("`num_saves` must be at least 2.")
        if not 0 < self.dim_rtol < 1:
            raise ValueError("`dim_rtol` must lie strictly between 0 and 1.")


# 13 s on an idle 2-core CPU in float32, compilation and figure included (measured; 27 s
# with the machine loaded by other work).
SMALL = NonlinearConfig(
    seeds=3,
    scales=(1e-2, 0.2, 0.5),
    num_sequences=100,
    lr=0.025,
    t1=200.0,
    num_saves=20,
)


def _relative_errors(model, params, xs, ys, train_len):
    """Relative squared error of the outputs at steps k - 1 and q - 1 over the sequences."""
    y = jax.vmap(model, in_axes=(None, 0))(params, xs)[..., 0]
    out = []
    for step in (train_len - 1, xs.shape[1] - 1):
        out.append(jnp.sum((y[:, step] - ys[:, step]) ** 2) / jnp.sum(ys[:, step] ** 2))
    return jnp.stack(out)


@eqx.filter_jit
def _errors_jit(model, params, xs, ys, train_len):
    return jax.vmap(lambda prm: _relative_errors(model, prm, xs, ys, train_len))(params)


@eqx.filter_jit
def _states(model, params, xs):
    return jax.vmap(model.states, in_axes=(None, 0))(params, xs)


def state_singular_values(model, params, xs) -> np.ndarray:
    """Singular values (float64, largest first) of the hidden states on the sequences `xs`;
    NaN for parameters that are not finite (a diverged seed)."""
    states = _states(model, params, xs)
    states = np.asarray(states, dtype=np.float64).reshape(-1, model.state_dim)
    if not np.all(np.isfinite(states)):
        return np.full(model.state_dim, np.nan)
    return np.linalg.svd(states, compute_uv=False)


def run(config: NonlinearConfig, sweep: Sweep = Sweep()) -> Outcome:
    n_scales, n_seeds = len(config.scales), config.seeds
    keys, key_data = _common.seed_keys(config.seed, n_scales * n_seeds)
    # Data keys come from the root seed too, folded away from the split init keys.
    train_key, test_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1))
    teacher = _common.teacher(config.teacher)
    model = TanhRNN(config.state_dim)
    dtype = jnp.result_type(float)
    xs = config.input_scale * jax.random.normal(
        train_key, (config.num_sequences, config.train_len, 1), dtype
    )
    loss = SequenceLoss(teacher, xs, supervise=config.supervise)
    test_shape = (config.num_test, config.horizon, 1)
    xt = config.input_scale * jax.random.normal(test_key, test_shape, dtype)
    yt = jax.vmap(teacher)(xt)[..., 0]

    def extrapolation(t, prm):
        return _relative_errors(model, prm, xt, yt, config.train_len)[1]

    save = Save(
        num=config.num_saves,
        spacing="log",
        decades=3.0,
        metrics={"loss": lambda t, prm: loss(model, prm), "extrapolation": extrapolation},
    )
    method = _common.method("gd", lr=config.lr, t1=config.t1)
    params = _common.init_scales(model, keys, config.scales)
    sweep.log(
        f"nonlinear: {n_scales * n_seeds} tanh students, {method.num_steps} steps on "
        f"{config.num_sequences} sequences",
        flush=True,
    )
    traj = sweep.train("train", loss.bind(model), method, params, save=save)

    errors = _errors_jit(model, traj.final, xt, yt, config.train_len)
    sv = np.stack(
        [
            state_singular_values(model, jax.tree.map(lambda x: x[n], traj.final), xt)
            for n in range(n_scales * n_seeds)
        ]
    )
    sv = sv / np.maximum(sv[:, :1], np.finfo(np.float64).tiny)
    dim = np.where(np.isnan(sv[:, 0]), -1, np.sum(sv > config.dim_rtol, axis=1))

    grid = (n_scales, n_seeds)
    result = np.asarray(traj.result).reshape(grid)
    errors = np.asarray(errors).reshape(grid + (2,))
    arrays = {
        "loss": np.asarray(traj.metrics["loss"]).reshape(grid + (-1,)),
        "extrapolation_curve": np.asarray(traj.metrics["extrapolation"]).reshape(grid + (-1,)),
        "fit_error": errors[..., 0],
        "extrapolation": errors[..., 1],
        "singular_values": sv.reshape(grid + (-1,)),
        "dim": dim.reshape(grid),
        "result": result.astype(np.int32),
        "ts": np.asarray(traj.ts).reshape(n_scales * n_seeds, -1)[0],
        "scales": np.asarray(config.scales),
    }
    summary: dict[str, float] = {}
    medians = {
        name: [_common.median(row) for row in _common.masked(arrays[name], result)]
        for name in ("extrapolation", "fit_error", "dim")
    }
    medians["loss"] = [
        _common.median(row) for row in _common.masked(arrays["loss"][..., -1], result)
    ]
    for name, values in medians.items():
        summary[f"{name}_smallest_scale"] = values[int(np.argmin(config.scales))]
        summary[f"{name}_largest_scale"] = values[int(np.argmax(config.scales))]
        for s, v in zip(config.scales, values):
            summary[f"{name}/scale_{s:g}"] = v
    summary["failed"] = int(np.sum(result > Result.converged))
    return Outcome(arrays, summary, key_data)


def plot(arrays, summary, config: NonlinearConfig, file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts, scales, result = arrays["ts"], arrays["scales"], arrays["result"]
    colors = plt.cm.plasma(np.linspace(0.0, 0.85, len(scales)))
    t = ts[1:]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))

    for ax, name, label in (
        (axes[0, 0], "loss", "training loss"),
        (axes[0, 1], "extrapolation_curve", f"relative error at q={config.horizon}"),
    ):
        values = _common.masked(arrays[name], result)
        for j, s in enumerate(scales):
            for curve in values[j]:
                ax.plot(t, curve[1:], color=colors[j], lw=0.5, alpha=0.4)
            ax.plot(t, _common.nanmedian(values[j], 0)[1:], color=colors[j], lw=2, label=f"σ={s:g}")
        _common.log_axes(ax, values)
        ax.set(xlabel="time t = step × lr", ylabel=label)
        ax.legend(fontsize=8)
    axes[0, 0].set_title(f"Training loss (k={config.train_len}; thin: seeds, thick: median)")
    axes[0, 1].set_title(f"Error on fresh sequences of length q={config.horizon}")

    ax = axes[1, 0]
    for name, label, marker in (
        ("fit_error", f"at the training length k={config.train_len}", "s--"),
        ("extrapolation", f"at q={config.horizon}", "o-"),
    ):
        v = _common.masked(arrays[name], result)
        med = np.array([_common.median(row) for row in v])
        ax.plot(scales, med, marker, label=label)
        for j, s in enumerate(scales):
            ax.plot(np.full(v.shape[1], s), v[j], ".", color="gray", alpha=0.5)
    _common.log_axes(
        ax, [_common.masked(arrays[n], result) for n in ("fit_error", "extrapolation")]
    )
    ax.set(xlabel="init scale σ", ylabel="relative error, last output")
    ax.set_title("Final error: fits k everywhere, extrapolates from small init")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    sv = _common.masked(arrays["singular_values"], result)
    dims = _common.masked(arrays["dim"], result)
    idx = np.arange(1, sv.shape[-1] + 1)
    for j, s in enumerate(scales):
        med = np.exp(_common.nanmedian(np.log(np.where(sv[j] > 0, sv[j], np.nan)), 0))
        ax.plot(
            idx,
            med,
            "o-",
            color=colors[j],
            ms=3,
            label=f"σ={s:g}: effective dim {_common.median(dims[j]):g}",
        )
    ax.axhline(config.dim_rtol, color="gray", ls=":", lw=1, label=f"tolerance {config.dim_rtol:g}")
    _common.log_axes(ax, sv, x=False)
    ax.set(xlabel="index", ylabel="singular value / largest")
    ax.set_title("Hidden states on test sequences: singular values (median)")
    ax.legend(fontsize=8)

    fig.suptitle(
        f"Non-linear (tanh) student d={config.state_dim}, teacher {config.teacher}, "
        f"{config.num_sequences} sequences × k={config.train_len}, input scale "
        f"{config.input_scale:g},\nsupervise {config.supervise}, GD lr={config.lr:g} to "
        f"t={config.t1:g}, {config.seeds} seeds per scale"
    )
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=100)
    plt.close(fig)


def headline(summary) -> str:
    return (
        "tanh student, median relative error at q: "
        f"{summary['extrapolation_smallest_scale']:.1e} (small init) vs "
        f"{summary['extrapolation_largest_scale']:.1e} (large init); effective state dim "
        f"{summary['dim_smallest_scale']:g} vs {summary['dim_largest_scale']:g}"
    )


EXPERIMENT = Experiment(
    name="nonlinear",
    claim=(
        "A tanh RNN trained from small initialization also learns a low-dimensional state "
        "space that extrapolates to longer sequences; from large initialization it fits the "
        "training length without extrapolating."
    ),
    config_type=NonlinearConfig,
    small=SMALL,
    run=run,
    plot=plot,
    headline=headline,
)
