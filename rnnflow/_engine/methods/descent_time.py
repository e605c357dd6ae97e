"""Where gradient descent's steps lie on the flow's time axis: the rate at each step (a
constant or a schedule), the time after n steps ($\\sum_{j<n} η_j$, times the optimizer's
`time_scale`, e.g. $1/(1-β)$ for heavy-ball momentum), `t1`, and the steps that `Save`'s
times fall on (the nearest step to each)."""

import jax
import jax.numpy as jnp
import numpy as np

from ..trajectory import Save
from .base import AbstractMethod


def nearest_steps(t1: float, dt: np.ndarray) -> int:
    """The whole number of steps nearest $t_1/dt$, divided in `dt`'s precision, as a traced
    rate of that precision divides."""
    return int(np.rint(np.asarray(t1, dt.dtype) / dt))


def check_steps_to(t1: float, lr: float, steps: int, max_steps: int | None) -> None:
    """Raise a `ValueError` if a run to `t1` at `lr` takes no step, or more than `max_steps`."""
    if steps < 1:
        raise ValueError(f"`lr` = {lr:g} exceeds `t1` = {t1:g}: not one step.")
    if max_steps is not None and steps > max_steps:
        raise ValueError(
            f"`t1` = {t1:g} at `lr` = {lr:g} takes {steps} steps, above `max_steps` = {max_steps}."
        )


class DescentTimeAxis(AbstractMethod):
    """The time axis of a method of discrete steps with fields `lr` (a rate or a schedule
    `step -> rate`), `num_steps`, `time_scale` and `to_time` (`None`, or the time the run
    is asked to reach: then `num_steps` bounds the steps of a traced rate)."""

    def _traced(self) -> bool:
        return isinstance(self.lr, jax.core.Tracer)

    def steps(self):
        """The steps the run takes: `num_steps`, or, for a run to a time `t1` at a rate
        given as an array (vmapped), the nearest whole number to $t_1/η$ (traced under
        the vmap, an `int` for one concrete rate)."""
        if self.to_time is None or not isinstance(self.lr, jax.Array):
            return self.num_steps
        if self._traced():
            return jnp.rint(self.to_time / self._dt).astype(jnp.int32)
        return nearest_steps(self.to_time, self._dt)

    def _rates(self):
        """For a schedule: the rate at every step (float64 where concrete); else `None`."""
        if not callable(self.lr):
            return None
        # Evaluated now even inside a trace, unless the schedule depends on traced values.
        with jax.ensure_compile_time_eval():
            rates = jax.vmap(self._rate)(jnp.arange(self.num_steps))  # one step at a time
        if isinstance(rates, jax.core.Tracer):
            return rates.astype(jnp.result_type(float))
        rates = np.asarray(rates, np.float64)
        if rates.shape != (self.num_steps,) or not np.all(np.isfinite(rates) & (rates > 0)):
            raise ValueError(
                "`lr` as a schedule must give a finite, positive rate at every step 0, …, "
                f"num_steps - 1; got rates from {rates.min()} to {rates.max()}."
            )
        return rates

    @property
    def _dt(self):
        """The time one step at the constant rate `lr` takes: η/(1-β), or η. A rate given as
        a concrete array (one lane of a vmapped sweep) as a NumPy number of its precision,
        so that the time axis is computed now, even within a trace."""
        lr = self.lr
        if isinstance(lr, jax.Array) and not self._traced():
            lr = np.asarray(lr)
        return lr if self.time_scale == 1 else lr * self.time_scale

    def flow_times(self):
        """For a schedule: the time after $n = 0, …,$ `num_steps` steps, $\\sum_{j<n} η_j$
        (times `time_scale`; float64 where concrete). For a constant rate: `None` (it is
        $nη$ times `time_scale`)."""
        rates = self._rates()
        if rates is None:
            return None
        if self.time_scale != 1:
            rates = rates * self.time_scale
        if isinstance(rates, jax.Array):
            return jnp.concatenate([jnp.zeros(1, rates.dtype), jnp.cumsum(rates)])
        return np.concatenate([[0.0], np.cumsum(rates)])

    def _rate(self, step):
        """The schedule at step counts given as JAX's default float, so that float64 runs
        compute their rates in float64 (optax's own int32 counts give float32 rates); the
        optimizer steps at these rates and the time axis adds them up."""
        return self.lr(jnp.asarray(step).astype(jnp.result_type(float)))

    @property
    def t1(self):
        times = self.flow_times()
        return self._dt * self.steps() if times is None else times[-1]

    def save_steps(self, save: Save):
        """The step indices saved at: every `every` steps, or the step whose flow time is
        nearest each save time (`num` times spaced over the run are spaced in steps, at a
        constant rate)."""
        end = self.steps()
        if save.every is not None:
            if isinstance(end, jax.Array):
                raise ValueError(
                    "`Save(every=...)` needs a number of steps known when the run compiles; "
                    "a run to `t1` at a traced rate saves at times (`Save(ts)` or `num`)."
                )
            steps = np.arange(0, end + 1, save.every)
            return steps if steps[-1] == end else np.append(steps, end)
        times = self.flow_times()
        if times is not None:
            xp = jnp if isinstance(times, jax.Array) else np
            want = save.times(times[-1])
            hi = xp.clip(xp.searchsorted(times, want), 1, self.num_steps)
            return xp.where(want - times[hi - 1] <= times[hi] - want, hi - 1, hi)
        if save.ts is None:  # spread over the steps (for a fixed count, at every rate)
            if isinstance(end, jax.Array):
                return jnp.rint(save.times(end.astype(jnp.result_type(float)))).astype(jnp.int32)
            return np.rint(save.times(float(end))).astype(np.int64)
        ts = np.asarray(save.times(self.t1))
        if self._traced():
            return jnp.rint(ts / self._dt).astype(jnp.int32)
        return np.rint(ts / self._dt).astype(np.int64)

    def save_times(self, save: Save):
        steps = self.save_steps(save)
        times = self.flow_times()
        return steps * self._dt if times is None else times[steps]
