r"""Feedback alignment against backpropagation in overparameterized two-layer networks.

Networks $\hat y = W_2 σ(W_1 x)/\sqrt p$ of width $p$ (σ linear or tanh) fit $n$ random
examples ($n$ below the input dimension: even the linear network can interpolate), by
backpropagation ($-\nabla L$) and by feedback alignment ([`rnnflow.FeedbackAlignment`][]: a
fixed random $B$, drawn per seed, in place of $W_2^\top$), with weight decay λ on $W_2$,
by gradient descent on one time axis ($t = $ steps × η). Song, Xu and Lafferty (2021)
prove for such networks that the error converges to zero exponentially fast under both,
and that the weights align with $B$ only with regularization.

- `train` (axes activation × width × rule ∈ {fa, bp} × reg, seeds): loss, training error,
  alignment $\cos∠(\mathrm{vec}\,W_2^\top, \mathrm{vec}\,B)$ and Lillicrap et al.'s
  $\cos∠(Be, W_2^\top e)$ over time. For backpropagation $B$ is a control: the same draw,
  unused by training.
- `flow`, `steps` (axes `algorithm` ∈ {gd, modified} × `lr`; FA at `step_width` and
  `step_reg`): the rule's flow (tight tolerance), and
  descent and the modified flow $F - \frac η2 DF\,F$ at each of `lrs`, saving the network's
  outputs on the training inputs: descent is $O(η)$ from the flow and $O(η^2)$ from the
  modified flow, in function space.
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import rnnflow as rf

from . import _common, _stats
from ._stats import final, fit_line, number, numbers, seed_median
from .base import Experiment, ExperimentConfig
from .plots import feedback_alignment as _plot
from .summary import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeedbackAlignmentConfig(ExperimentConfig):
    """- `activations`, `widths`, `regs`: the networks (σ, p) and weight decays λ swept.
    - `num_examples`, `in_dim`, `out_dim`: the data, n < d inputs N(0, 1), targets N(0, 1).
    - `lr`, `t1`, `num_saves`: the descent of the `train` sweep, saved at linear times.
    - `step_width`, `step_reg`, `lrs`, `step_t1`, `rtol`: the small-step sweeps; every save
      time (`step_t1` / 4 apart) must be a whole number of steps of every η; the flows'
      PID tolerance (atol = rtol × 1e-3): 1e-10 wants float64 (`--float64`).
    """

    experiment = "feedback_alignment"
    seeds: int = 16
    activations: tuple[str, ...] = ("linear", "tanh")
    widths: tuple[int, ...] = (64, 256, 1024)
    regs: tuple[float, ...] = (0.0, 0.01, 0.1)
    num_examples: int = 10
    in_dim: int = 20
    out_dim: int = 1
    lr: float = 0.1
    t1: float = 300.0
    num_saves: int = 61
    step_width: int = 256
    step_reg: float = 0.01
    lrs: tuple[float, ...] = (0.2, 0.1, 0.05, 0.025)
    step_t1: float = 4.0
    rtol: float = 1e-10

    def check(self):
        _common.check_among(self, "activations", ("linear", "tanh"))
        self.require_positive("widths", "num_examples", "in_dim", "out_dim", "step_width")
        self.require_positive("lr", "t1", "lrs", "step_t1", "rtol")
        if any(r < 0 for r in self.regs + (self.step_reg,)):
            raise ValueError("`regs` and `step_reg` must be non-negative.")
        if self.num_examples >= self.in_dim:
            raise ValueError("`num_examples` must be below `in_dim` (an interpolating fit).")
        _common.check_steps(self)
        steps = [self.step_t1 / 4 / lr for lr in self.lrs] + [self.t1 / self.lr]
        if any(abs(s - round(s)) > 1e-9 * s for s in steps):
            raise ValueError("every save time must be a whole number of steps of each lr.")


# float32 (what `rnnflow reproduce` runs) resolves the small-step slopes at rtol 1e-6. The
# tanh network alone: each activation compiles a program per rule, and one per algorithm for
# all the step sizes.
SMALL = FeedbackAlignmentConfig(
    seeds=2, activations=("tanh",), widths=(32,), regs=(0.0, 0.1), t1=100.0, num_saves=21,
    step_width=32, lrs=(0.2, 0.1, 0.05), rtol=1e-6,
)  # fmt: skip


class Watched(eqx.Module):
    """The FA rule (or, with `backprop`, the gradient of its loss), saving the rule's
    metrics and the outputs on the training inputs."""

    rule: rf.FeedbackAlignment
    backprop: bool = eqx.field(static=True, default=False)

    def __call__(self, params):
        return self.rule(params)

    @property
    def direction(self):  # no direction: backpropagation trains the loss itself
        return None if self.backprop else self.rule.direction

    @property
    def check(self):
        return self.rule.check

    def default_metrics(self) -> dict:
        outputs = {"outputs": lambda t, p: self.rule.loss.forward(p)[2]}
        return {**self.rule.default_metrics(), **outputs}


def data(config: FeedbackAlignmentConfig):
    """The examples: inputs and targets N(0, 1), from the root seed (away from the seeds')."""
    kx, ky = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1))
    dtype = jnp.result_type(float)
    x = jax.random.normal(kx, (config.num_examples, config.in_dim), dtype)
    return x, jax.random.normal(ky, (config.num_examples, config.out_dim), dtype)


