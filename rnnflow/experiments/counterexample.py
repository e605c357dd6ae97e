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
register can do, still $h_i = 0$ for $i \ge d$). They are measured as a sweep saved at
$t = 0$ only (store `registers`, axis `free_part`): a run takes one step, never saved, and
a zero-loss point has zero gradient anyway.

Against them, one sweep (store `gd`, axis `init_scale`): dense students of the same size
$d$ trained by gradient descent from small unbalanced random initialization. The step must
be small: the balanced rank-1 solution has sharpness ≈ 46 for $d = 20$, $k = 5$,
$\hat h_i = 0.9^i$, so GD with $\eta > 2/46$ cannot converge to it (see `finite_step`);
`lr` = 0.01 is well inside. Saved in both stores (the students at the start and the end):
training loss, relative extrapolation error to `horizon`, effective state dimension,
relative imbalance and the impulse response $h_i$, $i <$ `horizon`.
"""

import dataclasses

import jax
import jax.numpy as jnp

import rnnflow as rf

from . import _common
from ._stats import final, number, seed_median
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
        _common.check_teachers(self, "teacher")
        self.require_positive("train_len", "scale", "lr", "t1", "loss_below")
        if self.state_dim < self.train_len:
            raise ValueError(
                f"`state_dim` must be at least `train_len` = {self.train_len} for a shift "
                "register to fit the training lags."
            )
        if self.horizon <= self.state_dim:
            # Beyond d every shift register is zero: q > d shows that even the best one fails.
            raise ValueError("`horizon` must exceed `state_dim`.")
        _common.check_steps(self)


SMALL = CounterexampleConfig(seeds=8, t1=200.0)


def shift_register(target, free) -> rf.RNNParams:
    """The shift-register realisation (single input and output) of the response
    $h = $ (`target`, `free`): $A$ the down-shift, $B = e_1$, $C$ = the concatenation."""
    c = jnp.concatenate([jnp.asarray(target), jnp.asarray(free, jnp.asarray(target).dtype)])
    d = c.shape[0]
    a = jnp.eye(d, k=-1, dtype=c.dtype)  # A[i+1, i] = 1
    b = jnp.zeros((d, 1), c.dtype).at[0, 0].set(1.0)
    return rf.RNNParams(a, b, c[None, :])


def sweeps(config: CounterexampleConfig) -> dict[str, rf.Sweep]:
    """`gd`, the trained students, and `registers`, the shift registers (own root key)."""
    model, teacher = rf.DenseRNN(config.state_dim), _common.teacher(config.teacher)
    k, d, q = config.train_len, config.state_dim, config.horizon
    loss_fn = rf.ImpulseLoss(teacher, k).bind(model)
    target = teacher.impulse_response(q)[:, 0, 0]
    metrics = {
        "loss": rf.loss_metric(loss_fn),
        "extrapolation": rf.extrapolation_metric(model, teacher, train_len=k, horizon=q),
        "dim": rf.effective_dim_metric(model, length=q),
        "relative_imbalance": rf.imbalance_metric(model),
        "impulse": lambda t, p: model.impulse_response(p, q)[:, 0, 0],
    }

    def build(point, key):
        free = {
            "zeros": lambda: jnp.zeros(d - k),
            "random": lambda: jnp.abs(target[k]) * jax.random.normal(key, (d - k,)),
            "teacher": lambda: target[k:d],
        }[point["free_part"]]()
        return loss_fn, shift_register(target[:k], free), rf.GradientDescent(config.lr, 1)

    save, stop = rf.Save(num=2, metrics=metrics), rf.Stop(loss_below=config.loss_below)
    gd = _common.scale_sweep(config, model, loss_fn, save, scales=(config.scale,), stop=stop)
    key, save = _common.root_key(config.seed, 1), rf.Save((0.0,), metrics=metrics)
    return {
        "gd": gd,
        "registers": rf.Sweep({"free_part": FREE_PARTS}, config.seeds, build, key, save),
    }


def analyse(data, config: CounterexampleConfig) -> Summary:
    gd, registers = data["gd"].isel(init_scale=0), data["registers"].isel(time=0)
    values = {
        name: {
            "loss_max": number(r.loss.max()),
            "extrapolation": number(seed_median(r.extrapolation)),
            "dim": number(seed_median(r.dim)),
        }
        for name, r in ((name, registers.sel(free_part=name)) for name in FREE_PARTS)
    }
    values["gd"] = {
        "loss": number(seed_median(final(gd, "loss"))),
        "loss_max": number(final(gd, "loss").max()),
        "extrapolation": number(seed_median(final(gd, "extrapolation"))),
        "extrapolation_worst": number(final(gd, "extrapolation").max()),
        "dim": number(seed_median(final(gd, "dim"))),
        "diverged": int((gd.result == int(rf.Result.diverged)).sum()),
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
    small_seconds=8,
)
