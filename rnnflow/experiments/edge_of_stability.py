r"""Edge of stability: gradient descent at a finite step holds the sharpness at $2/\eta$,
where it leaves the gradient flow and the modified flow.

Gradient descent with step $\eta$ is stable near a minimum only while the sharpness
$\lambda_{\max}(\nabla^2 L) < 2/\eta$ ([`rnnflow.sharpness_metric`][]). Two models whose
gradient flow ends on a minimum sharper than $2/\eta$, each a *case* with its own step sizes:

- **`deep_linear`**: $P = W_D \cdots W_1$ ($D$ = `depth` square matrices of size `width`)
  fitted to $S = \operatorname{diag}(\text{strengths})$ by $L = \tfrac12 \|P - S\|_F^2$, a
  plain loss over a list of matrices. The first $\lfloor D/2 \rfloor$ layers start small
  (Gaussian entries of scale `small_scale`/√width), the others large (`large_scale` × a
  random orthogonal matrix). The flow conserves the imbalances $W_{i+1}^\top W_{i+1} - W_i
  W_i^\top$, so it ends on a minimum sharper than the balanced ones (for $D = 4$, $S =
  \operatorname{diag}(2, 1)$ and `large_scale` 1.8: ≈ 17.2, against $D s_1^{2(D-1)/D}$ ≈
  11.3 at a balanced minimum), and `lrs` put $2/\eta$ between the two.
- **`rnn`**: a dense linear RNN (`rnn_state_dim`, init scale `rnn_scale`) on the impulse
  loss of `rnn_teacher` over `rnn_train_len` lags. From small init the flow learns the
  balanced rank-one solution, of sharpness ≈ 46.3 for the `short` teacher and 5 lags
  (sharpness ≈ 2 at init), so `rnn_lrs` above 2/46.3 ≈ 0.043 cannot end there.

For each η, gradient descent, the gradient flow and the modified flow of $L +
\frac{\eta}{4}\|\nabla L\|^2$ ([`rnnflow.ModifiedFlow`][]) start from the same parameters,
per seed, and are saved at every step. What the saves show:

- **progressive sharpening**: the sharpness rises from its initial value as the model
  learns, up to $2/\eta$;
- **the edge of stability**: from the first step with $\lambda_{\max} \ge 2/\eta$ on,
  gradient descent oscillates with period two, the sharpness alternating between the two
  iterates; the settled value is $\lambda_{\max}\eta/2$ averaged over two consecutive
  steps, its median over the saves after the crossing, per seed (`settled_ratio`: the
  median over seeds and the quartiles). The deep linear network's loss keeps decreasing,
  rising at many steps, to a minimum of sharpness just below $2/\eta$. The RNN locks into a
  period-two cycle at a loss of order 10⁻² (a cycle, not a minimum: the two-step mean of
  the sharpness sits a few per cent above $2/\eta$, and more so at larger η), the loss
  rising at every other step;
- **both flows depart there**: up to the crossing gradient descent has the flow's loss
  (`loss_ratio` at the crossing); after it the flows go on to zero loss and gradient
  descent does not. The distances $\|\theta_{GD} - \theta_{F}\|/\|\theta_{F}\|$ to the
  gradient flow and to the modified flow are reported at their largest before the
  crossing, at the crossing and at the end: below the edge the modified flow is the closer
  (its error is second order in η), beyond it neither follows.

Stores, per case `C` ∈ {`deep_linear`, `rnn`}: `C_flow` (axes algorithm = gf, seed, time),
saved at every step of every η; per η, `C_lr<η>` (axes lr, seed, time), gradient descent
saved at every step: loss, sharpness and the flattened parameters θ; and `C_modified_lr<η>`,
the modified flow at the same times: loss and θ. `rnn_lrs` empty skips the RNN case.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._engine.methods import GradientDescent, GradientFlow, ModifiedFlow
from .._engine.trajectory import Result, Save, Stop
from .._lens.sharpness import hessian_eigenvalues, sharpness_metric
from .._rnn.losses import ImpulseLoss
from .._rnn.models import DenseRNN
from .._sweeps.sweep import Sweep
from . import _common
from ._common import median
from .base import Experiment, ExperimentConfig, may_be_empty
from .plots import edge_of_stability as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class EdgeOfStabilityConfig(ExperimentConfig):
    """- `depth`, `width`: the deep linear network, `depth` matrices `width` × `width`.
    - `strengths`: the diagonal of the target matrix (one per `width`).
    - `small_scale`, `large_scale`: the init scales of the first `depth // 2` layers and
      of the others.
    - `lrs`: the network's step sizes η; `t1`: its end time, rounded to a whole number of
      steps of each η (every step is saved).
    - `rnn_state_dim`, `rnn_scale`, `rnn_teacher`, `rnn_train_len`: the dense RNN student,
      its init scale and its impulse loss; `rnn_lrs`, `rnn_t1`: its step sizes (empty: no
      RNN case) and end time.
    - `rtol`: the flows' tolerance (Tsit5, PID controller, atol = rtol × 1e-3).
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
    rnn_state_dim: int = 6
    rnn_scale: float = 0.01
    rnn_teacher: str = "short"
    rnn_train_len: int = 5
    rnn_lrs: tuple[float, ...] = may_be_empty((0.044, 0.046, 0.048))
    rnn_t1: float = 20.0
    rtol: float = 1e-6
    diverge_above: float = 1e3

    def check(self):
        self.require_positive("depth", "width", "strengths", "small_scale", "large_scale")
        self.require_positive("lrs", "t1", "rtol", "diverge_above")
        self.require_positive("rnn_state_dim", "rnn_scale", "rnn_train_len", "rnn_lrs", "rnn_t1")
        if self.depth < 2:
            raise ValueError(f"`depth` must be at least 2; got {self.depth}.")
        if len(self.strengths) != self.width:
            raise ValueError(
                f"`strengths` must have `width` = {self.width} entries; got {self.strengths!r}."
            )
        if self.rnn_teacher not in _common.TEACHERS:
            raise ValueError(
                f"`rnn_teacher` must be one of {tuple(_common.TEACHERS)}; got {self.rnn_teacher!r}."
            )
        for name, t1 in (("lrs", "t1"), ("rnn_lrs", "rnn_t1")):
            lrs = getattr(self, name)
            if len(set(lrs)) != len(lrs):
                raise ValueError(f"`{name}` must be distinct; got {lrs!r}.")
            if lrs and max(lrs) * 10 > getattr(self, t1):
                raise ValueError(f"`{t1}` must be at least 10 steps of the largest of `{name}`.")
        if self.rtol >= 1:
            raise ValueError(f"`rtol` must be below 1; got {self.rtol}.")


