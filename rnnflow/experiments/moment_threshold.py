r"""Moment threshold: a balanced student that fits $k \ge 2\hat d + 1$ lags of a teacher with
$\hat d$ modes extrapolates; at $k = 2\hat d$ it need not (fact 3 on the science page). The
argument through moments of measures, the figure and its numbers are on its docs page,
docs/experiments/moment_threshold.md.

One sweep, axes (state_dim, init_radius, train_len ∈ {2d̂, 2d̂+1}, seed, time): balanced
[`rnnflow.SymmetricRNN`][] students trained by gradient descent from spread-out starts
(entry scale $r / (2\sqrt d)$: an initial semicircle spectrum on $[-r, r]$). Saved at 41
log-spaced times: loss, relative extrapolation error to `horizon`, relative imbalance (a
balanced start stays balanced), the learned measure (eigenvalues and weights, padded to the
largest $d$ with NaN and 0), [`rnnflow.spectrum_distance`][] and the impulse response. The
summary adds the Gauss–Lobatto counterexample at $k = 2\hat d$ (`lobatto_measure`).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

import rnnflow as rf

from . import _common, _stats
from ._stats import number, numbers, seed_median
from .base import Experiment, ExperimentConfig
from .plots import moment_threshold as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class MomentThresholdConfig(ExperimentConfig):
    """- `eigenvalues`, `weights`: the balanced teacher $\\hat h_i = \\sum_j p_j \\lambda_j^i$
      ($p_j > 0$); its size $\\hat d$ sets the two training lengths $2\\hat d$ and $2\\hat d + 1$.
    - `state_dims`: the student sizes d; `init_radii`: the radius r of the initial spectrum.
    - `lr`, `t1`: gradient descent step and end time (stops early below `loss_below`).
    - `horizon`: q, the length extrapolated to.
    - `lobatto_interval`: [l, u] of the counterexample, containing the teacher's eigenvalues.
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
        lam, ends = self.eigenvalues, self.lobatto_interval
        if len(self.weights) != len(lam) or min(self.weights) <= 0:
            raise ValueError("`weights` must be positive (a balanced teacher), one per eigenvalue.")
        if len(set(lam)) != len(lam):
            raise ValueError("`eigenvalues` must be distinct.")
        self.require_positive("state_dims", "init_radii", "lr", "t1", "loss_below")
        _common.check_steps(self)
        if self.horizon <= self.train_lens[1]:
            raise ValueError(f"`horizon` must exceed 2 d̂ + 1 = {self.train_lens[1]}.")
        if len(ends) != 2 or not ends[0] < min(lam) <= max(lam) < ends[1]:
            raise ValueError("`lobatto_interval` must be [l, u] with l < every eigenvalue < u.")

    @property
    def train_lens(self) -> tuple[int, int]:
        """$(2\\hat d, 2\\hat d + 1)$: below and at the moment threshold."""
        return 2 * len(self.eigenvalues), 2 * len(self.eigenvalues) + 1


SMALL = MomentThresholdConfig(seeds=8, state_dims=(20,), init_radii=(0.3, 0.9), lr=0.1, t1=1000.0)


