"""Tsit5 with its stages combined as unrolled sums, not a stage buffer times a tableau row.

diffrax's Runge-Kutta step keeps the stages in a `(7, n)` buffer, filled in a loop over
stages, and forms each stage's argument as the buffer's product with a row of the tableau.
Under `vmap` the buffer is `(seeds, 7, n)`, and on a CPU XLA transposes it to
`(7, seeds·n)` for that product: one copy of the whole buffer per stage, and one more per
step for the error estimate. `UnrolledTsit5` takes the same steps with the stage loop
unrolled, the stages a tuple of flat vectors, and each combination written out,
`y0 + a1·k1 + a2·k2 + …` over the tableau's nonzero coefficients, which XLA fuses into one
pass per stage. It agrees with `diffrax.Tsit5()` to rounding (the sums are taken in
another order). Measured in `benchmarks/tsit5_stages.py` and `benchmarks/gradient_flow.py
--stages`.

The state is raveled to one vector inside the step: with the stages kept as separate
parameter arrays (shapes such as `(d, 1)` and `(1, d)`), XLA compiled the unrolled step
with hundreds of small layout copies and it ran slower than diffrax's loop.
"""

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from diffrax import RESULTS, AbstractLocalInterpolation, Tsit5
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree


def _combine(y0, coeffs, ks):
    """`y0 + Σ coeffs[j]·ks[j]` over the nonzero coefficients (`y0` None: the sum alone)."""
    total = sum(float(c) * k for c, k in zip(coeffs, ks) if c != 0)
    return total if y0 is None else y0 + total


class UnrolledTsit5Interpolation(AbstractLocalInterpolation):
    """Tsit5's fifth-order dense output from a tuple of its seven (flat) stages."""

    t0: float
    t1: float
    y0: PyTree
    k: tuple

    def __init__(self, *, t0, t1, y0, y1, k):
        del y1  # as diffrax's interpolations take it
        self.t0, self.t1, self.y0, self.k = t0, t1, y0, k

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return jtu.tree_map(jnp.subtract, self.evaluate(t1), self.evaluate(t0))
        # The weights b_j(t) of diffrax's Tsit5 dense output: it is linear in the stages,
        # so its value for unit stages (the identity) and y0 = 0 is the weights.
        unit = Tsit5.interpolation_cls(t0=self.t0, t1=self.t1, y0=0.0, y1=None, k=jnp.eye(7))
        b = unit.evaluate(t0)
        y0, unravel = ravel_pytree(self.y0)
        return unravel(y0 + sum(b[j].astype(y0.dtype) * k for j, k in enumerate(self.k)))


class UnrolledTsit5(Tsit5):
    """`diffrax.Tsit5()` with its stage loop unrolled and each stage's combination an
    explicit sum over the earlier stages.

    A drop-in replacement for `diffrax.Tsit5()` on ODE terms: the same tableau, FSAL
    state, step-size behaviour, error estimate and dense output, to rounding. `scan_kind`
    is ignored (there is no stage loop). It pays where the vector field is cheap against
    the stage bookkeeping: many seeds and a closed-form gradient (1.7× per step for 1024
    diagonal students in `benchmarks/gradient_flow.py --stages`); with a dense autodiff
    gradient it about breaks even.

    ```python
    method = rf.GradientFlow(t1=200.0, solver=rf.UnrolledTsit5())
    ```
    """

    interpolation_cls = UnrolledTsit5Interpolation

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tab = self.tableau
        first_step, f0 = solver_state
        dt = t1 - t0
        control = terms.contr(t0, t1)
        y0_flat, unravel = ravel_pytree(y0)

        def k(f):  # a stage: the vector field times the control, raveled
            return ravel_pytree(terms.prod(f, control))[0]

        # FSAL: the last stage of the step before, unless this is the first step or one
        # after a jump (for any seed: one branch runs for the whole batch, as in diffrax).
        f0 = jax.lax.cond(
            eqxi.unvmap_any(first_step | made_jump),
            lambda: terms.vf(t0, y0, args),
            lambda: f0,
        )
        ks = [k(f0)]
        for a, c in zip(tab.a_lower, tab.c):
            ti = t1 if c == 1 else t0 + float(c) * dt
            yi = _combine(y0_flat, a, ks)
            fi = terms.vf(ti, unravel(yi), args)
            ks.append(k(fi))
        y1 = unravel(yi if tab.ssal else _combine(y0_flat, tab.b_sol, ks))
        y_error = unravel(_combine(None, tab.b_error, ks))
        dense_info = dict(y0=y0, y1=y1, k=tuple(ks))
        return y1, y_error, dense_info, (False, fi), RESULTS.successful