SMALL = EdgeOfStabilityConfig(seeds=4, t1=20.0, rnn_lrs=(0.046,), rnn_t1=10.0)


@dataclasses.dataclass(frozen=True)
class Case:
    """One model of the experiment: its loss, a per-seed init, its step sizes, end time
    and root key."""

    name: str
    loss_fn: Callable
    init: Callable
    lrs: tuple[float, ...]
    t1: float
    key: jax.Array

    def store(self, kind: str, lr: float | None = None) -> str:
        """The name of a store: `kind` is flow, lr (gradient descent) or modified_lr."""
        return f"{self.name}_{kind}" + ("" if lr is None else f"{lr:g}")

    def steps(self, lr: float) -> np.ndarray:
        """Every step of gradient descent at step `lr`: t = nη, n = 0, …, round(t1/η)."""
        return lr * np.arange(int(round(self.t1 / lr)) + 1)


def deep_linear_loss(strengths):
    """$L(W_1, \\ldots, W_D) = \\frac12 \\|W_D \\cdots W_1 - \\operatorname{diag}(s)\\|_F^2$."""
    target = jnp.diag(jnp.asarray(strengths, dtype=jnp.result_type(float)))

    def loss_fn(layers):
        product = functools.reduce(lambda p, w: w @ p, layers)
        return 0.5 * jnp.sum((product - target) ** 2)

    return loss_fn


def init_layers(key, config: EdgeOfStabilityConfig) -> list:
    """Small Gaussian first layers, large scaled-orthogonal last ones (see the module)."""
    dtype, h = jnp.result_type(float), config.width
    return [
        config.small_scale * jax.random.normal(k, (h, h), dtype) / h**0.5
        if i < config.depth // 2
        else config.large_scale * jax.random.orthogonal(k, h, dtype=dtype)
        for i, k in enumerate(jax.random.split(key, config.depth))
    ]


