r"""Moment threshold: a balanced student that fits $k \ge 2\hat d + 1$ lags extrapolates; at
$k = 2\hat d$ it need not. DESIGN fact 3.

For a balanced student ($A$ symmetric, $B = C^\top$, one input and output) with
$A = \sum_j \lambda_j v_j v_j^\top$, the impulse response is a moment sequence,

$$h_i = C A^i B = \sum_j w_j \lambda_j^i, \qquad w_j = (v_j^\top B)^2 \ge 0,$$

of the nonnegative measure $\nu = \sum_j w_j \delta_{\lambda_j}$. A balanced teacher is a
measure $\mu$ with $\hat d$ atoms. Zero training loss at length $k$ means $\nu$ and $\mu$
share the moments $m_0, \dots, m_{k-1}$. With $k = 2\hat d + 1$ that forces $\nu = \mu$
(its $(\hat d+1) \times (\hat d+1)$ Hankel matrix of moments is singular, so every
nonnegative measure with those moments lives on the $\hat d$ roots of the kernel polynomial),
hence $h_i = \hat h_i$ for every $i$, whatever the student size $d$. With $k = 2\hat d$ the
Gauss–Lobatto rule of $\mu$ on an interval $[l, u]$ around its atoms is a different
nonnegative measure with the same moments $m_0, \dots, m_{2\hat d - 1}$ (it puts mass on $l$
and $u$): a zero-loss student that does not extrapolate. For $\mu = \delta_{1/2}$ and
$[l, u] = [0, 1]$ it is $\frac12 \delta_0 + \frac12 \delta_1$.

The experiment trains balanced [`rnnflow.SymmetricRNN`][] students by gradient descent at
$k = 2\hat d$ and $k = 2\hat d + 1$ from the same balanced starts. The start is spread out on
purpose: entries of scale $\sigma = r / (2\sqrt d)$, so that the initial measure is a
semicircle on $[-r, r]$ of mass $\approx r^2/4$ whatever $d$. Recorded per seed: the final
training loss, the relative extrapolation error to `horizon`, the learned measure (eigenvalues
and weights), how far its mass lies from the teacher's atoms (root-mean-square,
`measure_spread`; and the farthest atom of non-negligible weight,
[`rnnflow.spectrum_distance`][]), and the relative imbalance (a balanced start stays
balanced: the conserved $Q$ is zero). The constructed Lobatto counterexample is recorded too.

Reading the numbers: at $k = 2\hat d + 1$ the loss converges only like $1/t^2$ (the stray
weights decay like $1/t$), so the extrapolation error is small but not zero after a finite
run, and float32 stops the loss near 1e-14; run the full scale in float64 (`--float64`).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._diagnostics import learned_measure, spectrum_distance
from .._losses import ImpulseLoss, extrapolation_error
from .._methods import GradientDescent
from .._models import DiagonalRNN, RNNParams, SymmetricRNN
from .._seeds import init_seeds
from .._teachers import modes_teacher
from .._trajectory import Result, Save, Stop
from . import _common
from .base import Experiment, ExperimentConfig, Outcome, Sweep


@dataclasses.dataclass(frozen=True, kw_only=True)
class MomentThresholdConfig(ExperimentConfig):
    """- `eigenvalues`, `weights`: the balanced teacher $\\hat h_i = \\sum_j p_j \\lambda_j^i$
      ($p_j > 0$); its size $\\hat d$ sets the two training lengths $2\\hat d$ and $2\\hat d + 1$.
    - `state_dims`: the student sizes d; `init_radii`: the radius r of the initial spectrum
      (entry scale r / (2√d)).
    - `lr`, `t1`: gradient descent step and end time (stops early below `loss_below`).
    - `horizon`: q, the length extrapolated to.
    - `lobatto_interval`: [l, u] of the counterexample; must contain the teacher's eigenvalues
      strictly inside.
    """

    experiment = "moment_threshold"
    seeds: int = 32
    eigenvalues: tuple[float, ...] = (0.5,)
    weights: tuple[float, ...] = (1.0,)
    state_dims: tuple[int, ...] = (10, 20, 40)
    init_radii: tuple[float, ...] = (0.1, 0.3, 0.6, 0.9)
    lr: float = 0.1
    t1: float = 4000.0
    loss_below: float = 1e-16
    horizon: int = 50
    lobatto_interval: tuple[float, ...] = (0.0, 1.0)

    def check(self):
        if len(self.weights) != len(self.eigenvalues):
            raise ValueError("`weights` must have one entry per entry of `eigenvalues`.")
        if any(p <= 0 for p in self.weights):
            raise ValueError("`weights` must be positive (a balanced teacher).")
        if len(set(self.eigenvalues)) != len(self.eigenvalues):
            raise ValueError("`eigenvalues` must be distinct.")
        self.require_positive("state_dims", "init_radii", "lr", "t1", "loss_below")
        if self.lr > self.t1:
            raise ValueError("`lr` must not exceed `t1` (at least one step).")
        if self.horizon <= self.train_lens[1]:
            raise ValueError(f"`horizon` must exceed 2 d̂ + 1 = {self.train_lens[1]}.")
        if len(self.lobatto_interval) != 2:
            raise ValueError("`lobatto_interval` must be [l, u].")
        lo, hi = self.lobatto_interval
        if not lo < min(self.eigenvalues) <= max(self.eigenvalues) < hi:
            raise ValueError(
                "`lobatto_interval` must contain every teacher eigenvalue strictly inside."
            )

    @property
    def train_lens(self) -> tuple[int, int]:
        """$(2\\hat d, 2\\hat d + 1)$: below and at the moment threshold."""
        n = len(self.eigenvalues)
        return 2 * n, 2 * n + 1


SMALL = MomentThresholdConfig(seeds=8, state_dims=(20,), init_radii=(0.3, 0.9), lr=0.1, t1=1000.0)


def lobatto_measure(eigenvalues, weights, interval) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the Gauss–Lobatto rule of $\\mu = \\sum_j p_j \\delta_{\\lambda_j}$
    on `interval` = [l, u]: $\\hat d + 1$ atoms, two of them at l and u, nonnegative weights,
    and the moments $m_0, \\dots, m_{2\\hat d - 1}$ of $\\mu$.

    Its interior nodes are the Gauss nodes ($\\hat d - 1$ of them) of the modified measure
    $(x - l)(u - x)\\,d\\mu$, found by Lanczos on $\\mathrm{diag}(\\lambda)$ (Golub–Welsch);
    the weights then solve the Vandermonde system for $m_0, \\dots, m_{\\hat d}$.
    """
    lam = np.asarray(eigenvalues, np.float64)
    p = np.asarray(weights, np.float64)
    lo, hi = interval
    n = lam.size
    modified = p * (lam - lo) * (hi - lam)
    interior = np.zeros(0)
    if n > 1:
        # Lanczos on the discrete measure: Jacobi matrix of size n - 1.
        v = np.sqrt(modified / modified.sum())
        alphas, betas, v_prev, beta = [], [], np.zeros(n), 0.0
        for _ in range(n - 1):
            w = lam * v - beta * v_prev
            alpha = v @ w
            w = w - alpha * v
            alphas.append(alpha)
            beta = np.linalg.norm(w)
            betas.append(beta)
            v_prev, v = v, w / beta
        jacobi = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
        interior = np.linalg.eigvalsh(jacobi)
    nodes = np.concatenate([[lo], interior, [hi]])
    moments = np.array([np.sum(p * lam**i) for i in range(n + 1)])
    vandermonde = nodes[None, :] ** np.arange(n + 1)[:, None]
    w = np.linalg.solve(vandermonde, moments)
    return nodes, w


