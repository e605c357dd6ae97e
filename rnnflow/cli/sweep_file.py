"""Sweeps from a TOML file: `rnnflow sweep CONFIG.toml`.

The file names a student, teacher, loss, method, what to save and when to stop, and axes
that override any of their fields (schema in the docs' command-line page). Everything is
checked before anything is compiled: an unknown section or key, a value of the wrong type
or an unknown name is a `SweepFileError` (a `ValueError`) of one line naming the file and
the key.

```python
sweep = load_sweep_file("scales.toml")  # an rnnflow.Sweep
ds = rnnflow.run_sweep(sweep, "scales.zarr")
```
"""

import os

from .. import (
    MODELS,
    GradientDescent,
    GradientFlow,
    ImpulseLoss,
    ModifiedFlow,
    Rule,
    Save,
    SequenceLoss,
    Stop,
    Sweep,
    effective_dim_metric,
    extrapolation_metric,
    hankel_metric,
    imbalance_metric,
    modes_teacher,
)
from ..experiments import _common
from .sweep_schema import _LOOPED, read, rule_factory


def _point(config: dict, point: dict) -> dict:
    """The config with the axes' values of `point` (dim names) in place."""
    out = {s: dict(v) if isinstance(v, dict) else v for s, v in config.items()}
    for key in config["axes"]:
        section, field = key.split(".")
        out[section][field] = point[key.replace(".", "_")]
    return out


def _metrics(loss_fn, spec) -> dict:
    names, horizon = spec
    model, loss = loss_fn.model, loss_fn.loss
    q = horizon or 10 * loss.train_len
    made = {
        "loss": lambda: lambda t, p: loss_fn(p),
        "relative_imbalance": lambda: imbalance_metric(model),
        "extrapolation": lambda: extrapolation_metric(
            model, loss.teacher, train_len=loss.train_len, horizon=q
        ),
        "effective_dim": lambda: effective_dim_metric(model, length=q),
        "hankel": lambda: hankel_metric(model, length=q),
    }
    return {name: made[name]() for name in names}


def _direction(rule):
    if not callable(getattr(rule, "direction", None)):
        raise TypeError(
            "`rule.factory` must return a rule, an object that offers direction(params) "
            f"(e.g. rnnflow.Rule(field, loss=loss_fn)); got {type(rule).__name__}."
        )
    return rule.direction


def to_sweep(config: dict) -> Sweep:
    """The [`rnnflow.Sweep`][] a checked sweep file (see `read`) describes."""
    import jax

    metrics = _common.MetricsOf(
        _metrics, (tuple(config["save"]["metrics"]), config["save"]["horizon"])
    )
    data_key = jax.random.fold_in(jax.random.key(config["seed"]), 1)
    factory = config["rule"]["factory"]
    factory = None if factory is None else rule_factory("the sweep file", factory)

    def setup(values, key):
        c = _point(config, values)
        model = MODELS[c["model"]["kind"]](c["model"]["state_dim"])
        t = c["teacher"]
        if t["eigenvalues"] is not None:
            teacher = modes_teacher(t["eigenvalues"], t["weights"])
        else:
            teacher = _common.teacher(t["name"] or "short")
        loss = c["loss"]
        if loss["kind"] == "impulse":
            loss_fn = ImpulseLoss(teacher, loss["train_len"])
        else:
            shape = (loss["num_sequences"], loss["train_len"], 1)
            xs = loss["input_scale"] * jax.random.normal(data_key, shape)
            loss_fn = SequenceLoss(teacher, xs, supervise=loss["supervise"])
        params = model.init(key=key, scale=c["init"]["scale"], balanced=c["init"]["balanced"])
        m = c["method"]
        if m["kind"] == "gd":
            steps = m["steps"] or int(round(m["t1"] / m["lr"]))
            method = GradientDescent(m["lr"], steps)
        else:
            t1 = m["t1"] if m["t1"] is not None else m["steps"] * m["lr"]
            flow = dict(stepsize_controller=_common.pid(m["rtol"]), max_steps=m["max_steps"])
            method = (
                GradientFlow(t1, **flow) if m["kind"] == "gf" else ModifiedFlow(m["lr"], t1, **flow)
            )
        measured = _common.Measured(loss_fn.bind(model), metrics)
        if factory is None:
            return measured, params, method
        # The rule moves the parameters; the file's metrics and stopping judge it by the loss.
        return Rule(_direction(factory(loss_fn.bind(model))), loss=measured), params, method

    axes = {key.replace(".", "_"): values for key, values in config["axes"].items()}
    looped = [k.replace(".", "_") for k in config["axes"] if k in _LOOPED]
    kind, steps = config["method"]["kind"], config["method"]["steps"]
    if "method.lr" in config["axes"] and (kind != "gd" or steps is None):
        looped.append("method_lr")  # the number of steps, or a flow, depends on it
    s, stop = config["save"], config["stop"]
    return Sweep(
        axes=axes,
        seeds=config["seeds"],
        setup=setup,
        key=jax.random.key(config["seed"]),
        save=Save(num=s["num"], spacing=s["spacing"], decades=s["decades"]),
        stop=Stop(loss_below=stop["loss_below"], loss_above=stop["loss_above"]),
        looped=tuple(looped),
        attrs={"sweep_file": config},
    )


def load_sweep_file(path: str | os.PathLike) -> Sweep:
    """The [`rnnflow.Sweep`][] described by the TOML file at `path`, checked before
    anything is compiled.

    **Arguments:**

    - `path`: a TOML file (schema in the command-line docs).

    **Returns:**

    An `rnnflow.Sweep`; run it with [`rnnflow.run_sweep`][].

    ```python
    ds = rnnflow.run_sweep(load_sweep_file("scales.toml"), "scales.zarr")
    ```
    """
    return to_sweep(read(path))
