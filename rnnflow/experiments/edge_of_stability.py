r"""Edge of stability: gradient descent at a finite step holds the sharpness at $2/\eta$,
where it leaves the gradient flow.

Gradient descent with step $\eta$ is stable near a minimum only while the sharpness
$\lambda_{\max}(\nabla^2 L) < 2/\eta$ ([`rnnflow.sharpness_metric`][]). A deep linear
network, $P = W_D \cdots W_1$ ($D$ = `depth` square matrices of size `width`), is fitted to
the diagonal target $S = \operatorname{diag}(\text{strengths})$ by
$L = \tfrac12 \|P - S\|_F^2$, a plain loss over a list of matrices. The first $\lfloor D/2
\rfloor$ layers start small (Gaussian entries of scale `small_scale`/√width), the others
large (`large_scale` × a random orthogonal matrix). The gradient flow conserves the
imbalances $W_{i+1}^\top W_{i+1} - W_i W_i^\top$, so it ends on a minimum sharper than the
balanced ones (for $D = 4$, $S = \operatorname{diag}(2, 1)$ and `large_scale` 1.8: ≈ 17.2,
against $D s_1^{2(D-1)/D}$ ≈ 11.3 at a balanced minimum).

For each η in `lrs` with $11.3 < 2/\eta < 17.2$, gradient descent and the gradient flow
start from the same parameters, per seed. What the saves (every step) show:

- **progressive sharpening**: the sharpness rises from its initial value (≈ 6.5, from the
  residual term of the Hessian) as the small layers grow, up to $2/\eta$;
- **the edge of stability**: from the first step with $\lambda_{\max} \ge 2/\eta$ on, it
  stays there while the loss keeps decreasing, not monotonically (it rises at many
  steps). Gradient descent oscillates with period two about the minimum, so the sharpness
  alternates between the two iterates; the settled value is $\lambda_{\max}\eta/2$
  averaged over two consecutive steps, its median over the saves after the crossing, per
  seed (`settled_ratio`: the median over seeds and the quartiles). It ends at a minimum of
  sharpness just below $2/\eta$, or still oscillating about it, where the flow goes on to
  its sharper minimum;
- **the flow departs there**: up to the crossing, gradient descent has the flow's loss
  (`loss_ratio` at the crossing ≈ 1); after it the flow goes to zero loss and gradient
  descent does not (ratio ≥ 10⁶ at the end). The parameter distance
  $\|\theta_{GD} - \theta_{GF}\|$ relative to $\|\theta_{GF}\|$ is also reported; it
  peaks once before the crossing, where the loss falls fastest and gradient descent lags
  the flow by its first-order error.

The impulse loss of an RNN shows the same stop at $2/\eta$ (a dense student at η = 0.05
settles at sharpness 40, see the `dense` store of [small_step](small_step.md)), after a
long plateau: too slow for this experiment's small run, which keeps to the deep linear
network.

Stores: `flow` (axes algorithm = gf, seed, time), saved at every step of every η, and one
per η, `lr<η>` (axes lr, seed, time), gradient descent saved at every step: loss,
sharpness and the flattened parameters θ.
"""

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._methods import GradientDescent, GradientFlow
from .._sharpness import hessian_eigenvalues, sharpness_metric
from .._sweep import Sweep
from .._trajectory import Result, Save, Stop
from . import _common, plots
from ._common import median
from .base import Experiment, ExperimentConfig
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class EdgeOfStabilityConfig(ExperimentConfig):
    """- `depth`, `width`: the deep linear network, `depth` matrices `width` × `width`.
    - `strengths`: the diagonal of the target matrix (one per `width`).
    - `small_scale`, `large_scale`: the init scales of the first `depth // 2` layers and
      of the others.
    - `lrs`: the gradient-descent step sizes η; `t1`: the end time, rounded to a whole
      number of steps of each η (every step is saved).
    - `rtol`: the gradient flow's tolerance (Tsit5, PID controller, atol = rtol × 1e-3).
    - `diverge_above`: a seed whose loss exceeds this is stopped as diverged.
    """

    experiment = "edge_of_stability"
    seeds: int = 16
    depth: int = 4
    width: int = 2
    strengths: tuple[float, ...] = (2.0, 1.0)
    small_scale: float = 0.01
    large_scale: float = 1.8
    lrs: tuple[float, ...] = (0.12, 0.13, 0.14)
    t1: float = 60.0
    rtol: float = 1e-6
    diverge_above: float = 1e3

    def check(self):
        self.require_positive("depth", "width", "strengths", "small_scale", "large_scale")
        self.require_positive("lrs", "t1", "rtol", "diverge_above")
        if self.depth < 2:
            raise ValueError(f"`depth` must be at least 2; got {self.depth}.")
        if len(self.strengths) != self.width:
            raise ValueError(
                f"`strengths` must have `width` = {self.width} entries; got {self.strengths!r}."
            )
        if len(set(self.lrs)) != len(self.lrs):
            raise ValueError(f"`lrs` must be distinct; got {self.lrs!r}.")
        if max(self.lrs) * 10 > self.t1:
            raise ValueError("`t1` must be at least 10 steps of the largest of `lrs`.")
        if self.rtol >= 1:
            raise ValueError(f"`rtol` must be below 1; got {self.rtol}.")


