r"""What gradient descent must know of an optax optimizer: that its rate is `lr`, and
which time axis its steps lie on.

**One rate.** The rate is given once, as `GradientDescent`'s `lr`: an optax factory
(`optax.adam`, `functools.partial(optax.sgd, momentum=0.9)`) is called with it; a
transformation whose rate is injected (`optax.inject_hyperparams(optax.adam)(
learning_rate=...)`) or can be read from its final scaling (every optax alias ends in
one: `optax.adam(0.01)`) must have the same rate at every step, or it is refused.

**The time axis.** The optimizer is probed by its updates for a constant gradient $g$ on
one scalar parameter (8 steps, at the run's rates $η_k$). If they are linear in $g$ and
are those of heavy-ball momentum $m_k = g + βm_{k-1}$, $u_k = -η_k m_k$ (or Nesterov's,
$u_k = -η_k(g + βm_k)$), $β \in [0, 1)$ (plain SGD: $β = 0$), then a step moves along
$-\nabla L$ by $η_k/(1-β)$ in the small-step limit, and the steps lie on the gradient
flow's time axis at $t_n = \sum_{k<n} η_k/(1-β)$. Any other optimizer (Adam, RMSProp,
Adagrad, Lion, ...) rescales the gradient by its own history: it has no gradient-flow
limit, and its time axis is $\sum_{k<n} η_k$, the sum of its rates, not flow time.
"""

import types

import jax.numpy as jnp
import numpy as np
import optax

FLOW = "flow time"
RATE_SUM = "sum of rates"
_PROBE = 8


def build(optimizer, rate) -> optax.GradientTransformation:
    """The transformation that steps at `rate` (a number, array or schedule)."""
    if optimizer is None:
        return optax.sgd(rate)
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    return optimizer(rate)


def check_optimizer(optimizer) -> None:
    """Raise a `TypeError` unless `optimizer` is `None`, a transformation or a factory."""
    if optimizer is None or isinstance(optimizer, optax.GradientTransformation):
        return
    if not callable(optimizer) or isinstance(optimizer, type):
        raise TypeError(
            "`optimizer` must be an optax factory taking the rate (e.g. optax.adam, "
            "functools.partial(optax.sgd, momentum=0.9)) or an optax.GradientTransformation; "
            f"got {type(optimizer).__name__}."
        )
    try:
        made = optimizer(0.1)
    except Exception as e:  # the user's factory: say what it was given
        raise TypeError(
            f"`optimizer` was taken for an optax factory, but optimizer(0.1) failed: "
            f"{type(e).__name__}: {e}"
        ) from e
    if not isinstance(made, optax.GradientTransformation):
        raise TypeError(
            "`optimizer` must be an optax factory taking the rate (e.g. optax.adam) or an "
            f"optax.GradientTransformation; optimizer(0.1) gave {type(made).__name__}."
        )


def _cells(fn) -> dict:
    code, closure = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
    if code is None or closure is None:
        return {}
    return dict(zip(code.co_freevars, (c.cell_contents for c in closure), strict=True))


def _scalings(obj, seen, depth=0):
    """The final scalings found in the closures of an optax transformation's update:
    `optax.scale(step_size)` and `optax.scale_by_schedule(step_size_fn)`."""
    if id(obj) in seen or depth > 16:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _scalings(x, seen, depth + 1)
    elif isinstance(obj, optax.GradientTransformation):
        yield from _scalings(obj.update, seen, depth + 1)
    elif isinstance(obj, types.FunctionType):
        cells = _cells(obj)
        if obj.__qualname__.startswith("scale.") and "step_size" in cells:
            yield lambda count, s=cells["step_size"]: -s
        elif obj.__qualname__.startswith("scale_by_schedule.") and "step_size_fn" in cells:
            yield lambda count, f=cells["step_size_fn"]: -f(count)
        else:
            for value in cells.values():
                yield from _scalings(value, seen, depth + 1)


def _at(state, k):
    """An `inject_hyperparams` state at step count `k` (a schedule keeps its own count)."""
    k = jnp.asarray(k, jnp.int32)
    state = state._replace(count=k)
    inner = getattr(state, "hyperparams_states", None)
    if isinstance(inner, dict):
        inner = {n: s._replace(count=k) if hasattr(s, "count") else s for n, s in inner.items()}
        state = state._replace(hyperparams_states=inner)
    return state


