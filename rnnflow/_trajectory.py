"""What a training run records (`Save`), when it stops early (`Stop`), and what it returns
(`Trajectory`, with a per-seed `Result` code)."""

import enum
from collections.abc import Callable, Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._checks import check_choice, check_positive_int, check_real
from ._losses import extrapolation_error
from ._models import RNNParams

Metric = Callable[[Array, RNNParams], Array]


class Result(enum.IntEnum):
    """Why a seed's run ended. `Trajectory.result` holds these as integers, one per seed."""

    finished = 0
    converged = 1
    diverged = 2
    max_steps_reached = 3
    solver_failed = 4

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def ok(self) -> bool:
        return self in (Result.finished, Result.converged)


_MESSAGES = {
    Result.finished: "Ran to the end time.",
    Result.converged: "Stopped early: the loss fell below `Stop.loss_below`.",
    Result.diverged: (
        "Diverged: the loss became non-finite or exceeded `Stop.loss_above`. "
        "Try a smaller learning rate or initialization scale."
    ),
    Result.max_steps_reached: (
        "The ODE solver reached `max_steps` before the end time. Increase `max_steps`, loosen "
        "the tolerances, or use an implicit solver (e.g. diffrax.Kvaerno5) for stiff phases."
    ),
    Result.solver_failed: (
        "The ODE solver failed (e.g. its step size collapsed). Check for non-finite gradients, "
        "or try an implicit solver."
    ),
}


class Save(eqx.Module):
    """What to record during a run, and when.

    **Arguments:**

    - `ts`: the times to save at, increasing, in `[0, t1]`. If omitted, `num` times spaced by
      `spacing` over `[0, t1]`, or (gradient descent only) every `every` steps.
    - `num`: how many times to save when `ts` is omitted (default 101).
    - `spacing`: `"linear"` or `"log"` (time 0, then `num - 1` log-spaced times from
      `t1 / 10**decades` to `t1`).
    - `decades`: the span of log spacing (default 4).
    - `every`: save every this many steps (gradient descent only).
    - `metrics`: a mapping name → `fn(t, params) -> array` evaluated at each save time.
      `None` means the defaults: the loss, the relative imbalance and, where the loss has a
      teacher, the relative extrapolation error to 10 × `train_len`.
    - `params`: also keep the parameters at each save time (memory: seeds × saves × params).

    Only saved quantities cost memory, so 10⁴ seeds × 10⁶ steps with 101 saves of 3 metrics
    keeps 3 × 10⁶ numbers.
    """

    ts: tuple[float, ...] | None = eqx.field(static=True, default=None)
    num: int = eqx.field(static=True, default=101)
    spacing: str = eqx.field(static=True, default="linear")
    decades: float = eqx.field(static=True, default=4.0)
    every: int | None = eqx.field(static=True, default=None)
    metrics: Mapping[str, Metric] | None = eqx.field(static=True, default=None)
    params: bool = eqx.field(static=True, default=False)

    def __init__(
        self,
        ts=None,
        *,
        num: int = 101,
        spacing: str = "linear",
        decades: float = 4.0,
        every: int | None = None,
        metrics: Mapping[str, Metric] | None = None,
        params: bool = False,
    ):
        if ts is not None:
            ts = np.asarray(ts, dtype=np.float64)
            if ts.ndim != 1 or ts.size == 0:
                raise ValueError(f"`Save.ts` must be a non-empty 1-d array; got shape {ts.shape}.")
            if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0):
                raise ValueError("`Save.ts` must be finite and non-decreasing.")
            # Stored as a tuple so that the Save stays hashable (it is static under jit).
            ts = tuple(float(t) for t in ts)
        if ts is not None and every is not None:
            raise ValueError("give `Save.ts` or `Save.every`, not both.")
        self.ts = ts
        self.num = check_positive_int("Save.num", num)
        self.spacing = check_choice("Save.spacing", spacing, ("linear", "log"))
        check_real("Save.decades", decades, positive=True)
        self.decades = float(decades)
        self.every = None if every is None else check_positive_int("Save.every", every)
        if metrics is not None:
            if not isinstance(metrics, Mapping) or not all(
                isinstance(k, str) and callable(f) for k, f in metrics.items()
            ):
                raise TypeError("`Save.metrics` must map names (str) to functions fn(t, params).")
            metrics = tuple(metrics.items())
        self.metrics = metrics
        self.params = bool(params)

    def times(self, t1: float) -> np.ndarray:
        """The save times for a run that ends at `t1` (gradient descent resolves `every` itself)."""
        if self.ts is not None:
            ts = np.asarray(self.ts)
            if ts[0] < 0 or ts[-1] > t1 * (1 + 1e-12):
                raise ValueError(
                    f"`Save.ts` must lie in [0, t1] = [0, {t1}]; got [{ts[0]}, {ts[-1]}]."
                )
            return ts
        if self.spacing == "linear":
            return np.linspace(0.0, t1, self.num)
        if self.num == 1:
            return np.array([t1])
        return np.concatenate([[0.0], np.geomspace(t1 * 10.0**-self.decades, t1, self.num - 1)])