def lobatto_measure(eigenvalues, weights, interval) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the Gauss–Lobatto rule of $\\mu = \\sum_j p_j \\delta_{\\lambda_j}$
    on `interval` = [l, u]: $\\hat d + 1$ atoms, two of them at l and u, nonnegative weights,
    and the moments $m_0, \\dots, m_{2\\hat d - 1}$ of $\\mu$. Interior nodes: the Gauss nodes
    of $(x - l)(u - x)\\,d\\mu$ by Lanczos (Golub–Welsch); weights: the Vandermonde system for
    $m_0, \\dots, m_{\\hat d}$."""
    lam, p = np.asarray(eigenvalues, np.float64), np.asarray(weights, np.float64)
    (lo, hi), n = interval, lam.size
    modified = p * (lam - lo) * (hi - lam)
    v, v_prev, beta = np.sqrt(modified / modified.sum()), np.zeros(n), 0.0
    alphas, betas = [], []
    for _ in range(n - 1):  # the Jacobi matrix of the modified measure, row by row
        w = lam * v - beta * v_prev
        alphas.append(v @ w)
        w = w - alphas[-1] * v
        betas.append(beta := np.linalg.norm(w))
        v_prev, v = v, w / beta
    # eigvalsh reads the lower triangle only.
    interior = np.linalg.eigvalsh(np.diag(alphas) + np.diag(betas[:-1], -1)) if n > 1 else []
    nodes = np.concatenate([[lo], interior, [hi]])
    moments = np.array([np.sum(p * lam**i) for i in range(n + 1)])
    return nodes, np.linalg.solve(nodes[None, :] ** np.arange(n + 1)[:, None], moments)


def measure_spread(eigenvalues, weights, teacher_eigenvalues) -> np.ndarray:
    """$\\big(\\sum_j w_j\\, \\mathrm{dist}(\\lambda_j, \\hat\\Lambda)^2 / \\sum_j w_j\\big)^{1/2}$:
    the root-mean-square distance of the learned measure's mass from the teacher's atoms,
    over the last axis; NaN eigenvalues (padding) must carry zero weight."""
    lam = np.nan_to_num(np.asarray(eigenvalues, np.float64))
    w = np.asarray(weights, np.float64)
    dist = np.min(np.abs(lam[..., None] - np.asarray(teacher_eigenvalues)), axis=-1)
    return np.sqrt(np.sum(w * dist**2, axis=-1) / np.maximum(np.sum(w, axis=-1), 1e-300))


def metrics(loss_fn, config: MomentThresholdConfig) -> dict:
    model, teacher, k = loss_fn.model, loss_fn.loss.teacher, loss_fn.loss.train_len
    q, pad = config.horizon, max(config.state_dims) - model.state_dim  # one shape for every d

    def measure(i, fill):
        return lambda t, p: jnp.pad(rf.learned_measure(model, p)[i], (0, pad), constant_values=fill)

    return {
        "loss": rf.loss_metric(loss_fn),
        "extrapolation": rf.extrapolation_metric(model, teacher, train_len=k, horizon=q),
        "relative_imbalance": rf.imbalance_metric(model),
        "measure_eigenvalues": measure(0, jnp.nan),
        "measure_weights": measure(1, 0.0),
        "spectrum_distance": lambda t, p: rf.spectrum_distance(model, p, teacher),
        "impulse": lambda t, p: model.impulse_response(p, q)[:, 0, 0],
    }


def sweeps(config: MomentThresholdConfig) -> dict[str, rf.Sweep]:
    teacher = rf.modes_teacher(config.eigenvalues, config.weights)
    method = _common.method("gd", lr=config.lr, t1=config.t1)
    measure = _common.MetricsOf(metrics, config)

    def setup(point, key):
        d = point["state_dim"]
        loss_fn = rf.ImpulseLoss(teacher, point["train_len"]).bind(rf.SymmetricRNN(d))
        scale = point["init_radius"] / (2 * np.sqrt(d))  # a semicircle spectrum on [-r, r]
        params = loss_fn.model.init(key=key, scale=scale, balanced=True)
        return _common.Measured(loss_fn, measure), params, method

    axes = {
        "state_dim": config.state_dims,
        "init_radius": config.init_radii,
        "train_len": config.train_lens,
    }
    save, stop = rf.Save(num=41, spacing="log"), rf.Stop(loss_below=config.loss_below)
    key, attrs = _common.root_key(config.seed), {"config": config.to_dict()}
    return {"sweep": rf.Sweep(axes, config.seeds, setup, key, save, stop, attrs=attrs)}


def counterexample(config: MomentThresholdConfig) -> dict:
    """The Lobatto measure as a balanced diagonal student with d̂ + 1 states: its losses
    below and at the threshold, extrapolation error, imbalance, nodes and weights, and its
    impulse response to `horizon` beside the teacher's."""
    teacher = rf.modes_teacher(config.eigenvalues, config.weights)
    nodes, w = lobatto_measure(config.eigenvalues, config.weights, config.lobatto_interval)
    student = rf.modes_teacher(nodes, w)  # a = nodes, b = c = √w: balanced, as w > 0
    model, params = student.model, student.params
    (k, k_at), q = config.train_lens, config.horizon
    ext = rf.extrapolation_error(model, params, teacher, train_len=k, horizon=q, relative=True)
    return {
        "loss": float(rf.ImpulseLoss(teacher, k)(model, params)),
        "loss_at_threshold": float(rf.ImpulseLoss(teacher, k_at)(model, params)),
        "extrapolation": float(ext),
        "imbalance": float(model.relative_imbalance(params)),
        "nodes": nodes,
        "weights": w,
        "impulse": np.asarray(student.impulse_response(q)[:, 0, 0]),
        "teacher_impulse": np.asarray(teacher.impulse_response(q)[:, 0, 0]),
    }


def median_seed(values) -> int:
    """The seed whose value is nearest the median over seeds (NaN ignored); -1 if none is."""
    finite = np.any(np.isfinite(values))
    return int(np.nanargmin(np.abs(values - np.nanmedian(values)))) if finite else -1


def analyse(data, config: MomentThresholdConfig) -> Summary:
    ds = data["sweep"]
    last = ds.isel(time=-1).where(_stats.ok(ds))  # `_stats.final` of every variable
    lam, w = last.measure_eigenvalues, last.measure_weights  # (axes..., seed, j)
    last["spread"] = last.loss.copy(data=measure_spread(lam, w, config.eigenvalues))

    def side(k):
        cell = last.sel(train_len=k)
        ext = cell.extrapolation
        medians = seed_median(cell[["loss", "spread", "spectrum_distance"]], ...)
        return {
            "train_len": k,
            "extrapolation": number(seed_median(ext, ...)),
            "extrapolation_worst": number(ext.max()),
            "extrapolation_by_radius": numbers(seed_median(ext, ("state_dim", "seed"))),
            **{name: number(m) for name, m in medians.items()},
        }

    below, at = (side(k) for k in config.train_lens)
    counter = counterexample(config)
    values = {"below_threshold": below, "at_threshold": at}
    values["max_relative_imbalance"] = number(last.relative_imbalance.max())
    values["diverged"] = int((ds.result == int(rf.Result.diverged)).sum())
    values["counterexample"] = counter
    # The cell the figure draws: the widest start of the first student size, where k = 2d̂
    # fails most, and per training length its seed of median extrapolation error.
    d, r = config.state_dims[0], config.init_radii[-1]
    ext = last.extrapolation.sel(state_dim=d, init_radius=r).transpose("train_len", "seed")
    values["shown"] = dict(state_dim=d, init_radius=r, seed=[median_seed(v) for v in ext.values])
    radii = zip(config.init_radii, below["extrapolation_by_radius"], at["extrapolation_by_radius"])
    cells = "; ".join(f"r={r:g}: {b:.1e} vs {a:.1e}" for r, b, a in radii)
    headline = (
        f"median relative extrapolation error, k = 2d̂ vs k = 2d̂+1 — {cells} (worst seed at "
        f"2d̂+1: {at['extrapolation_worst']:.1e}); counterexample at k = 2d̂: loss "
        f"{counter['loss']:.1e}, extrapolation {counter['extrapolation']:.1e}"
    )
    return Summary(headline, values)


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
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=11,
)
