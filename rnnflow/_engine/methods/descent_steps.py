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


# Reverse mode through a loop whose states fit in this many bytes (per seed) keeps every
# state instead of recomputing them from O(sqrt(steps)) checkpoints: the backward pass is
# then one loop, as for a hand-written `lax.scan`, and compiles in 0.7x the time (a
# hypergradient through 100 steps of an LRU-style model).
_KEEP_ALL_STATES_BYTES = 2**18


def while_loop(adjoint, max_steps: int, *, full: bool = False):
    """`loop(cond, body, init)` of at most `max_steps` iterations, of the kind `adjoint` asks.
    `full`: every call is meant to run all `max_steps` (a seed may still stop, rarely: on
    diverging), so that a loop kept whole for reverse mode may run as a scan."""
    kind = LOOPS[type(adjoint)]
    checkpoints = getattr(adjoint, "checkpoints", None)

    def loop(cond, body, init):
        n = checkpoints
        if n is None and kind == "checkpointed":
            state = sum(jnp.size(x) * jnp.result_type(x).itemsize for x in jax.tree.leaves(init))
            n = max_steps if max_steps * state <= _KEEP_ALL_STATES_BYTES else None
            if n is not None and full:
                return _scan_loop(cond, body, init, max_steps)
        return eqxi.while_loop(cond, body, init, max_steps=max_steps, kind=kind, checkpoints=n)

    return loop


def _scan_loop(cond, body, init, length):
    """The loop as a `lax.scan` of `length` iterations that stop changing the state once
    `cond` fails: JAX differentiates it as it does a hand-written loop, keeping every state
    (each step recomputed from its state on the way back), with less to trace and compile
    than a checkpointed while loop."""

    @jax.checkpoint
    def step(state, _):
        go = cond(state)
        return jax.tree.map(lambda new, old: jnp.where(go, new, old), body(state), state), None

    return jax.lax.scan(step, init, length=length)[0]


def optimizer_steps(objective: Objective, params, *, lr, optimizer, running, loop, fast, key):
    """Steps of `optimizer` (default plain SGD; a factory is called with `lr`), with the
    loss's own `value_and_grad` where `fast` and offered. A loss that offers `sample` (a
    [`rnnflow.Minibatch`][]) is stepped on a minibatch drawn from `key` at every step, and
    `running` judges the full loss, as the stochastic flow does and the Minibatch says (a
    minibatch's loss would stop a run on one lucky draw). State: (params, loss, steps
    taken, (optimizer state, running[, key])), where the loss is the last one the loop
    evaluated: at the parameters if the seed stopped, else (the count reached) at those
    one step before; `final_value` gives the loss at the parameters."""
    opt = build(optimizer, lr)
    sample = offered(objective.loss_fn, "sample")

    def value_and_grad(p, key):
        if sample is None:
            return objective.value_and_grad(p, fast=fast)
        batch = sample(key)
        grad = jax.grad(lambda q: objective.loss_fn.batch_loss(objective.params(q), batch))(p)
        return objective.value(p), grad

    def draw(keys):  # the key for this step's gradient, and the keys carried on
        if sample is None:
            return None, keys
        key, sub = jax.random.split(keys[0])
        return sub, (key,)

    # Each iteration evaluates the loss and gradient at the current parameters, then steps
    # only if the loss says the seed is running: a seed that diverged or converged takes
    # no step, and the loop ends once it has looked (under vmap, once every seed has). The
    # gradient is not carried from one iteration to the next, so the program holds one
    # copy of its code, as a hand-written loop would. A seed that stopped stays stopped
    # (its parameters no longer change) and is not looked at again.
    def step(carry):
        i, (params, _, n, (opt_state, _, *keys)) = carry
        sub, moved_keys = draw(tuple(keys))
        value, grad = value_and_grad(params, sub)
        go = running(value)
        updates, moved_state = opt.update(grad, opt_state, params)
        moved = (optax.apply_updates(params, updates), (moved_state,) + moved_keys)
        params, (opt_state, *keys) = jax.tree.map(
            lambda new, old: jnp.where(go, new, old), moved, (params, (opt_state, *keys))
        )
        return i + 1, (params, value, n + go, (opt_state, go, *keys))

    def advance(state, count):
        def cond(carry):
            i, (_, _, _, (_, live, *_)) = carry
            return (i < count) & live

        return loop(cond, step, (0, state))[1]

    keys = () if sample is None else (key,)
    value = jax.eval_shape(objective.value, params)
    value = jnp.zeros(value.shape, value.dtype)  # not yet looked at
    return advance, (params, value, jnp.asarray(0), (opt.init(params), jnp.asarray(True)) + keys)


def stopped(state):
    """Whether the seed of an `optimizer_steps` state has stopped: its loss was looked at
    and said so, and it will take no more steps."""
    return ~state[3][1]


def final_value(objective: Objective, state):
    """The loss at the parameters of an `optimizer_steps` state."""
    return objective.value(state[0])


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
            state = advance(init, count)
            return state[0], final_value(Objective(loss_fn, fixed), state), state[2]

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
