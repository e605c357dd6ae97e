"""The `rnnflow` command: reproduce the paper's claims, run named experiments at any scale,
run any sweep from a TOML file.

rnnflow reproduce [--out DIR] [--only NAME ...]   small versions of every experiment (minutes)
rnnflow run NAME [--config F.toml] [--seeds N] [--small] [--out DIR] [--lanes N]
rnnflow sweep CONFIG.toml [--out STORE] [--lanes N]
rnnflow list [--keys]                             the experiments and what each shows
rnnflow show DIR                                  the summary of a results folder

`reproduce`, `run` and `sweep` also take --float64, --device and --quiet. Every user error
is one line, `rnnflow: error: ...`, naming the path or option, with exit code 2.
"""

import argparse
import sys
import time
import tomllib
from pathlib import Path

_EPILOG = """
A results folder holds run.json (experiment, config, precision), one labelled zarr store per
sweep, figure.png and summary.json (the nested summary, written last); load it with
rnnflow.experiments.load_results(DIR), a store with rnnflow.open_results(STORE). A folder
belongs to one run (experiment, config, precision): the same run is reused or resumed,
anything else is refused and nothing in it is changed.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as for every other user error
        self.exit(2, f"rnnflow: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="rnnflow",
        description="Training dynamics of overparameterized RNNs: gradient descent and "
        "gradient flow over many seeds, and the experiments of 'Learning Low Dimensional "
        "State Spaces with Overparameterized Recurrent Neural Nets' (ICLR 2023).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def common(q, default_device):
        q.add_argument(
            "--float64",
            action="store_true",
            help="compute in float64 (default float32); part of what makes a run the same run",
        )
        q.add_argument(
            "--device",
            default=default_device,
            help=f"JAX platform to run on: cpu, gpu, tpu or 'default' (default: {default_device})",
        )
        q.add_argument("--quiet", action="store_true", help="no progress bars, only the results")

    def lanes(q):
        q.add_argument(
            "--lanes",
            type=int,
            help="seeds × points computed side by side, and the unit of work a killed run "
            "resumes from (default: up to 1024); working memory grows with it",
        )

    r = sub.add_parser(
        "reproduce",
        help="run small versions of every experiment and print what was found",
        description="Run the small version of every named experiment (a few minutes on a "
        "laptop CPU), write each to OUT/NAME/, and print a table of the headline numbers.",
    )
    r.add_argument(
        "--out",
        type=Path,
        default=Path("rnnflow-results"),
        help="output folder (default: %(default)s)",
    )
    r.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these experiments (default: all)"
    )
    common(r, "cpu")

    run = sub.add_parser(
        "run",
        help="run one experiment at full scale, or as a config file says",
        description="Run one named experiment. Without --config, its full-scale defaults; "
        "a TOML config overrides any of its keys (see `rnnflow list --keys`).",
    )
    run.add_argument("experiment", metavar="NAME", help="the experiment (see `rnnflow list`)")
    run.add_argument("--config", type=Path, help="TOML file of config keys to override")
    run.add_argument("--seeds", type=int, help="seeds per setting (overrides the config)")
    run.add_argument("--small", action="store_true", help="start from the small config")
    run.add_argument("--out", type=Path, help="output folder (default: rnnflow-results/NAME)")
    lanes(run)
    common(run, "default")

    sw = sub.add_parser(
        "sweep",
        help="run any sweep described by a TOML file into a labelled store",
        description="Run the sweep that CONFIG.toml describes (axes, model, teacher, loss, "
        "method, save, stop) into a zarr store; open it with rnnflow.open_results(STORE).",
    )
    sw.add_argument("file", type=Path, metavar="CONFIG.toml", help="the sweep file")
    sw.add_argument("--out", type=Path, help="the store (default: CONFIG.zarr beside the file)")
    lanes(sw)
    common(sw, "default")

    ls = sub.add_parser("list", help="list the experiments")
    ls.add_argument("--keys", action="store_true", help="also list each config's keys and defaults")

    show = sub.add_parser("show", help="print the summary of a results folder")
    show.add_argument("folder", type=Path)
    return p


def _setup(args) -> None:
    import jax

    if args.device != "default":
        jax.config.update("jax_platforms", args.device)
    if args.float64:
        jax.config.update("jax_enable_x64", True)


def _config(experiment, args):
    config = experiment.small if args.small else experiment.config_type()
    values = config.to_dict()
    if args.config is not None:
        path = args.config
        if path.is_dir():
            raise ValueError(f"--config {path} is a folder, not a TOML file.")
        try:
            with open(path, "rb") as f:
                values.update(tomllib.load(f))
        except FileNotFoundError:
            raise ValueError(f"--config {path} does not exist.") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"--config {path} is not valid TOML: {e}") from None
        except OSError as e:
            raise ValueError(f"--config {path} cannot be read: {e.strerror}.") from None
    if args.seeds is not None:
        values["seeds"] = args.seeds
    try:
        return experiment.config_type.from_dict(values)
    except (ValueError, TypeError) as e:
        where = f"--config {args.config}" if args.config is not None else "the config"
        raise ValueError(f"{where}: {e}") from None


def _table(rows) -> str:
    lines = [f"{'experiment':<20} {'time':>7}  headline", "-" * 100]
    lines += [f"{name:<20} {secs:>6.0f}s  {text}" for name, secs, text in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnflow: error: {_message(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        import jax  # already loaded wherever a run got as far as running out of memory

        if not (isinstance(e, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(e)):
            raise
        # Not the user's input but the run's size: say so in a line, and how to go on.
        first = str(e).strip().splitlines()[0]
        how = "with a smaller --lanes " if hasattr(args, "lanes") else ""
        print(
            f"rnnflow: error: the device ran out of memory ({first}). What finished is kept; "
            f"run the same command {how}to resume.",
            file=sys.stderr,
        )
        return 1


def _message(e: Exception) -> str:
    """Ours name the path or option already; the system's own (a folder that cannot be
    written) say which path and why."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}."
    return str(e)


