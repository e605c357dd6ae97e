r"""The closed-form gradient of the impulse loss of a diagonal student, and a fused kernel.

For a diagonal single-input single-output student, $h_t = \sum_j c_j b_j a_j^t$ and the
impulse loss $L = \sum_{t<k} r_t^2$, $r_t = h_t - \hat h_t$, has the closed-form gradient

$$\partial_{c_j} L = 2 b_j u_j,\quad \partial_{b_j} L = 2 c_j u_j,\quad
\partial_{a_j} L = 2 c_j b_j v_j,\qquad
u_j = \sum_{t<k} r_t a_j^t,\quad v_j = \sum_{0<t<k} t\, r_t a_j^{t-1},$$

with the powers taken as running products and $u, v$ by Horner's rule: about $7k$ flops
per coordinate and no intermediate arrays beyond the parameters.

`ImpulseLoss(...).bind(DiagonalRNN(d))` returns a [`rnnflow.BoundLoss`][] that offers
`descend`: plain gradient descent with this gradient for many seeds at once, each seed
stopping on its own, as a single loop over arrays of shape `(seeds, d)` (a strategy the loss
offers and [`rnnflow.GradientDescent`][] uses, as it would any loss's), or as one Pallas
kernel per block of seeds that keeps the parameters on chip across steps (for GPUs). Both
equal the autodiff path to rounding (tested).
"""

import functools

import jax
import jax.numpy as jnp

from .bound import BoundLoss
from .models import RNNParams

# Impulse responses longer than this keep the autodiff path: the running products are
# unrolled, so the step's code grows with k.
MAX_TRAIN_LEN = 32
# Seeds per Pallas program (a power of two, as Triton requires).
_BLOCK_SEEDS = 16


class DiagonalImpulseLoss(BoundLoss):
    """The impulse loss of a diagonal single-input single-output student, which offers
    fused gradient descent with its closed-form gradient (`descend`)."""

    def descend(self, params: RNNParams, value, count, *, lr, running, kernel="auto"):
        """Up to `count` steps of plain gradient descent of step `lr` from `params` (one
        seed; vmap for many; `value` the loss there), each taken while `running(loss)`
        holds: as one loop over the whole batch of seeds (`kernel="auto"`) or one Pallas
        kernel per block of seeds (`"pallas"`). Returns the parameters, the loss at them
        and the steps taken."""
        if kernel == "pallas":
            if not isinstance(lr, float):
                raise ValueError('kernel="pallas" needs a learning rate known before tracing.')
            fn = _descend_fn(running, functools.partial(_descend_pallas, lr=lr))
        else:
            fn = _descend_fn(running, None)
        y = self.loss.target[:, 0, 0]
        lr = jnp.asarray(lr, params.a.dtype)
        return fn(params, value, jnp.asarray(count, jnp.int32), y, lr)


def value_and_grad(a, b, c, y):
    """Loss and gradient for arrays `a, b, c` of shape `(..., d)` and targets `y`: a
    sequence of k targets, each a scalar or an array `(..., 1)`."""
    k = len(y)
    q, r = c * b, []
    for t in range(k):
        r.append(jnp.sum(q, axis=-1, keepdims=True) - y[t])
        if t + 1 < k:
            q = q * a
    u, v = r[k - 1], (k - 1) * r[k - 1]
    for t in range(k - 2, -1, -1):
        u = u * a + r[t]
        if t > 0:
            v = v * a + t * r[t]
    value = sum(x[..., 0] ** 2 for x in r)
    return value, (2 * c * b * v, 2 * c * u, 2 * b * u)


