"""Pieces the experiments share: named teachers, config checks, methods and init-scale
sweeps from configs, and per-point metrics (statistics over seeds are in `_stats`)."""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax

from rnnflow import (
    GradientDescent,
    GradientFlow,
    LeastSquaresRosenbrock,
    Save,
    Stop,
    Sweep,
    Teacher,
    modes_teacher,
)

# Named teachers (eigenvalues, weights): short memory, long memory (eigenvalue 1),
# two modes of opposite sign (one oscillating), and three modes of distinct weights.
TEACHERS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "short": ((0.9,), (1.0,)),
    "long": ((1.0,), (1.0,)),
    "two_modes": ((0.9, -0.6), (1.0, 0.5)),
    "three_modes": ((0.95, 0.6, -0.5), (1.0, 0.4, 0.15)),
}


def teacher(name: str) -> Teacher:
    eigenvalues, weights = TEACHERS[name]
    return modes_teacher(eigenvalues, weights)


def check_teachers(config, *fields: str) -> None:
    """Raise a `ValueError` naming the first of the config's `fields` that is not a named
    teacher (for a list, not every entry one)."""
    for field in fields:
        check_among(config, field, TEACHERS)


def check_among(config, field: str, allowed) -> None:
    """Raise a `ValueError` naming the config's `field` if its value (for a list, any entry)
    is not among `allowed`."""
    value = getattr(config, field)
    if any(v not in allowed for v in (value if isinstance(value, tuple) else (value,))):
        raise ValueError(f"`{field}` must be one of {tuple(allowed)}; got {value!r}.")


def method(kind: str, *, lr: float, t1: float, rtol: float = 1e-6, max_steps: int = 200_000):
    """Gradient descent with step `lr`, or gradient flow, both to time `t1`. The flow runs
    to convergence over long horizons, where it is stiff: it is solved by the
    least-squares Rosenbrock solver, whose step follows accuracy rather than stability."""
    if kind == "gd":
        return GradientDescent(lr, int(round(t1 / lr)))
    return GradientFlow(
        t1, solver=LeastSquaresRosenbrock(), stepsize_controller=pid(rtol), max_steps=max_steps
    )


def pid(rtol: float):
    """The flows' step-size controller: PID at relative tolerance `rtol`, absolute
    tolerance `rtol` × 1e-3 (the losses are of order one at the start)."""
    import diffrax

    return diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3)


def root_key(seed: int, part: int = 0):
    """The root PRNG key of a sweep: `seed`'s key, folded with `part` for the second and
    later sweeps of an experiment (seed s of part 0 is the same at every point of it)."""
    key = jax.random.key(seed)
    return key if part == 0 else jax.random.fold_in(key, part)


def check_steps(config) -> None:
    """Raise a `ValueError` if gradient descent at the config's `lr` takes no step before its
    `t1`, or (for a config with `num_saves`) fewer than two saves are asked for."""
    if config.lr > config.t1:
        raise ValueError("`lr` must not exceed `t1` (at least one step).")
    if getattr(config, "num_saves", 2) < 2:
        raise ValueError("`num_saves` must be at least 2.")


def scale_sweep(config, model, loss_fn, save: Save, *, scales=None, stop: Stop = Stop()) -> Sweep:
    """The sweep of an experiment that varies the initialization only: `config.seeds` seeds
    (root key of `config.seed`) from `model.init` at each entry scale σ of the axis
    `init_scale` (default `config.scales`), trained on `loss_fn` by gradient descent at
    `config.lr` to `config.t1`."""
    gd = method("gd", lr=config.lr, t1=config.t1)

    def setup(point, key):
        return loss_fn, model.init(key=key, scale=point["init_scale"]), gd

    axes = {"init_scale": config.scales if scales is None else scales}
    return Sweep(axes, config.seeds, setup, root_key(config.seed), save, stop)


# -- metrics that depend on the point --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricsOf:
    """`fn(loss_fn, config) -> {name: metric}` for a given config, equal whenever the
    config is: a static field of a compiled program, so equal values share the program."""

    fn: Callable
    config: object

    def __call__(self, loss_fn) -> dict:
        return self.fn(loss_fn, self.config)


class Measured(eqx.Module):
    """A bound RNN loss that records `metrics(loss_fn)` when `Save` names no metrics.

    A sweep has one `Save` for every point, while what is measured can depend on the
    point: the student of a looped `parameterization` or `state_dim` axis, the teacher of
    a `teacher` axis. The loss of each point knows them, so the metrics are made from it.
    Everything the engine may ask of the loss (`residuals`, `check`, the closed-form
    `value_and_grad` and fused `descend` of a diagonal student) is passed through.
    """

    loss_fn: Callable
    metrics: Callable = eqx.field(static=True)

    def __call__(self, params):
        return self.loss_fn(params)

    def default_metrics(self) -> dict:
        return self.metrics(self.loss_fn)

    def check(self, params) -> None:
        self.loss_fn.check(params)

    @property
    def residuals(self):
        return getattr(self.loss_fn, "residuals", None)

    @property
    def value_and_grad(self):
        return getattr(self.loss_fn, "value_and_grad", None)

    @property
    def descend(self):
        return getattr(self.loss_fn, "descend", None)