def measure_spread(eigenvalues, weights, teacher_eigenvalues) -> np.ndarray:
    """$\\big(\\sum_j w_j\\, \\mathrm{dist}(\\lambda_j, \\hat\\Lambda)^2 / \\sum_j w_j\\big)^{1/2}$:
    the root-mean-square distance of the learned measure's mass from the teacher's atoms
    (zero exactly when the measure lives on them). Reduces over the last axis; NaN
    eigenvalues (padding) must carry zero weight."""
    lam = np.nan_to_num(np.asarray(eigenvalues, np.float64))
    w = np.asarray(weights, np.float64)
    dist = np.min(np.abs(lam[..., None] - np.asarray(teacher_eigenvalues)), axis=-1)
    return np.sqrt(np.sum(w * dist**2, axis=-1) / np.maximum(np.sum(w, axis=-1), 1e-300))


def _diagonal_params(nodes, w, dtype) -> RNNParams:
    """The measure $\\sum_j w_j \\delta_{x_j}$ as a balanced diagonal student:
    $a = x$, $b = c = \\sqrt{w}$."""
    root = np.sqrt(np.maximum(w, 0.0))
    return RNNParams(
        a=jnp.asarray(nodes, dtype),
        b=jnp.asarray(root[:, None], dtype),
        c=jnp.asarray(root[None, :], dtype),
    )


