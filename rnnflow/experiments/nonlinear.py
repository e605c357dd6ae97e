r"""Non-linear students: the small-versus-large initialization contrast for a tanh RNN.
Fact 6 on the science page.

A [`rnnflow.TanhRNN`][] student, $s_t = \tanh(A s_{t-1} + B x_t)$, $y_t = C s_t$, much larger
than a low-dimensional linear teacher, is trained by gradient descent on a
[`rnnflow.SequenceLoss`][]: `num_sequences` Gaussian input sequences of length $k$, scaled
by `input_scale` so that the tanh is only mildly non-linear at the teacher's amplitudes.
It starts from unbalanced random parameters of entry scale σ.

**Extrapolation.** On `num_test` fresh Gaussian sequences (same `input_scale`) of length
$q$ = `horizon` ≫ $k$, the relative error of the last output,
$\sum_n (y^{(n)}_{q-1} - \hat y^{(n)}_{q-1})^2 / \sum_n (\hat y^{(n)}_{q-1})^2$; the same at
step $k - 1$ is the in-distribution error at the training length (`fit_error`).

**Effective dimension.** The numerical rank of the (`num_test` · q) × d matrix of the
student's hidden states on the test sequences: singular values above `dim_rtol` × the
largest. A linear student that learned the teacher's d̂-dimensional state space has rank
d̂; tanh bends it (components along $u^{\circ 3}$, $u^{\circ 5}$, … of relative size
$z^2$, $z^4$, …; at the default `input_scale` near 5e-2 and 1e-3 – 3e-3), so with
`dim_rtol = 1e-3` a student that learned the one-dimensional teacher reports 2–4, while one
that did not uses all d directions.

**Calibration** (float32, d = 20, k = 5, teacher 0.9ⁱ, `input_scale` 0.5, all steps
supervised): `lr = 0.1` diverges from σ = 0.5; 0.05 oscillates once a small init's loss is
near 1e-3; 0.025 decreases monotonically, and the full scale uses 0.02 for its longer run.
Doubling `input_scale` needs a four times smaller step.

One sweep, axes (init_scale, seed, time): training loss, relative errors at $q$ and at $k$,
and the normalized singular values of the hidden states, at log-spaced times.
"""

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

import rnnflow as rf

from . import _common, _stats
from ._stats import final, number, numbers, seed_median
from .base import Experiment, ExperimentConfig
from .plots import nonlinear as _plot
from .summary import Summary


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
        _common.check_teachers(self, "teacher")
        self.require_positive("state_dim", "train_len", "num_sequences", "horizon", "num_test")
        self.require_positive("scales", "input_scale", "lr", "t1")
        if self.horizon <= self.train_len:
            raise ValueError("`horizon` must exceed `train_len`.")
        _common.check_steps(self)
        if not 0 < self.dim_rtol < 1:
            raise ValueError("`dim_rtol` must lie strictly between 0 and 1.")


SMALL = NonlinearConfig(
    seeds=3, scales=(1e-2, 0.2, 0.5), num_sequences=100, lr=0.025, t1=200.0, num_saves=20
)


def relative_errors(model, params, xs, ys, train_len):
    """Relative squared error of the outputs at steps k - 1 and q - 1 over the sequences."""
    y = jax.vmap(model, in_axes=(None, 0))(params, xs)[..., 0]
    steps = (train_len - 1, xs.shape[1] - 1)
    return [jnp.sum((y[:, i] - ys[:, i]) ** 2) / jnp.sum(ys[:, i] ** 2) for i in steps]


def state_singular_values(model, params, xs):
    """Singular values of the hidden states on the sequences `xs`, over the largest."""
    states = jax.vmap(model.states, in_axes=(None, 0))(params, xs).reshape(-1, model.state_dim)
    finite = jnp.all(jnp.isfinite(states))  # a diverged seed's NaN is not rotated
    # The singular values of the tall (sequences·steps, d) states are those of its d × d
    # triangular factor: an SVD of the tall matrix itself, batched over seeds, sized a
    # square workspace by its long side on the CPU (2.6 GB a seed in float32 at the default
    # 256 test sequences × 100 steps: the full config ran out of memory). Both without
    # LAPACK, so that the sweep runs on every CPU device.
    s = rf.singular_values(rf.triangular_factor(jnp.where(finite, states, 0.0)))
    return jnp.where(finite, s / jnp.maximum(s[0], jnp.finfo(s.dtype).tiny), jnp.nan)


def sweeps(config: NonlinearConfig) -> dict[str, rf.Sweep]:
    # Data keys come from the root seed too, folded away from the seeds' keys.
    train_key, test_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1))
    teacher, model = _common.teacher(config.teacher), rf.TanhRNN(config.state_dim)
    dtype = jnp.result_type(float)
    shape = (config.num_sequences, config.train_len, 1)
    xs = config.input_scale * jax.random.normal(train_key, shape, dtype)
    loss_fn = rf.SequenceLoss(teacher, xs, supervise=config.supervise).bind(model)
    shape = (config.num_test, config.horizon, 1)
    xt = config.input_scale * jax.random.normal(test_key, shape, dtype)
    yt = jax.vmap(teacher)(xt)[..., 0]
    k = config.train_len
    metrics = {
        "loss": rf.loss_metric(loss_fn),
        "extrapolation": lambda t, p: relative_errors(model, p, xt, yt, k)[1],
        "fit_error": lambda t, p: relative_errors(model, p, xt, yt, k)[0],
        "singular_values": lambda t, p: state_singular_values(model, p, xt),
    }
    save = rf.Save(num=config.num_saves, spacing="log", decades=3.0, metrics=metrics)
    return {"sweep": _common.scale_sweep(config, model, loss_fn, save)}


def effective_dim(ds, config: NonlinearConfig):
    """Singular values of the hidden states above `dim_rtol` (× the largest) at the end;
    NaN for failed seeds."""
    sv = final(ds, "singular_values")
    return (sv > config.dim_rtol).sum("singular_values_0").where(_stats.ok(ds))


def analyse(data, config: NonlinearConfig) -> Summary:
    ds = data["sweep"]
    small, large = min(config.scales), max(config.scales)
    fields = {name: final(ds, name) for name in ("extrapolation", "fit_error", "loss")}
    fields["dim"] = effective_dim(ds, config)
    values = {}
    for name, v in fields.items():
        med = seed_median(v)
        values[name] = {
            "small_init": number(med.sel(init_scale=small)),
            "large_init": number(med.sel(init_scale=large)),
            "by_scale": numbers(med),
        }
    values["failed"] = int((ds.result > int(rf.Result.converged)).sum())
    ext, dim = values["extrapolation"], values["dim"]
    headline = (
        f"tanh student, median relative error at q: {ext['small_init']:.1e} (small init) vs "
        f"{ext['large_init']:.1e} (large init); effective state dim {dim['small_init']:g} vs "
        f"{dim['large_init']:g}"
    )
    return Summary(headline, values)


EXPERIMENT = Experiment(
    name="nonlinear",
    claim=(
        "A tanh RNN trained from small initialization also learns a low-dimensional state "
        "space that extrapolates to longer sequences; from large initialization it fits the "
        "training length without extrapolating."
    ),
    config_type=NonlinearConfig,
    small=SMALL,
    sweeps=sweeps,
    analyse=analyse,
    plot=_plot.plot,
    small_seconds=20,
)
