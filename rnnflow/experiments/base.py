"""What every named experiment is: a validated config, the sweeps it declares, an analysis
of their labelled results, and a figure.

An experiment computes nothing itself: `sweeps(config)` says what to train,
[`rnnflow.run_sweep`][] trains it into stores, `analyse` reads them into a
[`rnnflow.experiments.Summary`][] and `plot` draws them; writing the results folder
happens around it, in [`rnnflow.experiments.run_experiment`][].
"""

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Base of every experiment's config: a frozen dataclass of plain values.

    - `seeds`: how many random initializations per setting.
    - `seed`: the root PRNG seed; seed keys are `jax.random.split(jax.random.key(seed), ...)`.

    Subclasses add fields with defaults (the full-scale setting) and a `check` method.
    Build one from a mapping with `from_dict`, which rejects unknown keys and wrong types.
    """

    seeds: int = 16
    seed: int = 0

    experiment: ClassVar[str] = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            annotation = _field_types(type(self))[f.name]
            _check_type(f.name, value, annotation, may_be_empty=f.metadata.get("may_be_empty"))
            if isinstance(value, tuple):
                object.__setattr__(self, f.name, tuple(value))
        if self.seeds < 1:
            raise ValueError(f"`seeds` must be a positive integer; got {self.seeds}.")
        self.check()

    def check(self) -> None:
        """Value checks beyond types; subclasses raise `ValueError` naming the field."""

    def require_positive(self, *names: str) -> None:
        """Raise a `ValueError` naming the first of `names` that is not positive (for a list,
        not every entry positive)."""
        for name in names:
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            if any(v <= 0 for v in values):
                integer = all(isinstance(v, int) for v in values)
                what = "positive integers" if isinstance(value, tuple) else "a positive integer"
                raise ValueError(
                    f"`{name}` must be {what if integer else 'positive'}; got {value!r}."
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ExperimentConfig":
        """A config from a mapping (e.g. a parsed TOML file): unknown keys and wrong types
        raise a `ValueError`/`TypeError` that names the key and lists the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in allowed]
        if unknown:
            raise ValueError(
                f"unknown config key(s) {unknown} for experiment {cls.experiment!r}; "
                f"allowed keys: {allowed}."
            )
        types_ = _field_types(cls)
        coerced = {k: _coerce(k, v, types_[k]) for k, v in values.items()}
        return cls(**coerced)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, value, annotation):
    # TOML and JSON give lists where the config holds tuples, and ints where floats are fine.
    origin = typing.get_origin(annotation)
    if origin is tuple and isinstance(value, list):
        (item,) = {a for a in typing.get_args(annotation) if a is not Ellipsis}
        return tuple(_coerce(name, v, item) for v in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def may_be_empty(default: tuple):
    """A list field of a config that may be empty: an empty list skips the part it drives
    (every other list must hold at least one value)."""
    return dataclasses.field(default=default, metadata={"may_be_empty": True})


def _check_type(name: str, value, annotation, *, may_be_empty: bool = False) -> None:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(annotation) if a is not Ellipsis}
        if not isinstance(value, tuple) or not (value or may_be_empty):
            kind = "a list" if may_be_empty else "a non-empty list"
            raise TypeError(f"config key `{name}` must be {kind}; got {value!r}.")
        for v in value:
            _check_type(name, v, item)
        return
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(
                f"config key `{name}` must be one of {typing.get_args(annotation)}; got {value!r}."
            )
        return
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                _check_type(name, value, option)
                return
            except (TypeError, ValueError):
                pass
        raise TypeError(f"config key `{name}` must be {annotation}; got {value!r}.")
    if annotation is type(None):
        if value is not None:
            raise TypeError(f"config key `{name}` must be None; got {value!r}.")
        return
    ok = isinstance(value, annotation) and not (
        isinstance(value, bool) and annotation in (int, float)
    )
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise TypeError(
            f"config key `{name}` must be of type {annotation.__name__}; "
            f"got {type(value).__name__} {value!r}."
        )
    if annotation is float and not math.isfinite(value):
        raise ValueError(f"config key `{name}` must be finite; got {value!r}.")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named experiment: sweeps declared from a config, an analysis of their results,
    and a figure.

    - `name`: used on the command line and for results folders.
    - `claim`: one sentence: what the paper says and this experiment shows.
    - `config_type`: its [`rnnflow.experiments.ExperimentConfig`][] subclass;
      `config_type()` is the full scale.
    - `small`: the config that `rnnflow reproduce` and the tests run.
    - `sweeps(config) -> {name: rnnflow.Sweep}`: what to train; each is run into the
      results folder's `name.zarr`.
    - `analyse(data, config) -> Summary`: the findings, from `data` = {name: the
      `xarray.Dataset` of that sweep}.
    - `plot(data, summary, config, file)`: draws the PNG figure into a path or binary file.
    - `small_seconds`: about how long the small config takes on one CPU core (mostly
      compiling): `rnnflow reproduce` starts the longest first when it runs several at once.
    """

    name: str
    claim: str
    config_type: type[ExperimentConfig]
    small: ExperimentConfig
    sweeps: Callable[[ExperimentConfig], dict]
    analyse: Callable[[dict, ExperimentConfig], Any]
    plot: Callable[[dict, Any, ExperimentConfig, Any], None]
    small_seconds: float = 10.0
