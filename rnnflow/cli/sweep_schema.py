"""What a sweep file may say, and its reader: `read(path)` checks a TOML file against the
schema (sections, fields, types, choices, the axes that may be swept) and fills in the
defaults, raising a one-line `SweepFileError` that names the file and the key."""

import difflib
import os
import tomllib
from pathlib import Path

import numpy as np

from .. import MODELS
from ..experiments import _common

_F, _I, _S, _B = float, int, str, bool
# section → field → (type, default); `list` fields hold numbers or names.
SCHEMA: dict[str, dict[str, tuple]] = {
    "model": {"kind": (_S, "diagonal"), "state_dim": (_I, 20)},
    "init": {"scale": (_F, 1e-2), "balanced": (_B, False)},
    "teacher": {"name": (_S, None), "eigenvalues": (list, None), "weights": (list, None)},
    "loss": {
        "kind": (_S, "impulse"),
        "train_len": (_I, 5),
        "num_sequences": (_I, 256),
        "input_scale": (_F, 1.0),
        "supervise": (_S, "last"),
    },
    "method": {
        "kind": (_S, "gd"),
        "lr": (_F, 1e-2),
        "t1": (_F, None),
        "steps": (_I, None),
        "rtol": (_F, 1e-6),
        "max_steps": (_I, 100_000),
    },
    "save": {
        "num": (_I, 11),
        "spacing": (_S, "linear"),
        "decades": (_F, 4.0),
        "metrics": (list, ["loss", "relative_imbalance", "extrapolation"]),
        "horizon": (_I, None),
    },
    "stop": {"loss_below": (_F, None), "loss_above": (_F, 1e10)},
    # An update rule in place of the loss's gradient: "module:function", a function of the
    # bound loss returning a rule (see `rule_factory`).
    "rule": {"factory": (_S, None)},
}
TOP = {"seeds": _I, "seed": _I, "axes": dict, **{s: dict for s in SCHEMA}}
# Fields an axis may sweep; float ones are vmapped (one program) unless named here.
AXES = (
    "model.kind",
    "model.state_dim",
    "init.scale",
    "init.balanced",
    "teacher.name",
    "loss.train_len",
    "loss.input_scale",
    "method.kind",
    "method.lr",
    "method.t1",
    "method.rtol",
)
_LOOPED = {"method.t1", "method.rtol"}  # the flows take them as Python numbers
CHOICES = {
    "model.kind": tuple(MODELS),
    "teacher.name": tuple(_common.TEACHERS),
    "loss.kind": ("impulse", "sequence"),
    "loss.supervise": ("last", "all"),
    "method.kind": ("gd", "gf", "modified"),
    "save.spacing": ("linear", "log"),
}
METRICS = ("loss", "relative_imbalance", "extrapolation", "effective_dim", "hankel")


class SweepFileError(ValueError):
    """A sweep file that cannot be run; the message names the file and the key."""


def _unknown(path, where: str, key: str, allowed) -> SweepFileError:
    near = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean `{near[0]}`?)" if near else ""
    return SweepFileError(
        f"{path}: unknown key `{key}` in {where}{hint}; allowed: {', '.join(allowed)}."
    )


def _typed(path, key: str, value, kind, field: str | None = None):
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise SweepFileError(
            f"{path}: `{key}` must be {kind.__name__}; got {type(value).__name__} {value!r}."
        )
    if kind is float and not np.isfinite(value):
        raise SweepFileError(f"{path}: `{key}` must be finite; got {value!r}.")
    field = field or key
    if field in CHOICES and value not in CHOICES[field]:
        raise SweepFileError(
            f"{path}: `{key}` = {value!r} is unknown; choose one of {', '.join(CHOICES[field])}."
        )
    if kind is list and not all(isinstance(v, int | float | str) for v in value):
        raise SweepFileError(f"{path}: `{key}` must be a list of numbers or names.")
    return value