def sweeps(config: FeedbackAlignmentConfig) -> dict[str, rf.Sweep]:
    x, y = data(config)

    def problem(point, key, width, reg):
        kp, kb = jax.random.split(key)
        loss = rf.TwoLayerLoss(x, y, reg=reg, activation=point["activation"])
        rule = rf.FeedbackAlignment(loss, jax.random.normal(kb, (width, config.out_dim), x.dtype))
        return rule, loss.init(key=kp, width=width)

    def train_setup(point, key):
        rule, params = problem(point, key, point["width"], point["reg"])
        method = rf.GradientDescent(config.lr, round(config.t1 / config.lr))
        return Watched(rule, backprop=point["rule"] == "bp"), params, method

    def step_setup(point, key):
        rule, params = problem(point, key, config.step_width, config.step_reg)
        lr, t1, pid = point.get("lr"), config.step_t1, _common.pid(config.rtol)
        if "lr" not in point:
            method = rf.GradientFlow(t1, stepsize_controller=pid, solver=diffrax.Dopri8())
        elif point["algorithm"] == "gd":  # each η its own t1/η steps, all η in one program
            method = rf.GradientDescent(lr, t1=t1, max_steps=round(t1 / min(config.lrs)))
        else:
            method = rf.ModifiedFlow(lr, t1, stepsize_controller=pid, solver=diffrax.Dopri8())
        return Watched(rule), params, method

    key = _common.root_key(config.seed)  # seed s: the same init and B in every sweep
    acts = {"activation": config.activations}
    train = {**acts, "width": config.widths, "rule": ("fa", "bp"), "reg": config.regs}
    steps = {**acts, "algorithm": ("gd", "modified"), "lr": config.lrs}
    step_save = rf.Save(num=5)
    return {
        "train": rf.Sweep(train, config.seeds, train_setup, key, rf.Save(num=config.num_saves)),
        "flow": rf.Sweep(acts, config.seeds, step_setup, key, step_save),
        "steps": rf.Sweep(steps, config.seeds, step_setup, key, step_save),
    }


def rates(ds):
    """The exponential rate of the training error, −d log(error)/dt, fitted over the saves
    after the first where the error is above 1e-12 of its start (the fit's floor)."""
    error = ds.error.where(_stats.ok(ds))
    log = np.log(error.where(error > 1e-12 * error.isel(time=0)))
    return -fit_line(ds.t.isel(time=slice(1, None)), log.isel(time=slice(1, None)), "time")[0]


def gaps(data):
    """The largest distance over the saves between descent's network outputs on the
    training inputs and the flow's (`to_flow`) or the modified flow's at the same η
    (`to_modified`), per activation, η and seed. Save times are matched by number: steps
    × η and the flow's times differ by rounding."""

    def outputs(name):
        values = data[name].outputs
        return values.assign_coords(time=np.arange(values.sizes["time"]))

    steps = outputs("steps")
    gd = steps.sel(algorithm="gd")

    def gap(other):
        diff = ((gd - other) ** 2).sum([d for d in gd.dims if d.startswith("outputs_")])
        return np.sqrt(diff).max("time")

    return gap(outputs("flow")), gap(steps.sel(algorithm="modified"))


def analyse(data, config: FeedbackAlignmentConfig) -> Summary:
    ds, rules, acts = data["train"], ("fa", "bp"), config.activations
    lo, hi = min(config.regs), max(config.regs)
    align = seed_median(final(ds, "alignment"))
    drop = seed_median((final(ds, "error") / ds.error.isel(time=0)).sel(reg=lo))
    rate = seed_median(rates(ds.sel(reg=lo)))
    to_flow, to_modified = gaps(data)
    log_lr = np.log(xr.DataArray(list(config.lrs), dims="lr", coords={"lr": list(config.lrs)}))

    def slope(d, act):
        return number(seed_median(fit_line(log_lr, np.log(d.sel(activation=act)), "lr")[0]))

    def by_rule(values, act):  # one number per width
        return {r: numbers(values.sel(activation=act, rule=r)) for r in rules}

    def per_reg(values, act, rule):
        return {
            f"reg_{g:g}": numbers(values.sel(activation=act, rule=rule, reg=g)) for g in config.regs
        }

    values = {  # at the smallest λ: the error's drop by t1 and its rate
        "alignment": {a: {r: per_reg(align, a, r) for r in rules} for a in acts},
        "error_drop": {a: by_rule(drop, a) for a in acts},
        "rate": {a: by_rule(rate, a) for a in acts},
        "small_step": {  # slopes, and the median distances by η that they fit
            a: {
                "gd_flow_slope": slope(to_flow, a),
                "gd_modified_slope": slope(to_modified, a),
                "to_flow": numbers(seed_median(to_flow.sel(activation=a))),
                "to_modified": numbers(seed_median(to_modified.sel(activation=a))),
            }
            for a in acts
        },
        "failed": int(sum((~_stats.ok(d)).sum() for d in data.values())),
    }
    fa = {g: values["alignment"][acts[-1]]["fa"][f"reg_{g:g}"][-1] for g in (lo, hi)}
    ss = values["small_step"][acts[-1]]
    headline = (
        f"FA {acts[-1]}, p={max(config.widths)}: alignment {fa[lo]:.2f} at λ={lo:g}, "
        f"{fa[hi]:.2f} at λ={hi:g}; descent vs flow slope {ss['gd_flow_slope']:.2f}, "
        f"vs modified flow {ss['gd_modified_slope']:.2f}"
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="feedback_alignment",
    claim=(
        "Feedback alignment drives the training error of overparameterized two-layer "
        "networks to zero exponentially fast, as backpropagation does, and its forward "
        "weights align with the random feedback weights only with regularization (Song, "
        "Xu & Lafferty, 2021)."
    ),
    config_type=FeedbackAlignmentConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=18,
)
