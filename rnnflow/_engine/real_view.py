r"""Complex parameters, trained as their real and imaginary parts.

A real loss $L$ of a complex parameter $z = x + iy$ is a function of two real arrays, and
every method trains it as such: before a run, each complex leaf of the trainable
parameters becomes a [`ReIm`][] pair $(x, y)$; the loss sees $z = x + iy$ again; the
trajectory's parameters are complex again. So a run with complex leaves *is* the run on
the explicit split, step for step: an optimizer's per-component state (Adam's second
moment, say) is kept for $x$ and $y$ separately, an adaptive solver's error norm counts
$x$ and $y$ as two components, and the time axis is the same.

JAX's convention for the gradient of a real $L$ at complex $z$: `jax.grad(L)(z)` is
$\partial L/\partial x - i\,\partial L/\partial y$, the *conjugate* of the steepest-ascent
direction, so steepest descent is along $-\overline{\texttt{jax.grad}(L)(z)}$. A loss's
own `value_and_grad` that returns complex gradients is read in that convention.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array


class ReIm(eqx.Module):
    """The real and imaginary parts of one complex parameter array, trained as two."""

    re: Array
    im: Array


def _is_complex(x) -> bool:
    return eqx.is_array(x) and jnp.iscomplexobj(x)


def _is_reim(x) -> bool:
    return isinstance(x, ReIm)


def has_parts(tree) -> bool:
    """Whether `tree` holds complex leaves as [`ReIm`][] parts."""
    return any(_is_reim(x) for x in jax.tree.leaves(tree, is_leaf=_is_reim))


def to_real(tree):
    """`tree` with each complex array replaced by its [`ReIm`][] parts."""
    return jax.tree.map(lambda x: ReIm(jnp.real(x), jnp.imag(x)) if _is_complex(x) else x, tree)


def to_complex(tree):
    """The inverse of `to_real`: each [`ReIm`][] pair back as one complex array."""
    return jax.tree.map(
        lambda x: jax.lax.complex(x.re, x.im) if _is_reim(x) else x, tree, is_leaf=_is_reim
    )


def grad_to_real(grad):
    """A gradient in JAX's convention for complex leaves ($\\partial L/\\partial x -
    i\\,\\partial L/\\partial y$) as the gradient in the real parts."""
    return jax.tree.map(lambda g: ReIm(jnp.real(g), -jnp.imag(g)) if _is_complex(g) else g, grad)
