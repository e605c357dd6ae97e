"""Argument checks shared by the public API: plain Python, before any tracing or compiling."""

import math
from collections.abc import Sequence

import jax
import numpy as np


def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive integer; got {value!r}.")
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value}.")
    return int(value)


def check_real(
    name: str, value, *, positive: bool = False, nonnegative: bool = False, finite: bool = True
):
    """Check a real scalar (finite unless `finite=False`); traced values pass (their value is
    not known until run time)."""
    if not _is_concrete(value):
        return value
    arr = np.asarray(value)
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"`{name}` must be a real scalar; got {value!r}.")
    x = float(arr)
    if math.isnan(x):
        raise ValueError(f"`{name}` must not be NaN.")
    if finite and math.isinf(x):
        raise ValueError(f"`{name}` must be finite; got {x}.")
    if positive and not x > 0:
        raise ValueError(f"`{name}` must be positive; got {x}.")
    if nonnegative and not x >= 0:
        raise ValueError(f"`{name}` must be non-negative; got {x}.")
    return value


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}; got {value!r}.")
    return value


def check_shape(name: str, value, shape: tuple[int, ...]) -> None:
    got = getattr(value, "shape", None)
    if got is None:
        raise TypeError(f"`{name}` must be an array of shape {shape}; got {type(value).__name__}.")
    if tuple(got) != tuple(shape):
        raise ValueError(f"`{name}` must have shape {shape}; got {tuple(got)}.")