def cases(config: EdgeOfStabilityConfig) -> tuple[Case, ...]:
    """The deep linear network, and the RNN unless `rnn_lrs` is empty."""
    deep = Case(
        "deep_linear",
        deep_linear_loss(config.strengths),
        lambda key: init_layers(key, config),
        config.lrs,
        config.t1,
        _common.root_key(config.seed),
    )
    if not config.rnn_lrs:
        return (deep,)
    model = DenseRNN(config.rnn_state_dim)
    loss_fn = ImpulseLoss(_common.teacher(config.rnn_teacher), config.rnn_train_len)
    rnn = Case(
        "rnn",
        loss_fn.bind(model),
        lambda key: model.init(key=key, scale=config.rnn_scale),
        config.rnn_lrs,
        config.rnn_t1,
        _common.root_key(config.seed, 1),
    )
    return deep, rnn


def sweeps(config: EdgeOfStabilityConfig) -> dict[str, Sweep]:
    return {k: v for case in cases(config) for k, v in case_sweeps(case, config).items()}


def case_sweeps(case: Case, config: EdgeOfStabilityConfig) -> dict[str, Sweep]:
    loss_fn, top = case.loss_fn, sharpness_metric(case.loss_fn)
    metrics = {"loss": lambda t, p: loss_fn(p), "theta": lambda t, p: ravel_pytree(p)[0]}
    with_sharpness = dict(metrics, sharpness=lambda t, p: top(t, p)[0])
    flow_args = dict(stepsize_controller=_common.pid(config.rtol), max_steps=1_000_000)

    def sweep(axes, method, times, saved=metrics, looped=()):
        def setup(point, key):
            return loss_fn, case.init(key), method

        save, stop = Save(times, metrics=saved), Stop(loss_above=config.diverge_above)
        return Sweep(axes, config.seeds, setup, case.key, save, stop, looped=looped)

    # One flow, saved at every step of every η (it does not depend on η). The flows'
    # sharpness is computed at the end only, in `analyse` (a save metric costs its
    # compilation in the solver).
    union = np.unique(np.concatenate([case.steps(lr) for lr in case.lrs]))
    flow = GradientFlow(union[-1], **flow_args)
    out = {case.store("flow"): sweep({"algorithm": ("gf",)}, flow, union)}
    for lr in case.lrs:
        ts, axes = case.steps(lr), {"lr": (lr,)}
        gd, mf = GradientDescent(lr, len(ts) - 1), ModifiedFlow(lr, ts[-1], **flow_args)
        out[case.store("lr", lr)] = sweep(axes, gd, ts, with_sharpness, ("lr",))
        out[case.store("modified_lr", lr)] = sweep(axes, mf, ts, metrics, ("lr",))
    return out


def crossing(ratio):
    """Index of the first save with λη/2 ≥ 1 along `time`, per seed; -1 where never."""
    reached = np.asarray(ratio >= 1.0)
    return np.where(reached.any(-1), reached.argmax(-1), -1)


def loss_rises(loss) -> np.ndarray:
    """Steps at which the loss rises by more than 1 % from above 1e-8 (not rounding at a
    minimum), along the last axis."""
    return np.sum((loss[..., 1:] > 1.01 * loss[..., :-1]) & (loss[..., :-1] > 1e-8), axis=-1)


