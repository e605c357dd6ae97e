r"""Edge of stability: gradient descent at a finite step η sharpens until the sharpness reaches
$2/\eta$ and holds it there, where it leaves the gradient flow and the modified flow. The
science, what each config field sets, the figure and its numbers are on its docs page,
docs/experiments/edge_of_stability.md.

Two cases, `deep_linear` and `rnn`; per η, gradient descent, the gradient flow and the modified
flow ([`rnnflow.ModifiedFlow`][]) start from the same parameters, per seed. Stores, per case
`C`: `C_flow` (axes algorithm = gf, seed, time), saved at every step of every η; per η,
`C_lr<η>` (axes lr, seed, time), gradient descent at every step: loss, sharpness
([`rnnflow.sharpness_metric`][]) and the flattened parameters θ; and `C_modified_lr<η>`, the
modified flow at the same times: loss and θ.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import rnnflow as rf

from . import _common, _stats
from ._stats import median
from .base import Experiment, ExperimentConfig, may_be_empty
from .plots import edge_of_stability as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class EdgeOfStabilityConfig(ExperimentConfig):
    """What each field sets: see the docs page, docs/experiments/edge_of_stability.md."""

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
        _common.check_teachers(self, "rnn_teacher")
        if self.depth < 2:
            raise ValueError(f"`depth` must be at least 2; got {self.depth}.")
        if len(self.strengths) != self.width:
            raise ValueError(
                f"`strengths` needs `width` = {self.width} entries; got {self.strengths!r}."
            )
        if self.rtol >= 1:
            raise ValueError(f"`rtol` must be below 1; got {self.rtol}.")
        for name, t1 in (("lrs", "t1"), ("rnn_lrs", "rnn_t1")):
            lrs = getattr(self, name)
            if len(set(lrs)) != len(lrs):
                raise ValueError(f"`{name}` must be distinct; got {lrs!r}.")
            if lrs and max(lrs) * 10 > getattr(self, t1):
                raise ValueError(f"`{t1}` must be at least 10 steps of the largest of `{name}`.")


# Two step sizes: each compiles a program for its descent and one for its modified flow.
SMALL = EdgeOfStabilityConfig(seeds=4, lrs=(0.12, 0.14), t1=20.0, rnn_lrs=(0.046,), rnn_t1=10.0)


@dataclasses.dataclass(frozen=True)
class Case:
    """One model: its loss, a per-seed init `init(key)`, step sizes, end time, root key."""

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


def cases(config: EdgeOfStabilityConfig) -> tuple[Case, ...]:
    """The deep linear network, and the RNN unless `rnn_lrs` is empty."""
    c, dtype, h = config, jnp.result_type(float), config.width
    target = jnp.diag(jnp.asarray(c.strengths, dtype))

    def deep_loss(layers):  # ½‖W_D ⋯ W_1 − diag(s)‖²_F
        return 0.5 * jnp.sum((functools.reduce(lambda p, w: w @ p, layers) - target) ** 2)

    def deep_init(key):  # small Gaussian first layers, large scaled-orthogonal last ones
        return [
            c.small_scale * jax.random.normal(k, (h, h), dtype) / h**0.5
            if i < c.depth // 2
            else c.large_scale * jax.random.orthogonal(k, h, dtype=dtype)
            for i, k in enumerate(jax.random.split(key, c.depth))
        ]

    model = rf.DenseRNN(c.rnn_state_dim)
    rnn_loss = rf.ImpulseLoss(_common.teacher(c.rnn_teacher), c.rnn_train_len).bind(model)

    def rnn_init(key):
        return model.init(key=key, scale=c.rnn_scale)

    deep = Case("deep_linear", deep_loss, deep_init, c.lrs, c.t1, _common.root_key(c.seed))
    rnn = Case("rnn", rnn_loss, rnn_init, c.rnn_lrs, c.rnn_t1, _common.root_key(c.seed, 1))
    return (deep, rnn) if c.rnn_lrs else (deep,)


def sweeps(config: EdgeOfStabilityConfig) -> dict[str, rf.Sweep]:
    return {name: s for case in cases(config) for name, s in case_sweeps(case, config).items()}


def case_sweeps(case: Case, config: EdgeOfStabilityConfig) -> dict[str, rf.Sweep]:
    """One flow, saved at every step of every η (it does not depend on η); per η, gradient descent
    with its sharpness, and the modified flow. The flows' sharpness is computed at the end only,
    in `analyse` (a save metric costs its compilation in the solver)."""
    loss_fn, top = case.loss_fn, rf.sharpness_metric(case.loss_fn)
    metrics = {"loss": lambda t, p: loss_fn(p), "theta": lambda t, p: ravel_pytree(p)[0]}
    sharp = metrics | {"sharpness": lambda t, p: top(t, p)[0]}
    flow_args = dict(stepsize_controller=_common.pid(config.rtol), max_steps=1_000_000)

    def sweep(name, axes, method, times, saved=metrics):
        def setup(point, key):
            return loss_fn, case.init(key), method

        save, stop = rf.Save(times, metrics=saved), rf.Stop(loss_above=config.diverge_above)
        looped = ("lr",) if "lr" in axes else ()
        return name, rf.Sweep(axes, config.seeds, setup, case.key, save, stop, looped=looped)

    union = np.unique(np.concatenate([case.steps(lr) for lr in case.lrs]))
    gf = rf.GradientFlow(union[-1], **flow_args)
    out = [sweep(case.store("flow"), {"algorithm": ("gf",)}, gf, union)]
    for lr in case.lrs:
        ts, axes = case.steps(lr), {"lr": (lr,)}
        gd, mf = rf.GradientDescent(lr, len(ts) - 1), rf.ModifiedFlow(lr, ts[-1], **flow_args)
        out += [sweep(case.store("lr", lr), axes, gd, ts, sharp)]
        out += [sweep(case.store("modified_lr", lr), axes, mf, ts)]
    return dict(out)


def crossing(ratio):
    """Index of the first save with λη/2 ≥ 1 along `time`, per seed; -1 where never."""
    reached = np.asarray(ratio >= 1.0)
    return np.where(reached.any(-1), reached.argmax(-1), -1)


def loss_rises(loss) -> np.ndarray:
    """Steps at which the loss rises by more than 1 % from above 1e-8 (not rounding at a
    minimum), along the last axis."""
    return np.sum((loss[..., 1:] > 1.01 * loss[..., :-1]) & (loss[..., :-1] > 1e-8), axis=-1)


def flow(data, case: Case):
    """The gradient flow's Dataset, over (seed, time, ...)."""
    return data[case.store("flow")].sel(algorithm="gf").transpose("seed", "time", ...)