def _descend_arrays(a, b, c, value, count, ys, *, lr, running):
    """Up to `count` steps of gradient descent per seed, on arrays `(seeds, d)`, with
    targets `ys` as `value_and_grad` takes them.

    A seed steps while `running(loss at its current parameters)` holds. Returns the new
    parameters, the loss at them, and the steps each seed took.
    """

    def cond(state):
        return jnp.max(state[-1].astype(jnp.int32)) > 0  # any seed still active

    def body(state):
        i, a, b, c, _, taken, active = state
        value, (ga, gb, gc) = value_and_grad(a, b, c, ys)
        active = active & running(value) & (i < count)
        m = active[:, None]
        a = jnp.where(m, a - lr * ga, a)
        b = jnp.where(m, b - lr * gb, b)
        c = jnp.where(m, c - lr * gc, c)
        return i + 1, a, b, c, value, taken + active, active

    # The loop ends when every seed has stopped; the last pass updates no seed, so the
    # loss it computed is each seed's loss at its returned parameters.
    taken = jnp.zeros(count.shape, jnp.int32)
    state = (0, a, b, c, value, taken, count > 0)
    _, a, b, c, value, taken, _ = jax.lax.while_loop(cond, body, state)
    return a, b, c, value, taken


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _descend_pallas(a, b, c, value, count, y, *, interpret, **rule):
    """`_descend_arrays` as one Pallas kernel per block of seeds: each program loads its
    seeds' parameters once, runs every step on chip and writes them back once."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    seeds, d = a.shape
    bs = _BLOCK_SEEDS
    s_pad, d_pad, k_pad = -(-seeds // bs) * bs, _pow2(d), _pow2(y.shape[0])

    def pad(x):
        return jnp.pad(x, [(0, s_pad - seeds)] + [(0, d_pad - d)] * (x.ndim - 1))

    k = y.shape[0]

    def kernel(a_ref, b_ref, c_ref, v_ref, n_ref, y_ref, a_out, b_out, c_out, v_out, t_out):
        ys = [y_ref[t] for t in range(k)]  # scalar loads
        out = _descend_arrays(
            a_ref[...], b_ref[...], c_ref[...], v_ref[...], n_ref[...], ys, **rule
        )
        for ref, x in zip((a_out, b_out, c_out, v_out, t_out), out, strict=True):
            ref[...] = x

    rows = pl.BlockSpec((bs, d_pad), lambda i: (i, 0))
    per_seed = pl.BlockSpec((bs,), lambda i: (i,))
    whole = pl.BlockSpec((k_pad,), lambda i: (0,))
    # Padded coordinates have a = b = c = 0: they add nothing to h and get zero gradient.
    # Padded seeds get count 0 and take no step.
    outs = pl.pallas_call(
        kernel,
        out_shape=(
            *[jax.ShapeDtypeStruct((s_pad, d_pad), a.dtype)] * 3,
            jax.ShapeDtypeStruct((s_pad,), value.dtype),
            jax.ShapeDtypeStruct((s_pad,), jnp.int32),
        ),
        grid=(s_pad // bs,),
        in_specs=[rows, rows, rows, per_seed, per_seed, whole],
        out_specs=(rows, rows, rows, per_seed, per_seed),
        # Triton, not Mosaic GPU: Mosaic copies to shared memory in multiples of 128 bytes,
        # which the per-seed blocks (16 values) are not.
        compiler_params=plt.CompilerParams(num_warps=4),
        interpret=interpret,
    )(pad(a), pad(b), pad(c), pad(value), pad(count), jnp.pad(y, (0, k_pad - k)))
    a, b, c = (x[:seeds, :d] for x in outs[:3])
    return a, b, c, outs[3][:seeds], outs[4][:seeds]


def _descend_fn(running, pallas):
    """The fused loop for one seed (a block of one) whose vmap runs the whole batch as one
    block: over arrays, or through `pallas` (`_descend_pallas` with its rate bound)."""
    if pallas is not None:
        interpret = jax.default_backend() == "cpu"  # Pallas's (slow) interpreter off GPUs

        def block(a, b, c, value, count, y, lr):
            return pallas(a, b, c, value, count, y, running=running, interpret=interpret)
    else:

        def block(a, b, c, value, count, y, lr):
            # One target per lag: scalars, or one column per seed when they differ; one
            # rate, or a column of them (vmapped over rates).
            ys = [y[t] if y.ndim == 1 else y[:, t, None] for t in range(y.shape[-1])]
            lr = lr if lr.ndim == 0 else lr[:, None]
            return _descend_arrays(a, b, c, value, count, ys, lr=lr, running=running)

    def unpack(params):
        return params.a, params.b[..., 0], params.c[..., 0, :]

    def pack(a, b, c):
        return RNNParams(a=a, b=b[..., None], c=c[..., None, :])

    # One seed is a block of one; under vmap (train_seeds), the whole batch is one block.
    @jax.custom_batching.custom_vmap
    def descend(params, value, count, y, lr):
        a, b, c = (x[None] for x in unpack(params))
        a, b, c, value, taken = block(a, b, c, value[None], count[None], y, lr)
        return pack(a[0], b[0], c[0]), value[0], taken[0]

    @descend.def_vmap
    def descend_batched(axis_size, in_batched, params, value, count, y, lr):
        if (in_batched[3] or in_batched[4]) and pallas is not None:
            raise NotImplementedError(
                'kernel="pallas" needs the same teacher and rate for every seed; vmapping '
                'over them works with the default kernel="auto".'
            )

        def full(x, batched):
            return x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)

        # Targets and rates stay unbatched unless they differ per seed (vmap over them).
        params, value, count = jax.tree.map(full, (params, value, count), tuple(in_batched[:3]))
        a, b, c, value, taken = block(*unpack(params), value, count, y, lr)
        out = (pack(a, b, c), value, taken)
        return out, jax.tree.map(lambda _: True, out)

    return descend
