"""What an experiment found: a headline and a tree of named numbers."""

import math
from collections.abc import Mapping

import numpy as np

Leaf = int | float | bool | str | None


def _typed(value, path: str):
    """`value` as plain JSON types: numpy scalars to Python numbers, mappings to dicts,
    sequences of numbers to lists; anything else is an error naming where it sits."""
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"summary keys must be non-empty strings; got {key!r} in {path}.")
            out[key] = _typed(v, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [_typed(v, path) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    raise TypeError(f"summary value at `{path}` must be a number or a string; got {value!r}.")


class Summary(Mapping):
    """An experiment's findings: a one-line `headline` and a tree of values.

    Sections are mappings (`summary["dense"]["short"]["extrapolation"]`), leaves are
    numbers (integers stay integers), strings, or lists of numbers (one per value of an
    axis). It is what `rnnflow show` prints and what `summary.json` holds.

    **Arguments:**

    - `headline`: one line for the printed table.
    - `values`: the tree; numpy scalars and arrays are converted to plain numbers/lists.

    ```python
    s = Summary("slope 1.0", {"slope": {"gd_gf": 1.01}, "failed": 0})
    s["slope"]["gd_gf"], s.to_dict()
    ```
    """

    def __init__(self, headline: str, values: Mapping):
        if not isinstance(headline, str):
            raise TypeError(f"`headline` must be a string; got {type(headline).__name__}.")
        self.headline = headline
        self._values = _typed(values, "")

    def __getitem__(self, key: str):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Summary)
            and self.headline == other.headline
            and _same(self._values, other._values)
        )

    def __repr__(self) -> str:
        return f"Summary({self.headline!r}, {self._values!r})"

    def to_dict(self) -> dict:
        """`{"headline": ..., "values": {...}}`, JSON-able (NaN as JSON's NaN)."""
        return {"headline": self.headline, "values": self._values}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Summary":
        return cls(data["headline"], data["values"])

    def lines(self) -> list[str]:
        """The tree as indented `key = value` lines, numbers to 4 significant digits."""
        out = []

        def walk(node, depth):
            for key, value in node.items():
                if isinstance(value, dict):
                    out.append("  " * depth + f"{key}:")
                    walk(value, depth + 1)
                else:
                    out.append("  " * depth + f"{key} = {_format(value)}")

        walk(self._values, 1)
        return out


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b