def per_lr(data, case: Case, lr: float) -> dict:
    """The findings for one step size η, from the sweeps' Datasets (seeds that failed, e.g.
    diverged, are NaN and excluded from the medians)."""
    gd = data[case.store("lr", lr)].sel(lr=lr).transpose("seed", "time", ...)
    ts = gd.time.values
    flows = {  # (seed, time, ...) as gradient descent
        "gf": flow(data, case).sel(time=ts, method="nearest"),
        "mf": data[case.store("modified_lr", lr)].sel(lr=lr).transpose("seed", "time", ...),
    }
    both = (_stats.ok(gd) & _stats.ok(flows["gf"]) & _stats.ok(flows["mf"])).values
    sharp, loss, theta = gd.sharpness.values, gd.loss.values, gd.theta.values
    ratio = sharp * lr / 2
    idx = crossing(ratio)
    reached = both & (idx >= 0)
    i = np.where(reached, idx, 0)[:, None]  # the crossing's save, per seed
    crossing_time = np.where(reached, ts[i[:, 0]], np.nan)

    def med(x, mask=reached):  # the median over the seeds in `mask`
        return median(np.where(mask, x, np.nan))

    def crossing_and_end(x):
        return {"at_crossing": med(np.take_along_axis(x, i, 1)[:, 0]), "at_end": med(x[:, -1])}

    far, loss_ratio = {}, {}
    with np.errstate(divide="ignore", invalid="ignore"):  # seeds that did not reach: NaN
        for f, ds in flows.items():
            th = ds.theta.values
            rel = np.linalg.norm(theta - th, axis=-1) / np.linalg.norm(th, axis=-1)
            before = np.where(np.arange(len(ts)) < i, rel, -np.inf).max(-1)
            far[f] = {"before": med(before, reached & (idx > 0)), **crossing_and_end(rel)}
            loss_ratio[f] = crossing_and_end(loss / ds.loss.values)
    # The mean over one period of the oscillation (two steps), median over the saves after the
    # crossing; the crossing's own value where it is the last save.
    periods = np.where(np.arange(len(ts) - 1) >= i, 0.5 * (ratio[:, 1:] + ratio[:, :-1]), np.nan)
    settled = np.where(idx == len(ts) - 1, ratio[:, -1], _stats.nanmedian(periods, 1))
    shown = int(np.argmax(both)) if both.any() else -1
    return {
        "lr": lr,
        "threshold": 2 / lr,
        "initial_sharpness": med(sharp[:, 0], both),
        "gd_final_sharpness": med(sharp[:, -1], both),
        "reached": int(reached.sum()),
        "crossing_time": median(crossing_time),
        "settled_ratio": _stats.quartiles(np.where(reached, settled, np.nan)),
        "loss_rises": med(loss_rises(loss)),
        "steps": len(ts) - 1,
        "relative_distance": far,
        "loss_ratio": loss_ratio,
        "gd_final_loss": med(loss[:, -1], both),
        "gf_final_loss": med(flows["gf"].loss.values[:, -1], both),
        "excluded": int((~both).sum()),
        "failed": int((~_stats.ok(gd)).sum()),
        "diverged": int((gd.result == int(rf.Result.diverged)).sum()),
        "shown": {"seed": shown, "crossing_time": crossing_time[shown] if shown >= 0 else np.nan},
    }