SMALL = EdgeOfStabilityConfig(seeds=4, t1=20.0)


def deep_linear_loss(strengths):
    """$L(W_1, \\ldots, W_D) = \\frac12 \\|W_D \\cdots W_1 - \\operatorname{diag}(s)\\|_F^2$."""
    target = jnp.diag(jnp.asarray(strengths, dtype=jnp.result_type(float)))

    def loss_fn(layers):
        product = layers[0]
        for w in layers[1:]:
            product = w @ product
        return 0.5 * jnp.sum((product - target) ** 2)

    return loss_fn


def init_layers(key, config: EdgeOfStabilityConfig) -> list:
    """Small Gaussian first layers, large scaled-orthogonal last ones (see the module)."""
    dtype, h = jnp.result_type(float), config.width
    layers = []
    for i, k in enumerate(jax.random.split(key, config.depth)):
        if i < config.depth // 2:
            layers.append(config.small_scale * jax.random.normal(k, (h, h), dtype) / h**0.5)
        else:
            layers.append(config.large_scale * jax.random.orthogonal(k, h, dtype=dtype))
    return layers


def sweep_name(lr: float) -> str:
    return f"lr{lr:g}"


def step_times(config: EdgeOfStabilityConfig, lr: float) -> np.ndarray:
    """Every step of gradient descent at step `lr`: t = nη, n = 0, …, round(t1/η)."""
    return lr * np.arange(int(round(config.t1 / lr)) + 1)


def sweeps(config: EdgeOfStabilityConfig) -> dict[str, Sweep]:
    loss_fn = deep_linear_loss(config.strengths)
    top = sharpness_metric(loss_fn)
    metrics = {
        "loss": lambda t, p: loss_fn(p),
        "sharpness": lambda t, p: top(t, p)[0],
        "theta": lambda t, p: ravel_pytree(p)[0],
    }
    key, stop = _common.root_key(config.seed), Stop(loss_above=config.diverge_above)
    times = {lr: step_times(config, lr) for lr in config.lrs}
    # One flow, saved at every step of every η (it does not depend on η).
    union = np.unique(np.concatenate(list(times.values())))
    controller = diffrax.PIDController(rtol=config.rtol, atol=config.rtol * 1e-3)
    flow = GradientFlow(union[-1], stepsize_controller=controller, max_steps=1_000_000)
    # Its sharpness is computed at the end only, in `analyse` (a save metric costs its
    # compilation in the solver).
    flow_metrics = {name: metrics[name] for name in ("loss", "theta")}
    out = {
        "flow": Sweep(
            {"algorithm": ("gf",)},
            config.seeds,
            lambda point, key: (loss_fn, init_layers(key, config), flow),
            key,
            Save(union, metrics=flow_metrics),
            stop,
        )
    }
    for lr, ts in times.items():
        descent = GradientDescent(lr, len(ts) - 1)

        def setup(point, key, descent=descent):
            return loss_fn, init_layers(key, config), descent

        out[sweep_name(lr)] = Sweep(
            {"lr": (lr,)}, config.seeds, setup, key, Save(ts, metrics=metrics), stop, looped=("lr",)
        )
    return out


def crossing(ratio):
    """Index of the first save with λη/2 ≥ 1 along `time`, per seed; -1 where never."""
    reached = np.asarray(ratio >= 1.0)
    return np.where(reached.any(-1), reached.argmax(-1), -1)


def loss_rises(loss) -> np.ndarray:
    """Steps at which the loss rises by more than 1 % from above 1e-8 (not rounding at a
    minimum), along the last axis."""
    return np.sum((loss[..., 1:] > 1.01 * loss[..., :-1]) & (loss[..., :-1] > 1e-8), axis=-1)