def _metrics(model, loss, teacher, horizon):
    return {
        "loss": lambda t, p: loss(model, p),
        "extrapolation": lambda t, p: extrapolation_error(
            model, p, teacher, train_len=loss.train_len, horizon=horizon, relative=True
        ),
        "relative_imbalance": lambda t, p: model.relative_imbalance(p),
    }


def run(config: MomentThresholdConfig, sweep: Sweep = Sweep()) -> Outcome:
    teacher = modes_teacher(config.eigenvalues, config.weights)
    dtype = jnp.result_type(float)
    n_d, n_r, n_s, q = len(config.state_dims), len(config.init_radii), config.seeds, config.horizon
    d_max = max(config.state_dims)
    keys, key_data = _common.seed_keys(config.seed, n_d * n_r * n_s)
    shape = (n_d, n_r, 2, n_s)
    out = {
        name: np.full(shape, np.nan)
        for name in ("loss", "extrapolation", "spectrum_distance", "imbalance", "t_stop")
    }
    out["result"] = np.zeros(shape, np.int32)
    out["num_steps"] = np.zeros(shape, np.int64)
    # Learned measures, padded to the largest student with zero weight and NaN eigenvalues.
    out["measure_eigenvalues"] = np.full(shape + (d_max,), np.nan)
    out["measure_weights"] = np.zeros(shape + (d_max,))
    out["impulse"] = np.full(shape + (q,), np.nan)
    method = GradientDescent(config.lr, int(round(config.t1 / config.lr)))
    for i, d in enumerate(config.state_dims):
        model = SymmetricRNN(d)
        start = i * n_r * n_s
        params = jax.tree.map(
            lambda *xs: jnp.concatenate(xs),
            *[
                init_seeds(
                    model,
                    keys[start + j * n_s : start + (j + 1) * n_s],
                    scale=r / (2 * np.sqrt(d)),
                    balanced=True,
                )
                for j, r in enumerate(config.init_radii)
            ],
        )

        # One compiled program for the per-seed diagnostics (eager, each operation would
        # compile on its own), shared by both training lengths.
        @jax.jit
        def analyse(final):
            def one(p):
                lam, w = learned_measure(model, p)
                dist = spectrum_distance(model, p, teacher)
                return lam, w, dist, model.impulse_response(p, q)[:, 0, 0]

            return jax.vmap(one)(final)

        for m, k in enumerate(config.train_lens):
            sweep.log(f"moment_threshold: d={d}, k={k}", flush=True)
            loss = ImpulseLoss(teacher, k)
            traj = sweep.train(
                f"d{d}-k{k}",
                loss.bind(model),
                method,
                params,
                save=Save(num=41, spacing="log", metrics=_metrics(model, loss, teacher, q)),
                stop=Stop(loss_below=config.loss_below),
            )
            lam, w, dist, h = analyse(traj.final)
            cells = {
                "loss": traj.metrics["loss"][:, -1],
                "extrapolation": traj.metrics["extrapolation"][:, -1],
                "imbalance": traj.metrics["relative_imbalance"][:, -1],
                "spectrum_distance": dist,
                "t_stop": traj.t_stop,
                "result": traj.result,
                "num_steps": traj.num_steps,
            }
            for name, v in cells.items():
                out[name][i, :, m] = np.asarray(v).reshape(n_r, n_s)
            out["measure_eigenvalues"][i, :, m, :, :d] = np.asarray(lam).reshape(n_r, n_s, d)
            out["measure_weights"][i, :, m, :, :d] = np.asarray(w).reshape(n_r, n_s, d)
            out["impulse"][i, :, m] = np.asarray(h).reshape(n_r, n_s, q)
            for name in ("loss", "extrapolation"):
                curve = np.asarray(traj.metrics[name]).reshape(n_r, n_s, -1)
                out.setdefault(f"{name}_curve", np.full(shape + (curve.shape[-1],), np.nan))
                out[f"{name}_curve"][i, :, m] = curve
    out["ts"] = np.asarray(traj.ts)[0]  # the same for every seed
    out["measure_spread"] = measure_spread(
        out["measure_eigenvalues"], out["measure_weights"], config.eigenvalues
    )

    # The constructed counterexample, a balanced diagonal student with d̂ + 1 states.
    nodes, w = lobatto_measure(config.eigenvalues, config.weights, config.lobatto_interval)
    counter_model = DiagonalRNN(nodes.size)
    counter = _diagonal_params(nodes, w, dtype)
    k_below, k_at = config.train_lens
    counter_summary = {
        "counterexample_loss": float(ImpulseLoss(teacher, k_below)(counter_model, counter)),
        "counterexample_loss_at_threshold": float(
            ImpulseLoss(teacher, k_at)(counter_model, counter)
        ),
        "counterexample_extrapolation": float(
            extrapolation_error(
                counter_model, counter, teacher, train_len=k_below, horizon=q, relative=True
            )
        ),
        "counterexample_imbalance": float(counter_model.relative_imbalance(counter)),
    }
    out["counter_nodes"], out["counter_weights"] = nodes, w
    out["counter_impulse"] = np.asarray(counter_model.impulse_response(counter, q)[:, 0, 0])
    out["teacher_impulse"] = np.asarray(teacher.impulse_response(q)[:, 0, 0])
    out["state_dims"] = np.asarray(config.state_dims)
    out["init_radii"] = np.asarray(config.init_radii)
    out["train_lens"] = np.asarray(config.train_lens)

    ext = _common.masked(out["extrapolation"], out["result"])
    loss = _common.masked(out["loss"], out["result"])
    summary = {
        "extrapolation_below_threshold": _common.median(ext[:, :, 0]),
        "extrapolation_at_threshold": _common.median(ext[:, :, 1]),
        # The claim at the threshold is "every zero-loss student": the worst seed, too.
        "extrapolation_at_threshold_worst": float(np.nanmax(ext[:, :, 1]))
        if np.any(np.isfinite(ext[:, :, 1]))
        else float("nan"),
        "loss_below_threshold": _common.median(loss[:, :, 0]),
        "loss_at_threshold": _common.median(loss[:, :, 1]),
        "spread_below_threshold": _common.median(
            _common.masked(out["measure_spread"][:, :, 0], out["result"][:, :, 0])
        ),
        "spread_at_threshold": _common.median(
            _common.masked(out["measure_spread"][:, :, 1], out["result"][:, :, 1])
        ),
        "spectrum_distance_below_threshold": _common.median(
            _common.masked(out["spectrum_distance"][:, :, 0], out["result"][:, :, 0])
        ),
        "spectrum_distance_at_threshold": _common.median(
            _common.masked(out["spectrum_distance"][:, :, 1], out["result"][:, :, 1])
        ),
        "max_relative_imbalance": float(np.nanmax(_common.masked(out["imbalance"], out["result"])))
        if np.any(out["result"] <= Result.converged)
        else float("nan"),
        "diverged": int(np.sum(out["result"] == Result.diverged)),
        **counter_summary,
    }
    # Below the threshold the outcome depends on how spread out the start is; at it, it does not.
    for j, r in enumerate(config.init_radii):
        summary[f"r={r}/extrapolation_below_threshold"] = _common.median(ext[:, j, 0])
        summary[f"r={r}/extrapolation_at_threshold"] = _common.median(ext[:, j, 1])
    return Outcome(out, summary, key_data)


