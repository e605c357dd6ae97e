"""[`rnnflow.GradientDescent`][]: discrete steps (plain, optax or the loss's fused loop) between
saves, on the flow's time axis."""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..checks import check_choice, check_positive_int, check_real
from ..objective import Objective, offered
from ..real_view import has_parts
from ..trajectory import Result, Trajectory
from .descent_steps import LOOPS, final_value, fused_steps, optimizer_steps, stopped, while_loop
from .descent_time import DescentTimeAxis, check_steps_to, nearest_steps
from .optimizer_rate import check_optimizer, time_axis


class GradientDescent(DescentTimeAxis):
    """Discrete gradient descent (or any optax optimizer): a loop of steps between saves.
    For a rule ([`rnnflow.Rule`][]) each step is $θ \\leftarrow θ + η F(θ)$: an optimizer
    is given $-F$ as the gradient (optax minimises), so any optax transformation of the
    direction applies.

    **Arguments:**

    - `lr`: the step size η: a positive number, a traced array (to `jax.vmap` or
      differentiate over it), or an optax schedule `step -> η_step`. It is the one rate of
      the run, and it sets the time axis: after $n$ steps of plain gradient descent the
      flow time is $\\sum_{j<n} η_j$ ($nη$ at a constant rate), so that gradient descent
      is the explicit Euler discretisation of the gradient flow, with a decaying rate too.
    - `num_steps`: how many steps to take; the run ends at `t1`, the time of them all.
    - `t1`, in place of `num_steps`: run to this time, in the nearest whole number of steps
      to $t_1/η$ (a constant rate; with momentum, $t_1(1-β)/η$). With a traced rate (a
      `jax.vmap` over step sizes, or a sweep's vmapped `lr` axis) each rate takes its own
      number of steps, as a run at that rate alone would, and `max_steps` must bound them
      all (the loop's length is fixed when it compiles): one program then runs every rate.
      A rate that would need more steps ends after `max_steps` steps with
      `Result.max_steps_reached` (a sweep says so before it compiles). `t1` is a number;
      $t_1/η$ is rounded in the rate's precision (float32 by default), for a number as for
      a traced rate, so that both take the same steps (near a tie, such as 0.3/0.12, this
      can differ from Python's `round(t1 / lr)`).
    - `optimizer`: an optax factory that takes the rate, called with `lr`
      (`optax.adam`, `functools.partial(optax.sgd, momentum=0.9)`), or an
      `optax.GradientTransformation` whose rate is `lr` (injected with
      `optax.inject_hyperparams`, or an alias such as `optax.adam(lr)`; a rate that can
      be read and differs from `lr` is refused). Default: plain gradient descent,
      `optax.sgd(lr)`. SGD with heavy-ball (or Nesterov) momentum β steps along the
      gradient flow at flow time $\\sum_{j<n} η_j/(1-β)$: its trajectory overlays the
      flow's. Adaptive optimizers (Adam, RMSProp, ...) have no gradient-flow limit:
      their time axis is $\\sum_{j<n} η_j$, labelled so (`time_axis`), and is not flow
      time (see the methods page for what can be compared).
    - `kernel`: `"auto"` (default) uses the loss's own `value_and_grad` where it offers one
      (the impulse loss of a diagonal student does, in closed form); `"generic"` always
      differentiates the loss by autodiff; `"pallas"` runs plain gradient descent through
      the loss's `descend` (one Pallas kernel per block of seeds, parameters on chip across
      steps: for GPUs; elsewhere Pallas's slow interpreter). All agree to rounding.
    - `adjoint`: how the steps are differentiated, with diffrax's adjoint objects:
      `diffrax.RecursiveCheckpointAdjoint()` (default: `jax.grad` works; memory grows with
      the number of saves and checkpoints, not steps; `checkpoints=` sets how many per
      segment between saves), `diffrax.ForwardMode()` (`jax.jvp`, `jax.jacfwd`) or
      `diffrax.DirectAdjoint()` (both, at more memory and compile time). All run the same
      steps with the same results.

    Only the save times cost memory: between saves the loop keeps just the parameters and
    optimizer state. A seed that converges or diverges (see [`rnnflow.Stop`][]) stops
    updating, while the others go on. Differentiated, the stopping step counts as fixed: the
    derivative is that of the steps actually taken.

    ```python
    method = GradientDescent(lr=0.01, num_steps=10_000)
    method = GradientDescent(lr=0.01, num_steps=10_000, optimizer=optax.adam)
    method = GradientDescent(lr=0.01, t1=100.0)  # 10 000 steps
    # in a sweep's setup, every rate of a vmapped `lr` axis in one program:
    method = GradientDescent(point["lr"], t1=100.0, max_steps=round(100.0 / min(lrs)))
    method = GradientDescent(optax.cosine_decay_schedule(0.1, 10_000), num_steps=10_000)
    method.t1  # the time the run ends at: Σ η_j
    ```

    **Attributes:** `t1`, the time after all `num_steps` steps (flow time or sum of rates);
    `time_axis`, `"flow time"` or `"sum of rates"`; `time_scale`, the flow time per unit
    of rate ($1/(1-β)$ with momentum β, else 1).
    """

    lr: float | jax.Array | Callable
    num_steps: int = eqx.field(static=True)
    to_time: float | None = eqx.field(static=True)
    optimizer: optax.GradientTransformation | Callable | None = eqx.field(static=True)
    kernel: str = eqx.field(static=True)
    adjoint: diffrax.AbstractAdjoint
    time_axis: str = eqx.field(static=True)
    time_scale: float = eqx.field(static=True)

    def __init__(
        self,
        lr,
        num_steps: int | None = None,
        optimizer: optax.GradientTransformation | Callable | None = None,
        *,
        t1: float | None = None,
        max_steps: int | None = None,
        kernel: str = "auto",
        adjoint: diffrax.AbstractAdjoint | None = None,
    ):
        if callable(lr):
            self.lr = lr
        else:
            check_real("lr", lr, positive=True)
            # A concrete rate is a Python float: static under jit, as before arrays were allowed.
            self.lr = lr if isinstance(lr, jax.core.Tracer) else float(lr)
        check_optimizer(optimizer)
        if (num_steps is None) == (t1 is None):
            raise TypeError(
                "give GradientDescent either `num_steps` or `t1` (the time to run to), not "
                f"{'both' if t1 is not None else 'neither'}."
            )
        self.to_time = None
        if t1 is None and max_steps is not None:
            raise TypeError(
                "`max_steps` bounds a run to `t1` at a traced rate; with `num_steps`, the "
                "run takes exactly that many: give one of them."
            )
        if t1 is not None:
            if callable(lr):
                raise ValueError(
                    "`t1` sets the number of steps from a constant rate: with a schedule as "
                    "`lr`, give `num_steps`."
                )
            if isinstance(t1, jax.core.Tracer):
                raise TypeError(
                    "`t1` must be a number: the run's end is fixed when it compiles (vmap "
                    "over `lr` to run several rates to one time)."
                )
            check_real("t1", t1, positive=True)
            self.to_time = float(t1)
            if max_steps is not None:
                max_steps = check_positive_int("max_steps", max_steps)
            if self._traced():
                if max_steps is None:
                    raise ValueError(
                        "`t1` with a traced `lr` (under jax.vmap, or a sweep's vmapped axis) "
                        "needs `max_steps`, at least the steps of the smallest rate (t1/lr, "
                        "or t1(1-β)/lr with momentum β): the loop's length is fixed when it "
                        "compiles, and each rate stops at its own number of steps."
                    )
                num_steps = max_steps
            else:
                # The time axis of a constant rate does not depend on the number of steps;
                # the count is rounded in the rate's precision, as a traced rate's is.
                scale = time_axis(optimizer, self.lr, lambda k: np.full(len(k), lr), 64)[1]
                dt = np.asarray(self.lr * scale, jnp.result_type(float))
                num_steps = nearest_steps(self.to_time, dt)
                check_steps_to(self.to_time, self.lr, num_steps, max_steps)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.kernel = check_choice("kernel", kernel, ("auto", "pallas", "generic"))
        self.optimizer = optimizer
        adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        if type(adjoint) not in LOOPS:
            raise TypeError(
                "`adjoint` for GradientDescent must be diffrax.RecursiveCheckpointAdjoint(), "
                "diffrax.ForwardMode() or diffrax.DirectAdjoint() (steps are discrete: there "
                f"is no continuous adjoint to solve); got {type(adjoint).__name__}."
            )
        self.adjoint = adjoint
        rates = self._rates()  # a schedule that fails or is not positive fails here
        if self._traced() or isinstance(rates, jax.core.Tracer):
            if isinstance(optimizer, optax.GradientTransformation):
                raise TypeError(
                    "a traced `lr` (under jax.vmap or jax.grad) cannot be checked against a "
                    "ready-made optimizer: give the optimizer as a factory that takes the "
                    "rate (e.g. optax.adam, functools.partial(optax.sgd, momentum=0.9))."
                )
            # The factory's kind and momentum, at unit rate: they do not depend on it.
            self.time_axis, self.time_scale = time_axis(
                optimizer, 1.0, lambda k: np.ones(len(k)), self.num_steps
            )
        else:
            rate = self.lr if rates is None else self._rate

            def rate_at(k):
                return np.full(len(k), self.lr) if rates is None else rates[np.asarray(k)]

            self.time_axis, self.time_scale = time_axis(optimizer, rate, rate_at, self.num_steps)

    def check(self, loss_fn, stop) -> None:
        if not callable(self.lr):
            check_real("lr", self.lr, positive=True)  # a rate made traced, now known
        if self.to_time is not None and isinstance(self.lr, jax.Array) and not self._traced():
            check_steps_to(self.to_time, float(self.lr), self.steps(), self.num_steps)
        if self.kernel != "pallas":
            return
        if self.optimizer is not None or callable(self.lr):
            raise ValueError(
                'kernel="pallas" runs plain gradient descent at a constant rate: give no '
                "`optimizer` and a number as `lr`."
            )
        if offered(loss_fn, "descend") is None:
            raise ValueError(
                'kernel="pallas" needs a loss that offers `descend`, such as the ImpulseLoss '
                "of a DiagonalRNN with in_dim = out_dim = 1 (bound with `.bind(model)`) and "
                "train_len ≤ 32."
            )

    def needs_key(self, loss_fn) -> bool:
        return offered(loss_fn, "sample") is not None

    def run(self, objective: Objective, params, *, save, stop, metrics, key=None) -> Trajectory:
        steps = self.save_steps(save)
        end = want = self.steps()  # traced for a run to t1 at a traced rate
        if isinstance(want, jax.Array):  # at most `num_steps` in all, its bound
            end, steps = jnp.minimum(want, self.num_steps), jnp.minimum(steps, self.num_steps)
        flow_times = self.flow_times()
        xp = jnp if isinstance(steps, jax.Array) else np
        # Steps to take before each save (the first save is after steps[0] steps), then the
        # rest of the run up to t1, whose metrics are dropped: a run always ends at t1.
        counts = xp.diff(steps, prepend=0)
        num_saves = len(counts)
        counts = xp.append(counts, end - steps[-1])
        max_count = int(np.max(counts)) if xp is np else self.num_steps
        below = -np.inf if stop.loss_below is None else stop.loss_below

        def time(n):
            return n * self._dt if flow_times is None else jnp.asarray(flow_times)[n]

        def running(value):
            return jnp.isfinite(value) & (value <= stop.loss_above) & ~(value < below)

        lr = self._rate if callable(self.lr) else self.lr
        if isinstance(lr, jax.Array):
            # A traced rate in the parameters' precision, as a Python float is used: the
            # steps are then bitwise those of a separate run at that rate.
            lr = lr.astype(jnp.result_type(*jax.tree.leaves(params)))
        fused = (
            self.kernel != "generic"
            and self.optimizer is None
            and not callable(lr)
            and offered(objective.loss_fn, "descend") is not None
            and not self.needs_key(objective.loss_fn)
            and not isinstance(self.adjoint, diffrax.DirectAdjoint)
            and not has_parts(params)  # `descend` takes the loss's own, complex, leaves
        )
        # Saves at the start and the end, or the end only: one loop, written out (no scan
        # around it, whose derivative doubles the loops to trace and compile), and without
        # a loss to stop at it runs to the end (unless a seed diverges).
        unrolled = xp is np and np.count_nonzero(counts) <= 1
        full = unrolled and stop.loss_below is None
        loop = while_loop(self.adjoint, max_count, full=full)
        if fused:
            advance, init = fused_steps(
                objective,
                params,
                lr=lr,
                running=running,
                loop=loop,
                kernel=self.kernel,
                differentiate=isinstance(self.adjoint, diffrax.RecursiveCheckpointAdjoint),
            )
        else:
            advance, init = optimizer_steps(
                objective,
                params,
                lr=lr,
                optimizer=self.optimizer,
                running=running,
                loop=loop,
                fast=self.kernel == "auto",
                key=key,
            )

        def measure(state):
            params, _, n, _ = state
            return metrics(time(n), objective.params(params)), params if save.params else None

        def segment(state, count):
            state = advance(state, count)
            return state, measure(state)

        if unrolled:
            state, saved = init, []
            for i, count in enumerate(counts):
                if count:
                    state = advance(state, jnp.asarray(count, jnp.int32))
                if i < num_saves:
                    saved.append(measure(state))
            saved = jax.tree.map(lambda *x: jnp.stack(x), *saved)
        else:
            state, saved = jax.lax.scan(segment, init, jnp.asarray(counts, dtype=jnp.int32))
        final, value, n, _ = state
        # One gradient per step, and, for a seed that stopped, one at the state it
        # stopped in; the fused loop also evaluates one at the state its last step lands in.
        num_grad_evals = n + 1
        if not fused:  # the loss the loop last looked at may be one step behind
            value = final_value(objective, state)
            num_grad_evals = n + stopped(state)
        diverged = ~jnp.isfinite(value) | (value > stop.loss_above)
        result = jnp.where(value < below, Result.converged, Result.finished)
        if isinstance(want, jax.Array):  # more steps to t1 than the bound allowed
            short = (n < want) & (result == Result.finished)
            result = jnp.where(short, Result.max_steps_reached, result)
        result = jnp.where(diverged, Result.diverged, result)
        saved, saved_params = jax.tree.map(lambda x: x[:num_saves], saved)
        return Trajectory(
            ts=jnp.asarray(self.save_times(save)),
            metrics=saved,
            params=saved_params,
            final=final,
            t_stop=time(n),
            result=result,
            num_steps=n,
            num_grad_evals=num_grad_evals,
            time_axis=self.time_axis,
        )
