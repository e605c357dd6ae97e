"""What a training run records (`Save`), when it stops early (`Stop`), and what it returns
(`Trajectory`, with a per-seed `Result` code)."""

import enum
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from .checks import check_choice, check_positive_int, check_real
from .objective import Metric


class Result(enum.IntEnum):
    """Why a seed's run ended. `Trajectory.result` holds these as integers, one per seed."""

    finished = 0
    converged = 1
    diverged = 2
    max_steps_reached = 3
    solver_failed = 4
    stalled = 5

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
        "Reached `max_steps` before the end time. An ODE solver: increase `max_steps`, loosen "
        "the tolerances, or use an implicit solver (e.g. diffrax.Kvaerno5) for stiff phases. "
        "Gradient descent to `t1` at a traced rate: `max_steps` must be at least t1/lr."
    ),
    Result.stalled: (
        "Stalled: the ODE solver's step size became too small to reach the end time within "
        "`max_steps` (see GradientFlow's `stall`). The flow is stiff there: use "
        "LeastSquaresRosenbrock or an implicit solver (diffrax.Kvaerno5), loosen the "
        "tolerances, or raise `max_steps`."
    ),
    Result.solver_failed: (
        "The ODE solver failed (e.g. its step size collapsed). Check for non-finite gradients, "
        "or try an implicit solver."
    ),
}


# Save times above t1 by less than this (relative) are t1: a float32 sum of rates.
T1_RTOL = 1e-5


class Save(eqx.Module):
    """What to record during a run, and when.

    **Arguments:**

    - `ts`: the times to save at, increasing, in `[0, t1]`, `t1` the method's end time
      (`method.t1`; times above it by less than 1e-5 relative, the rounding of a float32
      sum, count as `t1`). If omitted, `num` times spaced by `spacing` over `[0, t1]`, or
      (gradient descent only) every `every` steps.
    - `num`: how many times to save when `ts` is omitted (default 101).
    - `spacing`: `"linear"` or `"log"` (time 0, then `num - 1` log-spaced times from
      `t1 / 10**decades` to `t1`).
    - `decades`: the span of log spacing (default 4).
    - `every`: save every this many steps (gradient descent only).
    - `metrics`: a mapping name → `fn(t, params) -> array` evaluated at each save time
      (`t` the flow time, `params` the whole parameter pytree). `None` means the loss's
      defaults: the loss alone for a plain function; for an RNN loss
      ([`rnnflow.ImpulseLoss`][]`.bind(model)`) also the relative imbalance and the relative
      extrapolation error to 10 × `train_len`.
    - `params`: also keep the parameters at each save time (memory: seeds × saves × params).

    **Gradient descent saves at steps.** Its states exist only after whole steps, at the
    times $t_n$ of its time axis ($nη$, or the running sum of a schedule's rates; over
    $1-β$ with momentum β). Each save time is placed on the step $n$ whose $t_n$ is
    nearest (ties to the earlier step), and `Trajectory.ts` holds those $t_n$, not the
    times asked for. With a constant rate and `num` times, the saves are spread evenly
    over the steps. The flows save at the times asked for.

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

    def times(self, t1) -> np.ndarray:
        """The save times for a run that ends at `t1` (gradient descent resolves `every`
        itself). A traced `t1` (a method vmapped over its step size) gives traced times."""
        xp = jnp if isinstance(t1, jax.core.Tracer) else np
        if self.ts is not None:
            ts = np.asarray(self.ts)
            if xp is np and (ts[0] < 0 or ts[-1] > t1 * (1 + T1_RTOL)):
                raise ValueError(
                    f"`Save.ts` must lie in [0, t1] = [0, {t1}] (the method's `t1`; times "
                    f"within {T1_RTOL:g} of it relative count as t1); got [{ts[0]}, {ts[-1]}]."
                )
            # Within rounding of t1 (a time computed as 0.4 * 30, or a schedule's rates
            # summed in float32), exactly t1.
            return ts if xp is not np else np.minimum(ts, t1)
        if self.spacing == "linear":
            return xp.linspace(0.0, t1, self.num)
        if self.num == 1:
            return xp.asarray([t1])
        return xp.concatenate(
            [xp.zeros(1), xp.geomspace(t1 * 10.0**-self.decades, t1, self.num - 1)]
        )


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

    - `ts`: the save times, shape `(saves,)`, in flow time: for gradient descent the sum
      of the step sizes taken, $\\sum_{j<n} η_j$ ($nη$ at a constant rate; over $1-β$
      with momentum β), so that gradient descent and the flows share one time axis. For
      an adaptive optimizer, the sum of its rates (see `time_axis`).
    - `metrics`: name → values at the save times, shape `(saves, ...)`. After a seed stops
      (converged or diverged), its values hold the state it stopped in.
    - `params`: the parameters at the save times (leading axis `saves`), if `Save(params=True)`.
    - `final`: the parameters at the end (or where the seed stopped).
    - `t_stop`: the (flow) time the seed stopped (`t1` if it ran to the end).
    - `result`: a [`rnnflow.Result`][] code, as an integer array.
    - `num_steps`: optimizer steps, or ODE solver steps (accepted + rejected).
    - `num_grad_evals`: gradient evaluations of the training loss.
    - `time_axis`: what `ts` measures: `"flow time"` (the flows; plain and momentum
      gradient descent, whose steps overlay the flow) or `"sum of rates"` (an adaptive
      optimizer such as Adam: $\\sum_{j<n} η_j$, which is not flow time).
    """

    ts: Float[Array, " saves"]
    metrics: dict[str, Array]
    params: PyTree | None
    final: PyTree
    t_stop: Float[Array, ""]
    result: Int[Array, ""]
    num_steps: Int[Array, ""]
    num_grad_evals: Int[Array, ""]
    time_axis: str = eqx.field(static=True, default="flow time")

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
