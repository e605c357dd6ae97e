import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_positive_int, check_real
from .._trajectory import Result, Save, Trajectory
from .base import AbstractMethod


class GradientDescent(AbstractMethod):
    """Discrete gradient descent (or any optax optimizer), run inside `lax.scan`.

    **Arguments:**

    - `lr`: the step size η. It also sets the time axis: step $n$ is time $nη$, so that
      gradient descent is the explicit Euler discretisation of the gradient flow.
    - `num_steps`: how many steps to take; the run ends at `t1 = lr * num_steps`.
    - `optimizer`: any `optax.GradientTransformation` (momentum, adam, schedules, ...).
      Default `optax.sgd(lr)`, plain gradient descent.

    Only the save times cost memory: between saves the loop keeps just the parameters and
    optimizer state. A seed that converges or diverges (see [`rnnflow.Stop`][]) stops
    updating, while the others go on.

    ```python
    method = GradientDescent(lr=0.01, num_steps=10_000)
    method = GradientDescent(lr=0.01, num_steps=10_000, optimizer=optax.adam(0.01))
    ```
    """

    lr: float = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)
    optimizer: optax.GradientTransformation = eqx.field(static=True)

    def __init__(self, lr: float, num_steps: int, optimizer=None):
        check_real("lr", lr, positive=True)
        self.lr = float(lr)
        self.num_steps = check_positive_int("num_steps", num_steps)
        if optimizer is None:
            optimizer = optax.sgd(self.lr)
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                "`optimizer` must be an optax.GradientTransformation (e.g. optax.sgd(lr), "
                f"optax.adam(lr)); got {type(optimizer).__name__}."
            )
        self.optimizer = optimizer

    @property
    def t1(self) -> float:
        return self.lr * self.num_steps

    def save_steps(self, save: Save) -> np.ndarray:
        """The step indices saved at: the nearest step to each save time, or every `every`."""
        if save.every is not None:
            steps = np.arange(0, self.num_steps + 1, save.every)
            if steps[-1] != self.num_steps:
                steps = np.append(steps, self.num_steps)
            return steps
        return np.rint(save.times(self.t1) / self.lr).astype(np.int64)

    def save_times(self, save: Save) -> np.ndarray:
        return self.save_steps(save) * self.lr

    def run(self, objective, params, *, save, stop, metrics) -> Trajectory:
        value_and_grad = objective.value_and_grad
        steps = self.save_steps(save)
        # Steps to take before each save (the first save is after steps[0] steps), then the
        # rest of the run up to t1, whose metrics are dropped: a run always ends at t1.
        counts = np.diff(steps, prepend=0)
        tail = self.num_steps - int(steps[-1])
        counts = jnp.asarray(np.append(counts, tail) if tail else counts, dtype=jnp.int32)
        opt = self.optimizer
        below = -np.inf if stop.loss_below is None else stop.loss_below

        def running(value):
            return jnp.isfinite(value) & (value <= stop.loss_above) & ~(value < below)

        # The carry holds the loss and gradient at the current parameters, so the loop's
        # condition checks each state before a step is taken from it: a seed that diverged
        # or converged takes no step (under vmap, the batched loop keeps its carry), and the
        # step itself needs no masking.
        def step(carry):
            i, (params, opt_state, _, grad, n) = carry
            updates, opt_state = opt.update(grad, opt_state, params)
            params = optax.apply_updates(params, updates)
            value, grad = value_and_grad(params)
            return i + 1, (params, opt_state, value, grad, n + 1)

        def segment(state, count):
            # A while loop, not a fori loop: a seed that has stopped takes no more steps, and
            # under vmap the batch leaves the loop as soon as every seed has stopped.
            def cond(carry):
                i, (_, _, value, _, _) = carry
                return (i < count) & running(value)

            _, state = jax.lax.while_loop(cond, step, (0, state))
            params, _, _, _, n = state
            out = metrics(n * self.lr, params)
            return state, (out, params if save.params else None)

        value, grad = value_and_grad(params)
        init = (params, opt.init(params), value, grad, jnp.asarray(0))
        (final, _, value, _, n), saved = jax.lax.scan(segment, init, counts)
        diverged = ~jnp.isfinite(value) | (value > stop.loss_above)
        result = jnp.where(value < below, Result.converged, Result.finished)
        result = jnp.where(diverged, Result.diverged, result)
        saved, saved_params = jax.tree.map(lambda x: x[: len(steps)], saved)
        return Trajectory(
            ts=jnp.asarray(steps * self.lr),
            metrics=saved,
            params=saved_params,
            final=final,
            t_stop=n * self.lr,
            result=result,
            num_steps=n,
            num_grad_evals=n + 1,  # at the start and after every step
        )