def plot(arrays, summary, config: MomentThresholdConfig, file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k_below, k_at = config.train_lens
    colors = ("tab:red", "tab:blue")
    labels = (f"k = 2d̂ = {k_below}", f"k = 2d̂+1 = {k_at}")
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))

    # (a) per-seed extrapolation error for each (d, r) cell, both training lengths.
    ax = axes[0, 0]
    n_d, n_r = len(config.state_dims), len(config.init_radii)
    cells = [(i, j) for i in range(n_d) for j in range(n_r)]
    rng = np.random.default_rng(0)
    for c, (i, j) in enumerate(cells):
        for m in range(2):
            v = _common.masked(arrays["extrapolation"][i, j, m], arrays["result"][i, j, m])
            x = c + (m - 0.5) * 0.3 + rng.uniform(-0.06, 0.06, v.size)
            ax.scatter(x, v, s=14, color=colors[m], alpha=0.7, label=labels[m] if c == 0 else None)
    ax.axhline(
        summary["counterexample_extrapolation"],
        color="k",
        ls="--",
        lw=1,
        label="Lobatto counterexample",
    )
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(
        [f"d={config.state_dims[i]}\nr={config.init_radii[j]}" for i, j in cells], fontsize=8
    )
    ax.set_yscale("log")
    ax.set_ylabel(f"relative extrapolation error to q={config.horizon}")
    ax.set_title("(a) extrapolation per seed")
    ax.legend(fontsize=8)

    # (b)-(d) show the widest start of the first student size, where k = 2d̂ fails most.
    j_wide = len(config.init_radii) - 1

    # (b) the learned measures of every seed: atoms (λ_j, w_j).
    ax = axes[0, 1]
    for m in range(2):
        lam = arrays["measure_eigenvalues"][0, j_wide, m].ravel()
        w = arrays["measure_weights"][0, j_wide, m].ravel()
        keep = np.isfinite(lam) & (w > 1e-8)
        ax.scatter(lam[keep], w[keep], s=12, color=colors[m], alpha=0.6, label=labels[m])
    ax.scatter(config.eigenvalues, config.weights, marker="*", s=200, color="k", label="teacher")
    ax.scatter(
        arrays["counter_nodes"],
        arrays["counter_weights"],
        marker="D",
        s=50,
        facecolors="none",
        edgecolors="k",
        label="counterexample",
    )
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue λ_j of A")
    ax.set_ylabel("weight w_j = (v_jᵀ B)²")
    ax.set_title(
        f"(b) learned measures, d={config.state_dims[0]}, r={config.init_radii[j_wide]}, all seeds"
    )
    ax.legend(fontsize=8)

    # (c) impulse responses: teacher, counterexample, median-error seed at each k.
    ax = axes[1, 0]
    i_lag = np.arange(config.horizon)
    ax.plot(i_lag, np.abs(arrays["teacher_impulse"]), "k-", lw=2, label="teacher")
    ax.plot(i_lag, np.abs(arrays["counter_impulse"]), "k--", label="counterexample")
    for m in range(2):
        v = _common.masked(arrays["extrapolation"][0, j_wide, m], arrays["result"][0, j_wide, m])
        if np.any(np.isfinite(v)):
            s = int(np.nanargmin(np.abs(v - np.nanmedian(v))))
            ax.plot(
                i_lag,
                np.abs(arrays["impulse"][0, j_wide, m, s]),
                color=colors[m],
                label=f"student, {labels[m]} (median seed)",
            )
    ax.axvspan(0, k_at - 0.5, color="0.9")
    ax.set_yscale("log")
    ax.set_xlabel("lag i")
    ax.set_ylabel("|h_i|")
    ax.set_title(f"(c) impulse responses, r={config.init_radii[j_wide]} (grey: lags < {k_at})")
    ax.legend(fontsize=8)

    # (d) training loss and extrapolation over time, median over the first cell's seeds.
    ax = axes[1, 1]
    ts = arrays["ts"]
    for m in range(2):
        for name, ls in (("loss", "-"), ("extrapolation", ":")):
            curve = _common.masked(
                arrays[f"{name}_curve"][0, j_wide, m], arrays["result"][0, j_wide, m]
            )
            ax.plot(
                ts[1:],
                np.nanmedian(curve, axis=0)[1:],
                ls,
                color=colors[m],
                label=f"{name}, {labels[m]}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time t = step × lr")
    ax.set_title(f"(d) median loss and extrapolation error, r={config.init_radii[j_wide]}")
    ax.legend(fontsize=8)

    fig.suptitle(
        f"Moment threshold: balanced SymmetricRNN students, teacher λ={list(config.eigenvalues)}"
        f" (d̂={len(config.eigenvalues)}), GD lr={config.lr}, t1={config.t1}, {config.seeds} seeds"
    )
    fig.tight_layout()
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


def headline(summary) -> str:
    cells = [
        f"{key.split('/')[0]}: {summary[key]:.1e} vs "
        f"{summary[key.replace('below_threshold', 'at_threshold')]:.1e}"
        for key in summary
        if key.startswith("r=") and key.endswith("extrapolation_below_threshold")
    ]
    return (
        "median relative extrapolation error, k = 2d̂ vs k = 2d̂+1 — "
        + "; ".join(cells)
        + f" (worst seed at 2d̂+1: {summary['extrapolation_at_threshold_worst']:.1e}); "
        f"counterexample at k = 2d̂: loss {summary['counterexample_loss']:.1e}, "
        f"extrapolation {summary['counterexample_extrapolation']:.1e}"
    )


EXPERIMENT = Experiment(
    name="moment_threshold",
    claim=(
        "A balanced linear RNN's impulse response is the moment sequence of a nonnegative "
        "measure: fitting k ≥ 2d̂ + 1 lags of a d̂-dimensional teacher forces exact "
        "extrapolation for any student size, while at k = 2d̂ zero-loss students need not "
        "extrapolate."
    ),
    config_type=MomentThresholdConfig,
    small=SMALL,
    run=run,
    plot=plot,
    headline=headline,
)
