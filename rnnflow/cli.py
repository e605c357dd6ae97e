"""The `rnnflow` command: reproduce the paper's claims, run named experiments at any scale.

rnnflow reproduce [--out DIR]                 small versions of every experiment (CPU, minutes)
rnnflow run NAME [--config F.toml] [--seeds N] [--out DIR] [--float64] [--device cpu|gpu]
rnnflow list                                  the experiments and what each shows
rnnflow show DIR                              the summary of a results folder
"""

import argparse
import sys
import time
import tomllib
from pathlib import Path

_EPILOG = """
Results folders hold metadata.json (config, versions, seed keys, summary), results.npz
(per-seed arrays) and figure.png; load one with rnnflow.experiments.load_results(DIR). An existing
folder is never overwritten: complete results for the same config are reused, anything
else is an error. A run killed part-way resumes when the same command is run again.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rnnflow",
        description="Training dynamics of overparameterized RNNs: gradient descent and "
        "gradient flow over many seeds, and the experiments of 'Learning Low Dimensional "
        "State Spaces with Overparameterized Recurrent Neural Nets' (ICLR 2023).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(q, default_device):
        q.add_argument(
            "--float64", action="store_true", help="compute in float64 (default float32)"
        )
        q.add_argument(
            "--device",
            default=default_device,
            help=f"JAX platform to run on: cpu, gpu, tpu or 'default' (default: {default_device})",
        )
        q.add_argument("--quiet", action="store_true", help="print only the final table")

    r = sub.add_parser(
        "reproduce",
        help="run small versions of every experiment and print what was found",
        description="Run the small version of every named experiment (a few minutes on a "
        "laptop CPU), write each to OUT/NAME/, and print a table of the headline numbers.",
    )
    r.add_argument("--out", default="rnnflow-results", help="output folder (default: %(default)s)")
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
    run.add_argument(
        "--chunk-size",
        type=int,
        help="seeds per chunk: finished chunks are checkpointed, so a killed run resumes "
        "from them (default: all at once); results do not depend on it",
    )
    run.add_argument(
        "--lanes",
        type=int,
        help="seeds computed side by side per device: working memory grows with it "
        "(default: up to 1024 on a CPU, fewer for transition matrices; 65536 on an "
        "accelerator)",
    )
    common(run, "default")

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
        try:
            with open(args.config, "rb") as f:
                values.update(tomllib.load(f))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{args.config} is not valid TOML: {e}") from None
    if args.seeds is not None:
        values["seeds"] = args.seeds
    return experiment.config_type.from_dict(values)


def _table(rows) -> str:
    lines = [f"{'experiment':<20} {'time':>7}  headline", "-" * 100]
    lines += [f"{name:<20} {secs:>6.0f}s  {text}" for name, secs, text in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as e:
        print(f"rnnflow: error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    from .experiments import EXPERIMENTS, get_experiment, load_results, run_experiment

    if args.command == "list":
        for e in EXPERIMENTS.values():
            print(f"{e.name:<20} {e.claim}")
            if args.keys:
                for key, value in e.config_type().to_dict().items():
                    print(f"{'':<22}{key} = {value!r}")
        return 0
    if args.command == "show":
        res = load_results(args.folder)
        print(f"{res.experiment}: {get_experiment(res.experiment).headline(res.summary)}")
        for key, value in res.summary.items():
            print(f"  {key} = {value:.4g}")
        return 0

    if args.command == "run":
        experiment = get_experiment(args.experiment)
        config = _config(experiment, args)  # every check happens before any computation
        for flag in ("chunk_size", "lanes"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                name = "--" + flag.replace("_", "-")
                raise ValueError(f"{name} must be a positive integer; got {value}.")
        _setup(args)
        out = args.out or Path("rnnflow-results") / experiment.name
        start = time.perf_counter()
        res = run_experiment(
            experiment,
            config,
            out=out,
            progress=not args.quiet,
            chunk_size=args.chunk_size,
            lanes=args.lanes,
        )
        rows = [(experiment.name, time.perf_counter() - start, experiment.headline(res.summary))]
        print(_table(rows))
        print(f"\nresults and figure in {out}/")
        return 0

    # reproduce
    names = args.only or list(EXPERIMENTS)
    experiments = [get_experiment(n) for n in names]
    _setup(args)
    out = Path(args.out)
    rows = []
    for e in experiments:
        if not args.quiet:
            print(f"== {e.name}: {e.claim}", flush=True)
        start = time.perf_counter()
        res = run_experiment(e, e.small, out=out / e.name, progress=not args.quiet)
        rows.append((e.name, time.perf_counter() - start, e.headline(res.summary)))
    table = _table(rows)
    print(table)
    print(f"\nresults, figures and metadata in {out}/<experiment>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
