r"""Overparameterization permits bad solutions: a shift register fits the training lags
exactly and does not extrapolate, while gradient descent from small initialization on the
same student size fits and extrapolates. Fact 4 on the science page.

With state dimension $d \ge k$, the shift register

$$A = \text{down-shift } (A_{i+1,i} = 1),\quad B = e_1,\quad
C = (\hat h_0, \dots, \hat h_{k-1}, c_k, \dots, c_{d-1})$$

has $h_i = C_i$ for $i < d$ and $h_i = 0$ for $i \ge d$ ($A$ is nilpotent): zero training
loss for any free part $c_k, \dots, c_{d-1}$, and an extrapolation that is whatever that
free part says. Three free parts are built (no training): `zeros`, `random` (i.i.d.
$N(0, \hat h_k^2)$, one draw per seed) and `teacher` ($c_i = \hat h_i$, the best a shift
register can do, still $h_i = 0$ for $i \ge d$).

Against them, one sweep (store `gd`, axis `init_scale`): dense students of the same size
$d$ trained by gradient descent from small unbalanced random initialization. The step must
be small: the balanced rank-1 solution has sharpness ≈ 46 for $d = 20$, $k = 5$,
$\hat h_i = 0.9^i$, so GD with $\eta > 2/46$ cannot converge to it (see `small_step`);
`lr` = 0.01 is well inside. Saved at the start and the end: training loss, relative
extrapolation error to `horizon`, effective state dimension, relative imbalance and the
impulse response $h_i$, $i <$ `horizon`.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._engine.methods import GradientDescent
from .._engine.trajectory import Result, Save, Stop
from .._rnn.diagnostics import effective_dim
from .._rnn.losses import ImpulseLoss, extrapolation_error
from .._rnn.models import DenseRNN, RNNParams
from .._sweeps.sweep import Sweep
from . import _common
from ._common import final, number, seed_median
from .base import Experiment, ExperimentConfig
from .plots import counterexample as _plot
from .summary import Summary

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
    seeds: int = 1000
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


def metrics(model, teacher, config: CounterexampleConfig) -> dict:
    k, q = config.train_len, config.horizon
    return {
        "loss": lambda t, p: ImpulseLoss(teacher, k)(model, p),
        "extrapolation": lambda t, p: extrapolation_error(
            model, p, teacher, train_len=k, horizon=q, relative=True
        ),
        "dim": lambda t, p: effective_dim(model.impulse_response(p, q)),
        "relative_imbalance": lambda t, p: model.relative_imbalance(p),
        "impulse": lambda t, p: model.impulse_response(p, q)[:, 0, 0],
    }


def sweeps(config: CounterexampleConfig) -> dict[str, Sweep]:
    model, teacher = DenseRNN(config.state_dim), _common.teacher(config.teacher)
    loss_fn = ImpulseLoss(teacher, config.train_len).bind(model)
    method = GradientDescent(config.lr, int(round(config.t1 / config.lr)))

    def setup(point, key):
        return loss_fn, model.init(key=key, scale=point["init_scale"]), method

    save = Save(num=2, metrics=metrics(model, teacher, config))
    stop = Stop(loss_below=config.loss_below)
    axes = {"init_scale": (config.scale,)}
    key = _common.root_key(config.seed)
    return {"gd": Sweep(axes, config.seeds, setup, key, save, stop)}


def registers(config: CounterexampleConfig) -> dict[str, dict[str, np.ndarray]]:
    """Free part → the measures of its shift register for every seed: loss,
    extrapolation, dim, relative_imbalance and impulse (seeds first)."""
    model, teacher = DenseRNN(config.state_dim), _common.teacher(config.teacher)
    k, d = config.train_len, config.state_dim
    target = teacher.impulse_response(config.horizon)[:, 0, 0]
    keys = jax.random.split(_common.root_key(config.seed, 1), config.seeds)
    free = {
        "zeros": jnp.zeros((config.seeds, d - k)),
        "random": jax.vmap(lambda key: jnp.abs(target[k]) * jax.random.normal(key, (d - k,)))(keys),
        "teacher": jnp.broadcast_to(target[k:d], (config.seeds, d - k)),
    }
    measure = jax.jit(
        jax.vmap(
            lambda f: {
                name: fn(0.0, shift_register(target[:k], f))
                for name, fn in metrics(model, teacher, config).items()
            }
        )
    )
    return {name: jax.tree.map(np.asarray, measure(f)) for name, f in free.items()}


def analyse(data, config: CounterexampleConfig) -> Summary:
    gd = data["gd"].isel(init_scale=0)
    values = {
        name: {
            "loss_max": float(np.max(r["loss"])),
            "extrapolation": float(_common.nanmedian(r["extrapolation"], None)),
            "dim": float(_common.nanmedian(r["dim"], None)),
        }
        for name, r in registers(config).items()
    }
    values["gd"] = {
        "loss": number(seed_median(final(gd, "loss"))),
        "loss_max": number(final(gd, "loss").max()),
        "extrapolation": number(seed_median(final(gd, "extrapolation"))),
        "extrapolation_worst": number(final(gd, "extrapolation").max()),
        "dim": number(seed_median(final(gd, "dim"))),
        "diverged": int((gd.result == int(Result.diverged)).sum()),
    }
    regs = ", ".join(f"{name} {values[name]['extrapolation']:.1e}" for name in FREE_PARTS)
    headline = (
        f"relative extrapolation error — shift registers (zero training loss): {regs}; "
        f"GD from small init: {values['gd']['extrapolation']:.1e} "
        f"(training loss {values['gd']['loss']:.1e})"
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="counterexample",
    claim=(
        "An overparameterized linear RNN (d ≥ k) has zero-loss solutions, such as shift "
        "registers, that do not extrapolate; gradient descent from small initialization on "
        "the same student size finds one that does."
    ),
    config_type=CounterexampleConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
)