def flow_final_sharpness(data, case: Case) -> np.ndarray:
    """The sharpness at the end of the flow, per seed (NaN for failed seeds)."""
    unravel = ravel_pytree(case.init(jax.random.key(0)))[1]
    end = flow(data, case).isel(time=-1)
    theta = jnp.asarray(end.theta.values, jnp.result_type(float))
    top = jax.vmap(lambda th: rf.hessian_eigenvalues(case.loss_fn, unravel(th))[0])(theta)
    return np.where(_stats.ok(end).values, np.asarray(top, np.float64), np.nan)


def analyse(data, config: EdgeOfStabilityConfig) -> Summary:
    values, parts = {}, []
    for case in cases(config):
        rows = [per_lr(data, case, lr) for lr in case.lrs]
        flow_failed = int((~_stats.ok(data[case.store("flow")])).sum())
        gf = median(flow_final_sharpness(data, case))
        values[case.name] = {
            "by_lr": {f"lr{r['lr']:g}": r for r in rows},
            "gf_final_sharpness": gf,
            "flow_failed": flow_failed,
            "failed": sum(r["failed"] for r in rows) + flow_failed,
        }
        ratios = ", ".join(
            f"η={r['lr']:g}: " + "{median:.3f} [{q25:.3f}, {q75:.3f}]".format(**r["settled_ratio"])
            for r in rows
        )
        parts.append(
            f"{case.name.replace('_', ' ')}: sharpness {rows[0]['initial_sharpness']:.1f} at init "
            f"reaches 2/η in {sum(r['reached'] for r in rows)}/{len(rows) * config.seeds} runs; "
            f"median λη/2 after: {ratios} (quartiles); the flow ends at {gf:.1f}"
        )
    values["failed"] = sum(v["failed"] for v in values.values())
    return Summary("; ".join(parts), values)


EXPERIMENT = Experiment(
    name="edge_of_stability",
    claim=(
        "Gradient descent at a finite step sharpens progressively until the sharpness reaches "
        "2/η, then holds it there, its loss no longer decreasing monotonically: there it leaves "
        "the gradient flow and the modified flow, which go on to a sharper minimum."
    ),
    config_type=EdgeOfStabilityConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=37,
)
