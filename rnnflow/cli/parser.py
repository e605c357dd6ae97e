"""The `rnnflow` command's arguments: its subcommands and options, parsed with one-line errors."""

import argparse
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
        q.add_argument(
            "--one-device",
            action="store_true",
            help="run on one JAX CPU device (default: one per core, seeds spread over them; "
            "results are bitwise the same)",
        )
        q.add_argument("--quiet", action="store_true", help="no progress bars, only the results")

    def lanes(q):
        q.add_argument(
            "--lanes",
            type=int,
            help="seeds × points computed side by side (default: about a sixteenth of a "
            "sweep, 64 to 1024); working "
            "memory grows with it; a killed run resumes with any (the same: bit for bit)",
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
    r.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="experiments run at once, each in a process of its own with its share of the "
        "cores (default: one per core on a CPU, else 1); results are bitwise the same",
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