def per_lr(data, case: Case, lr: float) -> dict:
    """The findings for one step size η, from the sweeps' Datasets (seeds that failed,
    e.g. diverged, are NaN and excluded from the medians)."""
    gd = data[case.store("lr", lr)].sel(lr=lr)
    ts = gd.time.values
    flows = {
        "gf": data[case.store("flow")].sel(algorithm="gf").sel(time=ts, method="nearest"),
        "mf": data[case.store("modified_lr", lr)].sel(lr=lr),
    }
    both = (_common.ok(gd) & _common.ok(flows["gf"]) & _common.ok(flows["mf"])).values

    def values(ds, name):  # (seed, time, ...)
        return ds[name].transpose("seed", "time", ...).values

    def only(mask, x):  # NaN for the seeds outside `mask`
        return np.where(mask, x, np.nan)

    sharp, loss, theta = (values(gd, name) for name in ("sharpness", "loss", "theta"))
    ratio = sharp * lr / 2
    idx = crossing(ratio)
    reached = both & (idx >= 0)
    i = np.where(reached, idx, 0)[:, None]  # the crossing's save, per seed

    def at_crossing(x):
        return median(only(reached, np.take_along_axis(x, i, 1)[:, 0]))

    def crossing_and_end(x):
        return {"at_crossing": at_crossing(x), "at_end": median(only(reached, x[:, -1]))}

    far, loss_ratio = {}, {}
    with np.errstate(divide="ignore", invalid="ignore"):  # seeds that did not reach: NaN
        for f, ds in flows.items():
            th = values(ds, "theta")
            rel = np.linalg.norm(theta - th, axis=-1) / np.linalg.norm(th, axis=-1)
            before = np.where(np.arange(len(ts)) < i, rel, -np.inf).max(-1)
            far[f] = {"before": median(only(reached & (idx > 0), before)), **crossing_and_end(rel)}
            loss_ratio[f] = crossing_and_end(loss / values(ds, "loss"))
    # The mean over one period of the oscillation (two steps), median over the saves after
    # the crossing; the crossing's own value where it is the last save.
    periods = np.where(np.arange(len(ts) - 1) >= i, 0.5 * (ratio[:, 1:] + ratio[:, :-1]), np.nan)
    settled = np.where(idx == len(ts) - 1, ratio[:, -1], _common.nanmedian(periods, 1))
    return {
        "lr": lr,
        "threshold": 2 / lr,
        "initial_sharpness": median(only(both, sharp[:, 0])),
        "gd_final_sharpness": median(only(both, sharp[:, -1])),
        "reached": int(reached.sum()),
        "crossing_time": at_crossing(np.broadcast_to(ts, loss.shape)),
        "settled_ratio": _common.quartiles(only(reached, settled)),
        "loss_rises": median(only(reached, loss_rises(loss))),
        "steps": len(ts) - 1,
        "relative_distance": far,
        "loss_ratio": loss_ratio,
        "gd_final_loss": median(only(both, loss[:, -1])),
        "gf_final_loss": median(only(both, flows["gf"].loss.values[:, -1])),
        "excluded": int((~both).sum()),
        "failed": int((~_common.ok(gd)).sum()),
        "diverged": int((gd.result == int(Result.diverged)).sum()),
    }


def flow_final_sharpness(data, case: Case) -> np.ndarray:
    """The sharpness at the end of the flow, per seed (NaN for failed seeds)."""
    flow = data[case.store("flow")].sel(algorithm="gf")
    unravel = ravel_pytree(case.init(jax.random.key(0)))[1]
    theta = flow.theta.isel(time=-1).transpose("seed", ...).values
    top = jax.vmap(lambda th: hessian_eigenvalues(case.loss_fn, unravel(th))[0])(
        jnp.asarray(theta, jnp.result_type(float))
    )
    return np.where(_common.ok(flow).values, np.asarray(top, np.float64), np.nan)


def case_summary(data, case: Case) -> dict:
    rows = {f"lr{lr:g}": per_lr(data, case, lr) for lr in case.lrs}
    flow_failed = int((~_common.ok(data[case.store("flow")].sel(algorithm="gf"))).sum())
    return {
        "by_lr": rows,
        "gf_final_sharpness": median(flow_final_sharpness(data, case)),
        "flow_failed": flow_failed,
        "failed": sum(r["failed"] for r in rows.values()) + flow_failed,
    }


def headline(name: str, summary: dict, seeds: int) -> str:
    rows = list(summary["by_lr"].values())
    ratios = ", ".join(
        f"η={r['lr']:g}: " + "{median:.3f} [{q25:.3f}, {q75:.3f}]".format(**r["settled_ratio"])
        for r in rows
    )
    return (
        f"{name.replace('_', ' ')}: sharpness {rows[0]['initial_sharpness']:.1f} at init "
        f"reaches 2/η in {sum(r['reached'] for r in rows)}/{len(rows) * seeds} runs; median "
        f"λη/2 after: {ratios} (quartiles); the flow ends at {summary['gf_final_sharpness']:.1f}"
    )


def analyse(data, config: EdgeOfStabilityConfig) -> Summary:
    values = {case.name: case_summary(data, case) for case in cases(config)}
    parts = [headline(name, v, config.seeds) for name, v in values.items()]
    values["failed"] = sum(v["failed"] for v in values.values())
    return Summary("; ".join(parts), values)


EXPERIMENT = Experiment(
    name="edge_of_stability",
    claim=(
        "Gradient descent at a finite step sharpens progressively until the sharpness "
        "reaches 2/η, then holds it there, its loss no longer decreasing monotonically: "
        "there it leaves the gradient flow and the modified flow, which go on to a sharper "
        "minimum."
    ),
    config_type=EdgeOfStabilityConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
)