class Stop(eqx.Module):
    """When a seed stops early. A stopped seed keeps its last state; others are unaffected.

    - `loss_below`: converged when the loss falls below this (default: never).
    - `loss_above`: diverged when the loss exceeds this or is not finite (default 1e10).
    """

    loss_below: float | None = eqx.field(static=True, default=None)
    loss_above: float = eqx.field(static=True, default=1e10)

    def __check_init__(self):
        if self.loss_below is not None:
            check_real("Stop.loss_below", self.loss_below, positive=True)
        check_real("Stop.loss_above", self.loss_above, positive=True, finite=False)


class Trajectory(eqx.Module):
    """The result of [`rnnflow.train`][]: one per seed, or batched with a leading seed axis.

    **Fields:**

    - `ts`: the save times, shape `(saves,)`. For gradient descent, step × learning rate.
    - `metrics`: name → values at the save times, shape `(saves, ...)`. After a seed stops
      (converged or diverged), its values hold the state it stopped in.
    - `params`: the parameters at the save times (leading axis `saves`), if `Save(params=True)`.
    - `final`: the parameters at the end (or where the seed stopped).
    - `t_stop`: the time the seed stopped (`t1` if it ran to the end).
    - `result`: a [`rnnflow.Result`][] code, as an integer array.
    - `num_steps`: optimizer steps, or ODE solver steps (accepted + rejected).
    - `num_grad_evals`: gradient evaluations of the training loss.
    """

    ts: Float[Array, " saves"]
    metrics: dict[str, Array]
    params: RNNParams | None
    final: RNNParams
    t_stop: Float[Array, ""]
    result: Int[Array, ""]
    num_steps: Int[Array, ""]
    num_grad_evals: Int[Array, ""]

    @property
    def ok(self) -> Array:
        """True for seeds that finished or converged (neither diverged nor failed)."""
        return self.result <= Result.converged

    def messages(self) -> list[str]:
        """One line per seed (or one for an unbatched trajectory) saying how the run ended."""
        codes = np.atleast_1d(np.asarray(self.result))
        return [Result(int(c)).message for c in codes]

    def summary(self) -> dict[str, int]:
        """How many seeds ended each way, e.g. `{"finished": 998, "diverged": 2}`."""
        codes = np.atleast_1d(np.asarray(self.result))
        return {r.name: int(np.sum(codes == r)) for r in Result if np.any(codes == r)}


def default_metrics(model, loss) -> dict[str, Metric]:
    """The loss, the relative imbalance, and (with a teacher) the relative extrapolation error."""
    metrics: dict[str, Metric] = {
        "loss": lambda t, p: loss(model, p),
        "relative_imbalance": lambda t, p: model.relative_imbalance(p),
    }
    teacher = getattr(loss, "teacher", None)
    if teacher is not None:
        k = loss.train_len
        metrics["extrapolation"] = lambda t, p: extrapolation_error(
            model, p, teacher, train_len=k, horizon=10 * k, relative=True
        )
    return metrics


def metric_fn(save: Save, model, loss) -> Callable[[Array, RNNParams], dict[str, Array]]:
    metrics = default_metrics(model, loss) if save.metrics is None else dict(save.metrics)

    def fn(t, params):
        return {name: jnp.asarray(f(t, params)) for name, f in metrics.items()}

    return fn
