import hashlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import _fused
from .._checks import check_choice, check_positive_int, check_real
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
    - `kernel`: how plain gradient descent on the impulse loss of a diagonal single-input
      single-output student (train length ≤ 32) is computed. `"auto"` (default): with the
      closed-form gradient, the whole batch of seeds as one loop over `(seeds, d)` arrays;
      `"pallas"`: the same as one Pallas kernel per block of 16 seeds, parameters kept on
      chip across steps (for GPUs; elsewhere it runs in Pallas's slow interpreter);
      `"generic"`: by autodiff, seed by seed under vmap, as every other case is. All
      three agree to rounding.

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
    kernel: str = eqx.field(static=True)
    plain: bool = eqx.field(static=True)  # the optimizer is plain gradient descent

    def __init__(self, lr: float, num_steps: int, optimizer=None, *, kernel: str = "auto"):
        check_real("lr", lr, positive=True)
        self.lr = float(lr)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.kernel = check_choice("kernel", kernel, ("auto", "pallas", "generic"))
        self.plain = optimizer is None
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

    def settings(self, params) -> str:
        """The fields, and for an optax optimizer a digest of what it does: its
        hyperparameters live in closures, which print as `<function chain...>`. The digest
        is of its updates over the first few steps, from fixed gradients, at the shapes
        and dtypes of `params`; optimizers that first differ later (a schedule changing
        after step 4) look the same."""
        text = super().settings(params)
        if self.plain:
            return text
        leaves, treedef = jax.tree.flatten(params)

        def fixed(f):  # a pytree like `params` with entries f(1), f(2), ...
            xs = [f(np.arange(1, x.size + 1)).reshape(x.shape).astype(x.dtype) for x in leaves]
            return jax.tree.unflatten(treedef, [jnp.asarray(x) for x in xs])

        p = fixed(np.sin)
        state = self.optimizer.init(p)
        digest = hashlib.sha256()
        for step in range(1, 5):
            grads = fixed(lambda i: np.cos(step * i))
            updates, state = self.optimizer.update(grads, state, p)
            p = optax.apply_updates(p, updates)
            for u in jax.tree.leaves(updates):
                # 16 bits of mantissa: the last bits may round differently on another CPU.
                m, e = np.frexp(np.asarray(u, np.float64))
                digest.update(np.rint(m * 2**16).astype(np.int32).tobytes() + e.tobytes())
        return f"{text}; optimizer updates {digest.hexdigest()[:16]}"

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

    def check(self, model, loss) -> None:
        if self.kernel == "pallas" and not (
            self.plain and _fused.diagonal_impulse_target(model, loss) is not None
        ):
            raise ValueError(
                'kernel="pallas" needs plain gradient descent (no `optimizer`) on the '
                "ImpulseLoss of a DiagonalRNN with in_dim = out_dim = 1 and train_len ≤ "
                f"{_fused.MAX_TRAIN_LEN}."
            )

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

        # The state is (params, loss at params, steps taken, optimizer state and gradient).
        target = objective.diagonal_impulse
        if self.plain and self.kernel != "generic" and target is not None:
            kernel = "pallas" if self.kernel == "pallas" else "arrays"

            def advance(state, count):  # the same rule, fused over the batch of seeds
                params, value, n, _ = state
                params, value, taken = _fused.descend(
                    params, value, count, target, lr=self.lr, running=running, kernel=kernel
                )
                return params, value, n + taken, None

            init = (params, objective.value(params), jnp.asarray(0), None)
        else:
            # The loop carries the loss and gradient at the current parameters, so its
            # condition checks each state before a step is taken from it: a seed that
            # diverged or converged takes no step (under vmap, the batched loop keeps its
            # carry), and the step itself needs no masking.
            def step(carry):
                i, (params, _, n, (opt_state, grad)) = carry
                updates, opt_state = opt.update(grad, opt_state, params)
                params = optax.apply_updates(params, updates)
                value, grad = value_and_grad(params)
                return i + 1, (params, value, n + 1, (opt_state, grad))

            def advance(state, count):
                # A while loop, not a fori loop: a seed that has stopped takes no more
                # steps, and under vmap the batch leaves the loop as soon as every seed
                # has stopped.
                def cond(carry):
                    i, (_, value, _, _) = carry
                    return (i < count) & running(value)

                return jax.lax.while_loop(cond, step, (0, state))[1]

            value, grad = value_and_grad(params)
            init = (params, value, jnp.asarray(0), (opt.init(params), grad))

        def segment(state, count):
            state = advance(state, count)
            params, _, n, _ = state
            out = metrics(n * self.lr, params)
            return state, (out, params if save.params else None)

        (final, value, n, _), saved = jax.lax.scan(segment, init, counts)
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
