r"""A per-seed guard for adaptive solves: a seed whose step size collapsed stops early.

Under `vmap` an adaptive solve advances every seed until the slowest has finished. A seed
whose step size has collapsed (a stiff flow solved by an explicit method, or gradients
that blow up without overflowing) would grind on to `max_steps` and hold the whole batch
hostage. The rule: after `patience` steps, a seed whose projected number of steps,
$n + (t_1 - t)/\overline{Δt}$, exceeds `factor` × `max_steps` stops, with
[`rnnflow.Result`][]`.stalled`. $\overline{Δt}$ is the time advanced per step, averaged
over about the last 16 steps, rejected steps counting as no advance: an implicit solver
(Kvaerno5) whose Newton iterations keep failing has its steps rejected rather than its
step size collapsed, and stalls by this measure as an explicit solver does by its step
size. The factor is large (1000 by default): a healthy
solve's step size varies, small in fast transients and large later, and judging it by
its current step must not stop one that would finish; a collapsed one is off by far more.
A seed that is merely slow runs on and, if it must, ends with `max_steps_reached`.
"""

import diffrax
import equinox as eqx
import jax.numpy as jnp

# diffrax has no code of its own for "gave up"; this one is otherwise returned only by a
# controller with `dtmin` and `force_dtmin=False`, whose step size collapsed: a stall too.
STALLED = diffrax.RESULTS.dt_min_reached


class StallGuard(diffrax.AbstractAdaptiveStepSizeController):
    """`controller`, stopping a seed whose projected steps exceed `factor × max_steps`."""

    controller: diffrax.AbstractAdaptiveStepSizeController
    max_steps: int = eqx.field(static=True)
    patience: int = eqx.field(static=True)
    factor: float = eqx.field(static=True)

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return eqx.tree_at(lambda s: s.controller, self, self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t_next, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        advance = jnp.asarray(t_next - t0, jnp.result_type(t_next))
        return t_next, (state, jnp.asarray(0, jnp.int32), t1, advance)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner, count, t_end, advance = state
        keep, next_t0, next_t1, jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        count = count + 1
        # The mean advance per step over about the last 16 steps, no more than the step
        # size proposed (which a collapsing solve shrinks at once).
        advance = advance + (jnp.where(keep, t1 - t0, 0.0) - advance) / 16
        per_step = jnp.minimum(advance, next_t1 - next_t0)
        projected = count + (t_end - next_t0) / per_step
        stalled = (count >= self.patience) & ~(projected <= self.factor * self.max_steps)
        ok = result == diffrax.RESULTS.successful
        result = diffrax.RESULTS.where(ok & stalled, STALLED, result)
        return keep, next_t0, next_t1, jump, (inner, count, t_end, advance), result