def read(path: str | os.PathLike) -> dict:
    """The checked contents of the sweep file at `path`: `{"seeds", "seed", "axes",
    section: {field: value}}` with every default filled in. Raises `SweepFileError`."""
    path = Path(path)
    if path.is_dir():
        raise SweepFileError(f"{path} is a folder, not a TOML sweep file.")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise SweepFileError(f"{path} does not exist.") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepFileError(f"{path} is not valid TOML: {e}.") from None
    except OSError as e:
        raise SweepFileError(f"{path} cannot be read: {e.strerror}.") from None
    for key, value in raw.items():
        if key not in TOP:
            raise _unknown(path, "the top level", key, TOP)
        if TOP[key] is dict and not isinstance(value, dict):
            raise SweepFileError(f"{path}: `{key}` must be a [{key}] section.")
    if "seeds" not in raw:
        raise SweepFileError(f"{path}: `seeds` (seeds per point) is missing.")
    out = {"seeds": _typed(path, "seeds", raw["seeds"], int), "seed": 0, "axes": {}}
    out["seed"] = _typed(path, "seed", raw.get("seed", 0), int)
    if out["seeds"] < 1:
        raise SweepFileError(f"{path}: `seeds` must be a positive integer; got {out['seeds']}.")
    for section, fields in SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in fields:
                raise _unknown(path, f"[{section}]", key, fields)
        out[section] = {}
        for key, (kind, default) in fields.items():
            value = given.get(key, default)
            out[section][key] = (
                value if value is None else _typed(path, f"{section}.{key}", value, kind)
            )
    for key, values in raw.get("axes", {}).items():
        if key not in AXES:
            raise _unknown(path, "[axes]", key, AXES)
        if not isinstance(values, list) or not values:
            raise SweepFileError(f"{path}: axis `{key}` must be a non-empty list of values.")
        section, field = key.split(".")
        kind = SCHEMA[section][field][0]
        out["axes"][key] = [_typed(path, f"axes.{key}", v, kind, key) for v in values]
        if len(set(out["axes"][key])) != len(values):
            raise SweepFileError(f"{path}: axis `{key}` repeats a value: {values}.")
    if not out["axes"]:
        raise SweepFileError(f"{path}: an [axes] section must name at least one field to sweep.")
    _check(path, out)
    return out


def rule_factory(path, name: str):
    """The function `name` ("module:function") names: `factory(loss_fn) -> rule`, called
    with each point's loss bound to its student, returning a rule (an object that offers
    `direction(params)`, such as `rnnflow.Rule(field, loss=loss_fn)`)."""
    import importlib

    module, _, attr = name.partition(":")
    if not module or not attr:
        raise SweepFileError(f'{path}: `rule.factory` must be "module:function"; got {name!r}.')
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise SweepFileError(
            f"{path}: `rule.factory` = {name!r} cannot be imported: {e}."
        ) from None
    if not callable(factory):
        raise SweepFileError(f"{path}: `rule.factory` = {name!r} is not callable.")
    return factory


def _check(path, c) -> None:
    """Checks across fields, on every point's values."""
    if c["rule"]["factory"] is not None:
        rule_factory(path, c["rule"]["factory"])
    for name in c["save"]["metrics"]:
        if name not in METRICS:
            raise _unknown(path, "save.metrics", name, METRICS)
    t = c["teacher"]
    if t["name"] is not None and (t["eigenvalues"] is not None or t["weights"] is not None):
        raise SweepFileError(f"{path}: [teacher] takes `name` or `eigenvalues` and `weights`.")
    if (t["eigenvalues"] is None) != (t["weights"] is None):
        raise SweepFileError(f"{path}: [teacher] needs both `eigenvalues` and `weights`.")
    m = c["method"]
    if (m["t1"] is None) == (m["steps"] is None) and "method.t1" not in c["axes"]:
        raise SweepFileError(f"{path}: [method] needs its end time: `t1` or `steps`, not both.")
    for key, values in c["axes"].items():
        if key.endswith((".scale", ".lr", ".t1", ".rtol", ".state_dim", ".train_len")):
            if any(v <= 0 for v in values):
                raise SweepFileError(f"{path}: axis `{key}` must hold positive values.")
    for section, key in (("model", "state_dim"), ("loss", "train_len"), ("save", "num")):
        if c[section][key] < 1:
            raise SweepFileError(f"{path}: `{section}.{key}` must be a positive integer.")