def per_lr(data, lr: float) -> dict:
    """The findings for one step size η, from the sweeps' Datasets (seeds that failed,
    e.g. diverged, are NaN and excluded from the medians)."""
    gd = data[sweep_name(lr)].sel(lr=lr)
    gf = data["flow"].sel(algorithm="gf").sel(time=gd.time.values, method="nearest")
    both = (_common.ok(gd) & _common.ok(gf)).values  # seeds where neither failed
    ts = gd.time.values
    sharp = gd.sharpness.transpose("seed", "time").values
    ratio = sharp * lr / 2
    loss = gd.loss.transpose("seed", "time").values
    theta = [d.theta.transpose("seed", "time", ...).values for d in (gd, gf)]
    dist = np.linalg.norm(theta[0] - theta[1], axis=-1)
    size = np.linalg.norm(theta[1], axis=-1)
    idx = crossing(ratio)
    reached = both & (idx >= 0)
    nan = np.full(len(idx), np.nan)
    gf_loss = gf.loss.transpose("seed", "time").values
    settled, t_cross, at_cross, at_end, rises, ratio_cross, ratio_end = (
        nan.copy() for _ in range(7)
    )
    for s in np.flatnonzero(reached):
        i = idx[s]
        # The mean over one period of the oscillation (two steps), median over the saves.
        after = ratio[s, i:]
        settled[s] = np.median(0.5 * (after[1:] + after[:-1]) if len(after) > 1 else after)
        t_cross[s] = ts[i]
        at_cross[s], at_end[s] = dist[s, i] / size[s, i], dist[s, -1] / size[s, -1]
        ratio_cross[s], ratio_end[s] = loss[s, i] / gf_loss[s, i], loss[s, -1] / gf_loss[s, -1]
        # Rises of more than 1 % at a loss above 1e-8 (not rounding at the minimum).
        rises[s] = loss_rises(loss[s])
    start = np.where(both, sharp[:, 0], np.nan)
    q25, q75 = np.nanpercentile(settled, [25, 75]) if reached.any() else (np.nan, np.nan)
    return {
        "lr": lr,
        "threshold": 2 / lr,
        "initial_sharpness": median(start),
        "gd_final_sharpness": median(np.where(both, sharp[:, -1], np.nan)),
        "reached": int(reached.sum()),
        "crossing_time": median(t_cross),
        "settled_ratio": {"median": median(settled), "q25": float(q25), "q75": float(q75)},
        "loss_rises": median(rises),
        "relative_distance": {"at_crossing": median(at_cross), "at_end": median(at_end)},
        "loss_ratio": {"at_crossing": median(ratio_cross), "at_end": median(ratio_end)},
        "gd_final_loss": median(np.where(both, loss[:, -1], np.nan)),
        "gf_final_loss": median(np.where(both, gf_loss[:, -1], np.nan)),
        "excluded": int((~both).sum()),
        "failed": int((~_common.ok(gd)).sum()),
        "diverged": int((gd.result == int(Result.diverged)).sum()),
    }


def flow_final_sharpness(data, config: EdgeOfStabilityConfig) -> np.ndarray:
    """The sharpness at the end of the flow, per seed (NaN for failed seeds)."""
    flow = data["flow"].sel(algorithm="gf")
    loss_fn = deep_linear_loss(config.strengths)
    unravel = ravel_pytree(init_layers(jax.random.key(0), config))[1]
    theta = flow.theta.isel(time=-1).transpose("seed", ...).values
    out = [
        float(hessian_eigenvalues(loss_fn, unravel(jnp.asarray(th, jnp.result_type(float))))[0])
        if ok
        else np.nan
        for th, ok in zip(theta, _common.ok(flow).values, strict=True)
    ]
    return np.asarray(out)


def analyse(data, config: EdgeOfStabilityConfig) -> Summary:
    values = {"by_lr": {sweep_name(lr): per_lr(data, lr) for lr in config.lrs}}
    rows = list(values["by_lr"].values())
    gf = median(flow_final_sharpness(data, config))
    values["gf_final_sharpness"] = gf
    flow_ok = _common.ok(data["flow"].sel(algorithm="gf"))
    values["flow_failed"] = int((~flow_ok).sum())
    values["failed"] = sum(r["failed"] for r in rows) + values["flow_failed"]
    parts = ", ".join(
        f"η={r['lr']:g}: {r['settled_ratio']['median']:.3f} "
        f"[{r['settled_ratio']['q25']:.3f}, {r['settled_ratio']['q75']:.3f}]"
        for r in rows
    )
    reached = sum(r["reached"] for r in rows)
    headline = (
        f"deep linear network: sharpness {rows[0]['initial_sharpness']:.1f} at init reaches "
        f"2/η in {reached}/{len(rows) * config.seeds} runs; median λη/2 after: {parts} "
        f"(quartiles); the flow ends at sharpness {gf:.1f}"
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="edge_of_stability",
    claim=(
        "Gradient descent at a finite step sharpens progressively until the sharpness "
        "reaches 2/η, then holds it there while the loss decreases non-monotonically: "
        "there it leaves the gradient flow, which goes on to a sharper minimum."
    ),
    config_type=EdgeOfStabilityConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=plots.edge_of_stability,
)
