r"""The gradient of a sequence loss by backpropagation through time, written out, for the
dense students: [`rnnflow.TanhRNN`][] and the linear [`rnnflow.DenseRNN`][].

For $z_t = A s_{t-1} + B x_t$, $s_t = \phi(z_t)$ ($s_{-1} = 0$), $y_t = C s_t$ and the
[`rnnflow.SequenceLoss`][] $L = \frac1N \sum_n \sum_{t \in T} \|y^{(n)}_t - \hat
y^{(n)}_t\|^2$ over the supervised steps $T$, let $e_t = \frac2N (y_t - \hat y_t)$ for
$t \in T$ and $e_t = 0$ otherwise. Backwards from $g_{k-1} = C^\top e_{k-1}$:

$$\delta_t = g_t \odot \phi'(z_t),\qquad g_{t-1} = A^\top \delta_t + C^\top e_{t-1},$$

$$\partial_A L = \sum_{t \ge 1} \delta_t s_{t-1}^\top,\quad
\partial_B L = \sum_t \delta_t x_t^\top,\quad \partial_C L = \sum_t e_t s_t^\top,$$

with $\phi'(z_t) = 1 - s_t^2$ for tanh and $1$ for the linear student.

All $N$ sequences go at once: each state is a $d \times N$ matrix, the sequences along its
minor axis, so every product above is one matrix product per step and none of the states
is transposed or stacked. Autodiff of the per-sequence model (a `lax.scan` over time of
states `(N, d)`) spent about half of a step copying, slicing and transposing them; this
form ran the nonlinear experiment's descent 3.9× faster (`benchmarks/README.md`). The
steps are unrolled, so, as for the diagonal student's closed form, only training lengths
up to `MAX_TRAIN_LEN` take this path. It equals autodiff to rounding (tested), and is
differentiable like any JAX function (a hypergradient through training goes through it).
"""

import jax.numpy as jnp

from .bound import BoundLoss
from .models import DenseRNN, RNNParams, TanhRNN

# Longer sequences keep the autodiff path: the steps are unrolled, so code grows with k.
MAX_TRAIN_LEN = 32

# The student's activation, and its derivative from the state it produced.
_ACTIVATIONS = {
    TanhRNN: (jnp.tanh, lambda s: 1 - s * s),
    DenseRNN: (None, None),
}


def applies(loss, model) -> bool:
    """Whether the bound `loss.bind(model)` of a sequence loss takes this gradient: a tanh or
    linear dense student itself (a subclass may change the recurrence), and at most
    `MAX_TRAIN_LEN` steps."""
    return type(model) in _ACTIVATIONS and loss.train_len <= MAX_TRAIN_LEN


class DenseSequenceLoss(BoundLoss):
    """A [`rnnflow.SequenceLoss`][] bound to a tanh or linear dense student, which offers its
    gradient by backpropagation through time written out (`value_and_grad`)."""

    def value_and_grad(self, params: RNNParams):
        """The loss at `params` (one seed; vmap for many) and its gradient."""
        self.check(params)  # real arrays of the model's shapes
        phi, dphi = _ACTIVATIONS[type(self.model)]
        loss = self.loss
        xs = jnp.moveaxis(loss.xs, 0, -1)  # (k, in_dim, N): the sequences along the lanes
        ys = jnp.moveaxis(loss.ys, 0, -1)  # (k, out_dim, N)
        k, n = xs.shape[0], xs.shape[-1]
        supervised = range(k) if loss.supervise == "all" else (k - 1,)
        a, b, c = params.a, params.b, params.c

        states = []
        for t in range(k):
            z = b @ xs[t] if t == 0 else a @ states[-1] + b @ xs[t]
            states.append(z if phi is None else phi(z))
        errors = {t: c @ states[t] - ys[t] for t in supervised}
        value = sum(jnp.sum(e * e) for e in errors.values()) / n
        scaled = {t: (2 / n) * e for t, e in errors.items()}

        grad_a, grad_b = jnp.zeros_like(a), jnp.zeros_like(b)
        g = None  # dL/ds_t, from the later steps and this step's output
        for t in reversed(range(k)):
            if t in scaled:
                out = c.T @ scaled[t]
                g = out if g is None else g + out
            if g is None:
                continue
            delta = g if dphi is None else g * dphi(states[t])
            grad_b = grad_b + delta @ xs[t].T
            if t > 0:
                grad_a = grad_a + delta @ states[t - 1].T
                g = a.T @ delta
        grad_c = sum(e @ states[t].T for t, e in scaled.items())
        return value, RNNParams(a=grad_a, b=grad_b, c=grad_c)
