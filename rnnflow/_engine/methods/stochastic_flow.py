r"""The stochastic flow: the small-step limit of minibatch SGD (Li, Tai and E, 2017).

Minibatch SGD at step $η$ moves by $-η(\nabla L + ξ)$ with noise $ξ$ of mean zero and
covariance $Σ(θ)/B$; to first order in $η$ in the weak sense (moments), it follows the
Itô SDE

$$dθ = -\nabla L(θ)\,dt + \sqrt{η}\,G(θ)\,dW, \qquad G G^\top = Σ(θ)/B,$$

on the same time axis ($t = nη$). With the per-example gradients $g_i$, $G$ is the
$n \times N$ matrix of the centred $g_i$ over $\sqrt{NB}$, driven by an $N$-dimensional
Brownian motion: exact, with no matrix square root (`covariance="exact"`). For many
examples, `covariance="diagonal"` keeps the diagonal of $Σ$ and an $n$-dimensional noise.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

from ..checks import check_choice, check_positive_int, check_real
from ..objective import Objective, offered
from ..trajectory import Save, Trajectory
from .base import AbstractMethod
from .solve_report import read_stopped_solve


class StochasticFlow(AbstractMethod):
    """The SDE $dθ = -\\nabla L\\,dt + \\sqrt{η}\\,G(θ)\\,dW$ of minibatch SGD at step `lr`,
    solved by Euler–Maruyama at a constant step `dt0` (strong order 1/2, weak order 1),
    with a `diffrax.VirtualBrownianTree` per seed, from each seed's key.

    **Arguments:**

    - `lr`: the SGD step size $η$ whose noise the SDE carries (not its time step).
    - `t1`: the end time; `dt0`: the solver's step (default `t1 / 1000`).
    - `covariance`: `"exact"` (every per-example gradient) or `"diagonal"`.
    - `max_steps`: the most steps per seed (default: those `dt0` needs).

    The loss must offer the noise: a [`rnnflow.Minibatch`][] (its `noise_factor`). Train
    with `key=` ([`rnnflow.train`][]) or `keys=` (one per seed): seeds have independent
    Brownian paths, and a seed's path is the same alone or among others.

    ```python
    loss_fn = Minibatch(example_loss, data, batch_size=8)
    traj = train(loss_fn, theta0, StochasticFlow(lr=0.1, t1=20.0), key=jax.random.key(0))
    ```
    """

    lr: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt0: float = eqx.field(static=True)
    covariance: str = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        lr: float,
        t1: float,
        *,
        dt0: float | None = None,
        covariance: str = "exact",
        max_steps: int | None = None,
    ):
        check_real("lr", lr, positive=True)
        check_real("t1", t1, positive=True)
        self.lr, self.t1 = float(lr), float(t1)
        self.dt0 = self.t1 / 1000 if dt0 is None else float(check_real("dt0", dt0, positive=True))
        self.covariance = check_choice("covariance", covariance, ("exact", "diagonal"))
        steps = int(np.ceil(self.t1 / self.dt0 - 1e-9))
        self.max_steps = steps if max_steps is None else check_positive_int("max_steps", max_steps)
        if steps > self.max_steps:
            raise ValueError(
                f"dt0 = {self.dt0:g} needs {steps} steps to t1 = {self.t1:g}, more than "
                f"max_steps = {self.max_steps}."
            )

    def needs_key(self, loss_fn) -> bool:
        return True

    def check(self, loss_fn, stop) -> None:
        if offered(loss_fn, "direction") is not None:
            raise TypeError(
                "StochasticFlow needs the minibatch noise of a loss (an rnnflow.Minibatch's "
                "`noise_factor`), which a rule's field does not have: train the rule with "
                "GradientDescent, GradientFlow or ModifiedFlow."
            )
        if offered(loss_fn, "noise_factor") is None:
            raise TypeError(
                "StochasticFlow needs a loss that offers its gradient noise, "
                f"`noise_factor(params)` (e.g. an rnnflow.Minibatch); got {type(loss_fn).__name__}."
            )

    def save_times(self, save: Save) -> np.ndarray:
        if save.every is not None:
            raise ValueError("`Save.every` counts optimizer steps; give `Save.ts` or `Save.num`.")
        return save.times(self.t1)

    def run(self, objective: Objective, params, *, save, stop, metrics, key=None) -> Trajectory:
        ts = self.save_times(save)
        y0, unravel = ravel_pytree(params)
        scale = jnp.sqrt(jnp.asarray(self.lr, y0.dtype))

        def drift(t, y, obj):
            grad = obj.value_and_grad(unravel(y), fast=False)[1]
            return -ravel_pytree(grad)[0]

        def noise(t, y, obj):
            g = scale * obj.loss_fn.noise_factor(obj.params(unravel(y)))  # (n, N)
            if self.covariance == "diagonal":
                return lx.DiagonalLinearOperator(jnp.sqrt(jnp.sum(g**2, axis=1)))
            return lx.MatrixLinearOperator(g)

        shape = jax.eval_shape(lambda y: noise(0.0, y, objective), y0)
        width = shape.in_size()
        path = diffrax.VirtualBrownianTree(0.0, self.t1, tol=self.dt0 / 2, shape=(width,), key=key)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(noise, path))

        def save_fn(t, y, args):
            return metrics(t, objective.params(unravel(y))), (unravel(y) if save.params else None)

        def diverged(t, y, obj, **kw):
            value = obj.value(unravel(y))
            return ~jnp.isfinite(value) | (value > stop.loss_above)

        conds = {"diverged": diverged}
        if stop.loss_below is not None:
            conds["converged"] = lambda t, y, obj, **kw: obj.value(unravel(y)) < stop.loss_below
        sol = diffrax.diffeqsolve(
            terms,
            diffrax.Euler(),
            t0=0.0,
            t1=self.t1,
            dt0=self.dt0,
            y0=y0,
            args=objective,
            saveat=diffrax.SaveAt(
                subs=[diffrax.SubSaveAt(ts=ts, fn=save_fn), diffrax.SubSaveAt(t1=True)]
            ),
            stepsize_controller=diffrax.ConstantStepSize(),
            event=diffrax.Event(conds),
            max_steps=self.max_steps,
            throw=False,
        )
        saved, saved_params, final_y, t_stop, result = read_stopped_solve(sol, save_fn, conds)
        steps = sol.stats["num_steps"]
        return Trajectory(
            ts=jnp.asarray(ts),
            metrics=saved,
            params=saved_params,
            final=unravel(final_y),
            t_stop=t_stop,
            result=result,
            num_steps=steps,
            num_grad_evals=steps,  # one drift per Euler step (the noise: N more each)
        )