def _check_lanes(args) -> None:
    if args.lanes is not None and args.lanes < 1:
        raise ValueError(f"--lanes must be a positive integer; got {args.lanes}.")


def _main(args) -> int:
    from .experiments import EXPERIMENTS, get_experiment, load_results, run_experiment
    from .experiments.runner import check_folder

    if args.command == "list":
        for e in EXPERIMENTS.values():
            print(f"{e.name:<20} {e.claim}")
            if args.keys:
                for key, value in e.config_type().to_dict().items():
                    print(f"{'':<22}{key} = {value!r}")
        return 0
    if args.command == "show":
        res = load_results(args.folder)
        precision = "float64" if res.float64 else "float32"
        print(f"{res.experiment} ({precision}): {res.summary.headline}")
        print("\n".join(res.summary.lines()))
        return 0
    progress = False if args.quiet else None
    if args.command == "sweep":
        return _sweep(args, progress)

    if args.command == "run":
        experiment = get_experiment(args.experiment)
        config = _config(experiment, args)  # every check happens before any computation
        _check_lanes(args)
        _setup(args)
        out = args.out or Path("rnnflow-results") / experiment.name
        check_folder(experiment, config, out, claim=False)
        start = time.perf_counter()
        res = run_experiment(experiment, config, out=out, progress=progress, lanes=args.lanes)
        print(_table([(experiment.name, time.perf_counter() - start, res.summary.headline)]))
        print(f"\nresults and figure in {out}/")
        return 0

    # reproduce: every folder is checked before anything runs.
    experiments = [get_experiment(n) for n in args.only or list(EXPERIMENTS)]
    _setup(args)
    for e in experiments:
        check_folder(e, e.small, args.out / e.name, claim=False)
    rows = []
    for e in experiments:
        if not args.quiet:
            print(f"== {e.name}: {e.claim}", flush=True)
        start = time.perf_counter()
        res = run_experiment(e, e.small, out=args.out / e.name, progress=progress)
        rows.append((e.name, time.perf_counter() - start, res.summary.headline))
    print(_table(rows))
    print(f"\nresults, figures and summaries in {args.out}/<experiment>/")
    return 0


def _sweep(args, progress) -> int:
    from .experiments import sweep_file

    config = sweep_file.read(args.file)  # every check happens before any computation
    _check_lanes(args)
    out = args.out or args.file.with_suffix(".zarr")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a results store.")
    _setup(args)
    from ._sweeps.sweep import run_sweep

    start = time.perf_counter()
    try:
        ds = run_sweep(sweep_file.to_sweep(config), out, lanes=args.lanes, progress=progress)
    except FileExistsError as e:
        raise ValueError(f"{e} (--out)") from None
    counts = {}
    for code in ds.result.values.ravel():
        name = _result_name(int(code))
        counts[name] = counts.get(name, 0) + 1
    dims = ", ".join(f"{d}: {n}" for d, n in ds.sizes.items())
    print(f"{args.file}: {time.perf_counter() - start:.0f} s; dimensions {dims}")
    print("runs: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    print(f"labelled results in {out} (rnnflow.open_results({str(out)!r}))")
    return 0


def _result_name(code: int) -> str:
    from ._engine.trajectory import Result

    return Result(code).name if code in set(Result) else "not run"


if __name__ == "__main__":
    sys.exit(main())
