"""The loops of gradient-descent steps between two saves, and how they are differentiated.

Each builder returns `advance(state, count)`, which takes up to `count` steps from `state`
(a seed stops stepping once `running(loss)` fails), and the initial state. The state
carries the parameters, the loss at them and the steps taken.
"""

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import optax

from ..objective import Objective, offered
from .optimizer_rate import build

# How each adjoint runs the loop (`equinox.internal.while_loop`): reverse mode with
# recursive checkpointing, forward mode, or both (a bounded loop).
LOOPS = {
    diffrax.RecursiveCheckpointAdjoint: "checkpointed",
    diffrax.ForwardMode: "lax",
    diffrax.DirectAdjoint: "bounded",
}


def while_loop(adjoint, max_steps: int):
    """`loop(cond, body, init)` of at most `max_steps` iterations, of the kind `adjoint` asks."""
    kind = LOOPS[type(adjoint)]
    checkpoints = getattr(adjoint, "checkpoints", None)

    def loop(cond, body, init):
        return eqxi.while_loop(
            cond, body, init, max_steps=max_steps, kind=kind, checkpoints=checkpoints
        )

    return loop


def optimizer_steps(objective: Objective, params, *, lr, optimizer, running, loop, fast, key):
    """Steps of `optimizer` (default plain SGD; a factory is called with `lr`), with the
    loss's own `value_and_grad` where `fast` and offered. A loss that offers `sample` (a
    [`rnnflow.Minibatch`][]) is stepped on a minibatch drawn from `key` at every step, and
    `running` judges the full loss, as the stochastic flow does and the Minibatch says (a
    minibatch's loss would stop a run on one lucky draw). State: (params, loss, steps
    taken, (optimizer state, gradient[, key]))."""
    opt = build(optimizer, lr)
    sample = offered(objective.loss_fn, "sample")

    def value_and_grad(p, key):
        if sample is None:
            return objective.value_and_grad(p, fast=fast)
        batch = sample(key)
        grad = jax.grad(lambda q: objective.loss_fn.batch_loss(objective.params(q), batch))(p)
        return objective.value(p), grad

    def draw(state):  # the key for the next gradient, and the state carrying the rest
        if sample is None:
            return None, state
        key, sub = jax.random.split(state[-1])
        return sub, state[:-1] + (key,)

    # The loop carries the loss and gradient at the current parameters, so its condition
    # checks each state before a step is taken from it: a seed that diverged or converged
    # takes no step (under vmap, the batched loop keeps its carry), and the step itself
    # needs no masking.
    def step(carry):
        i, (params, _, n, inner) = carry
        sub, inner = draw(inner)
        updates, opt_state = opt.update(inner[1], inner[0], params)
        params = optax.apply_updates(params, updates)
        value, grad = value_and_grad(params, sub)
        return i + 1, (params, value, n + 1, (opt_state, grad) + inner[2:])

    def advance(state, count):
        # A while loop: a seed that has stopped takes no more steps, and under vmap the
        # batch leaves the loop as soon as every seed has stopped.
        def cond(carry):
            i, (_, value, _, _) = carry
            return (i < count) & running(value)

        return loop(cond, step, (0, state))[1]

    keys = () if sample is None else (key,)
    sub, keys = draw(keys)
    value, grad = value_and_grad(params, sub)
    return advance, (params, value, jnp.asarray(0), (opt.init(params), grad) + keys)


def fused_steps(objective: Objective, params, *, lr, running, loop, kernel, differentiate):
    """Plain gradient descent through the loss's own `descend` (many steps, fused). With
    `differentiate`, reverse-mode derivatives are those of the same steps taken by
    `optimizer_steps`, recomputed on the backward pass. State: (params, loss, steps, None)."""
    fixed = objective.fixed

    def descend(vjp_arg, count):
        p, value, loss_fn, lr = vjp_arg
        p, value, taken = loss_fn.descend(
            eqx.combine(p, fixed), value, count, lr=lr, running=running, kernel=kernel
        )
        return eqx.filter(p, eqx.is_inexact_array), value, taken

    if differentiate:

        def recompute(vjp_arg, count):
            p, _, loss_fn, lr = vjp_arg
            advance, init = optimizer_steps(
                Objective(loss_fn, fixed),
                p,
                lr=lr,
                optimizer=None,
                running=running,
                loop=loop,
                fast=False,
                key=None,
            )
            p, value, n, _ = advance(init, count)
            return p, value, n

        descend = _backward_by(descend, recompute)

    def advance(state, count):
        p, value, n, _ = state
        p, value, taken = descend((p, value, objective.loss_fn, lr), count)
        return p, value, n + taken, None

    return advance, (params, objective.value(params), jnp.asarray(0), None)


def _backward_by(fast, slow):
    """`fast(vjp_arg, count)`, differentiated in reverse mode as `slow`, which computes the
    same function another way (`fast` itself need not be differentiable)."""

    @eqx.filter_custom_vjp
    def fn(vjp_arg, count):
        return fast(vjp_arg, count)

    @fn.def_fwd
    def fn_fwd(perturbed, vjp_arg, count):
        return fast(vjp_arg, count), None

    @fn.def_bwd
    def fn_bwd(residuals, grad_out, perturbed, vjp_arg, count):
        out, vjp = eqx.filter_vjp(lambda arg: slow(arg, count), vjp_arg)
        grad_out = jax.tree.map(
            lambda g, o: g if g is not None or o is None else jnp.zeros_like(o),
            grad_out,
            eqx.filter(out, eqx.is_inexact_array),
            is_leaf=lambda x: x is None,
        )
        return vjp(grad_out)[0]

    return fn
