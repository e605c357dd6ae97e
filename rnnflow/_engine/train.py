"""`train`: one seed, one loss, one method, one `Trajectory`.

[`rnnflow.train_seeds`][] (in `batch.py`) runs the same function over a seed axis.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from .methods import AbstractMethod
from .objective import Objective, check_params, metric_fn, split_real
from .real_view import to_complex
from .rule import check_direction, judged
from .trajectory import Save, Stop, Trajectory


def check_kinds(loss_fn, method, save, stop) -> None:
    """The kinds of the arguments other than `params`, checked before any is used."""
    misplaced = getattr(loss_fn, "not_a_loss", None)
    if isinstance(misplaced, str):  # e.g. a model, given where its bound loss belongs
        raise TypeError(misplaced)
    if not isinstance(method, AbstractMethod):
        raise TypeError(
            "`method` must be GradientDescent, GradientFlow or ModifiedFlow; "
            f"got {type(method).__name__}."
        )
    if not isinstance(save, Save):
        raise TypeError(f"`save` must be an rnnflow.Save; got {type(save).__name__}.")
    if not isinstance(stop, Stop):
        raise TypeError(f"`stop` must be an rnnflow.Stop; got {type(stop).__name__}.")


def check_call(loss_fn, params, method, save, stop, key=None) -> None:
    """Every check that needs no compiling, for one seed's `params` (and `key`); raises a
    `TypeError` or `ValueError` that names the argument."""
    check_kinds(loss_fn, method, save, stop)
    check_params(loss_fn, params)
    check_direction(loss_fn, params)
    if stop.loss_below is not None and not judged(loss_fn):
        raise ValueError(
            "`Stop.loss_below` stops a seed whose loss has converged, and this rule has no "
            "loss: give it one, `Rule(field, loss=...)`, or remove `Stop.loss_below`."
        )
    method.check(loss_fn, stop)
    method.save_times(save)  # raises on save times outside [0, t1]
    if method.needs_key(loss_fn):
        if key is None:
            raise TypeError(
                f"{type(method).__name__} draws random numbers here (minibatches or noise): "
                "give it a PRNG key, `key=` (train) or `keys=` (train_seeds, one per seed)."
            )
        key = jnp.asarray(key)
        if key.shape != () or not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            raise TypeError(f"`key` must be one PRNG key (jax.random.key(0)); got {key.shape}.")


def run(loss_fn, method, trainable, fixed, save, stop, key=None) -> Trajectory:
    """One seed, without checks; the trajectory's parameters are trainable leaves only (so
    that it can be vmapped: the fixed leaves may be functions)."""
    return method.run(
        Objective(loss_fn, fixed),
        trainable,
        save=save,
        stop=stop,
        metrics=metric_fn(save.metrics, loss_fn),
        key=key,
    )


def with_fixed(traj: Trajectory, fixed) -> Trajectory:
    """`traj` with the fixed leaves put back into its parameter pytrees (and complex leaves
    made whole again)."""
    params = None if traj.params is None else eqx.combine(to_complex(traj.params), fixed)
    return eqx.tree_at(
        lambda t: (t.params, t.final),
        traj,
        (params, eqx.combine(to_complex(traj.final), fixed)),
        is_leaf=lambda x: x is None,
    )


_run_jit = eqx.filter_jit(run)


def train(
    loss_fn,
    params: PyTree,
    method: AbstractMethod,
    *,
    save: Save = Save(),
    stop: Stop = Stop(),
    key=None,
) -> Trajectory:
    """Train one seed: minimise `loss_fn(params)` with `method` (or follow a rule's
    field), starting from `params`.

    **Arguments:**

    - `loss_fn`: any `loss_fn(params) -> scalar`: a plain function, an equinox module, or an
      RNN loss bound to its student (`ImpulseLoss(teacher, k).bind(model)`). It may offer
      more (a closed-form `value_and_grad`, `residuals`, `default_metrics`, a `check` of the
      parameters), which the methods use where they can: see the "Bring your own model"
      page of the docs. Or an update rule, [`rnnflow.Rule`][]`(field, loss=None)` (or
      anything that offers `direction(params)`): the methods then move along its field
      $F(θ)$ in place of $-\\nabla L$ (see "Learning rules beyond the gradient").
    - `params`: the initial parameters, any pytree (dict, tuple, `eqx.Module`, ...). Its
      floating-point arrays (JAX or NumPy, real or complex) are trained; other leaves
      (Python numbers, an MLP's activation function) stay as they are. A complex leaf is
      trained as its real and imaginary parts: the run is that of the explicit split
      (see the "Bring your own model" page).
    - `method`: [`rnnflow.GradientDescent`][], [`rnnflow.GradientFlow`][] or
      [`rnnflow.ModifiedFlow`][].
    - `save`: what to record and when ([`rnnflow.Save`][]).
    - `stop`: early stopping on convergence or divergence ([`rnnflow.Stop`][]).
    - `key`: a PRNG key, for runs that draw random numbers: gradient descent on a
      [`rnnflow.Minibatch`][] loss (its minibatches) and [`rnnflow.StochasticFlow`][]
      (its Brownian path). Not needed otherwise.

    **Returns:**

    A [`rnnflow.Trajectory`][]. A run is a JAX function like any other: `jax.vmap` it over
    initial parameters, learning rates, tolerances or teachers, and differentiate any
    function of the trajectory with `jax.grad` (or `jax.jvp`, with
    `adjoint=diffrax.ForwardMode()` on the method). It compiles once per loss structure,
    method, save and stop: new parameters or teacher values of the same shapes do not
    recompile. [`rnnflow.train_seeds`][] runs many seeds with chunking, sharding and
    checkpoints.

    ```python
    def loss_fn(p):  # a two-layer scalar linear network fitting 2.0
        return (p["w2"] * p["w1"] - 2.0) ** 2

    params = {"w1": jnp.asarray(0.1), "w2": jnp.asarray(0.1)}
    traj = train(loss_fn, params, GradientDescent(lr=0.01, num_steps=2000))
    traj.final  # w1 * w2 ≈ 2
    ```
    """
    check_call(loss_fn, params, method, save, stop, key)
    trainable, fixed = split_real(params)
    key = key if method.needs_key(loss_fn) else None
    return with_fixed(_run_jit(loss_fn, method, trainable, fixed, save, stop, key), fixed)