def own_rates(opt: optax.GradientTransformation, counts) -> np.ndarray | None:
    """The rates `opt` steps at, at step `counts`, where they can be read: injected
    (`optax.inject_hyperparams`) or the one final scaling of an optax alias. `None` if
    they cannot be read."""
    state = opt.init(jnp.zeros(()))
    hyper = getattr(state, "hyperparams", None)
    if isinstance(hyper, dict) and "learning_rate" in hyper:
        rates = []
        for k in counts:  # the injected schedule, evaluated at count k by one update
            rates.append(opt.update(jnp.zeros(()), _at(state, k), jnp.zeros(()))[1].hyperparams)
        return np.asarray([r["learning_rate"] for r in rates], np.float64)
    found = list(_scalings(opt, set()))
    if len(found) != 1:
        return None
    return np.asarray([found[0](jnp.asarray(k, jnp.int32)) for k in counts], np.float64)


def _updates(opt, g: float, steps: int) -> np.ndarray:
    """The updates of `opt` on one scalar parameter for the constant gradient `g`."""
    dtype = jnp.result_type(float)
    p, out = jnp.zeros((), dtype), []
    state = opt.init(p)
    for _ in range(steps):
        u, state = opt.update(jnp.asarray(g, dtype), state, p)
        p = p + u
        out.append(float(u))
    return np.asarray(out)


def _momentum(c: np.ndarray, rtol: float) -> float | None:
    """β if the normalised updates `c` (for a unit gradient) are heavy ball's,
    $c_k = \\sum_{j \\le k} β^j$, or Nesterov's, $c_k = \\sum_{j \\le k+1} β^j$."""
    beta = (c[1] - 1) / c[0]
    if -rtol < beta < 0:  # plain SGD whose rate rounds down in float32 (0.01 → 0.0099999998)
        beta = 0.0
    if not 0 <= beta < 1:
        return None
    powers = beta ** np.arange(len(c) + 1)
    for lag in (0, 1):
        model = np.cumsum(powers)[lag : lag + len(c)]
        if np.allclose(c, model, rtol=rtol, atol=0):
            return float(beta)
    return None


def time_axis(optimizer, rate, rate_at, num_steps: int) -> tuple[str, float]:
    """`(axis, scale)`: the time axis of `optimizer` at `rate` ([`FLOW`][] or
    [`RATE_SUM`][]) and the flow time per unit of rate ($1/(1-β)$; 1 for the rate sum).
    `rate_at(steps)` gives the run's rates (float64) at those steps of `num_steps`.
    Raises a `ValueError` where the optimizer's own rate can be seen to differ from
    them by more than 1e-5 relative (optax evaluates its schedules in float32)."""
    if optimizer is None:
        return FLOW, 1.0
    opt = build(optimizer, rate)
    rtol = max(1e-5, 1e3 * float(jnp.finfo(jnp.result_type(float)).eps))
    if isinstance(optimizer, optax.GradientTransformation):
        counts = np.unique(np.linspace(0, num_steps - 1, _PROBE).round().astype(int))
        own, want = own_rates(opt, counts), rate_at(counts)
        if own is not None and not np.allclose(own, want, rtol=rtol, atol=0):
            raise ValueError(
                f"`optimizer` steps at rates {own} at steps {counts}, while `lr` gives "
                f"{want}: give the rate once, as `lr`, with the optimizer as a factory "
                "(e.g. `GradientDescent(lr, num_steps, optimizer=optax.adam)`)."
            )
    steps = min(_PROBE, num_steps)
    rates = rate_at(np.arange(steps))
    unit, triple = _updates(opt, 1.0, steps), _updates(opt, 3.0, steps)
    if np.allclose(triple, 3 * unit, rtol=rtol, atol=0) and np.all(unit != 0):
        c = -unit / rates
        beta = _momentum(c, rtol) if steps > 1 else (0.0 if np.isclose(c[0], 1, rtol) else None)
        if beta is None:
            raise ValueError(
                "`optimizer` moves linearly with the gradient but not as SGD with momentum "
                f"at the rate `lr`: for a unit gradient its first steps are {-unit[:3]}, "
                f"while `lr` gives {rates[:3]}. Give the rate once, as `lr`, with the "
                "optimizer as a factory (optax.sgd, functools.partial(optax.sgd, "
                "momentum=0.9))."
            )
        # β is probed to rounding; a hyperparameter given in decimals is recovered exactly.
        beta = float(np.round(beta, 12 if jnp.result_type(float) == jnp.float64 else 6))
        return FLOW, 1.0 / (1.0 - beta)
    return RATE_SUM, 1.0
