"""The `rnnflow` command's work: each subcommand checks its input, then runs; every user
error becomes one line, `rnnflow: error: ...`, with exit code 2."""

import contextlib
import errno
import os
import sys
import time
import tomllib
import warnings
from pathlib import Path

from .parser import _parser


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


def _one_line_warnings() -> None:
    """Warnings as one line each (`rnnflow: warning: ...`), as errors are: a damaged file
    being recomputed, a run that switched devices."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"rnnflow: warning: {message}", file=sys.stderr if file is None else file)

    warnings.showwarning = show


class _WriteFailed(Exception):
    """Writing the results failed (a full disk, a file-size limit): what finished is kept."""


def _cpu_devices(args) -> None:
    """One JAX CPU device per core, before JAX starts, so that the seeds of every sweep
    spread over all cores (results are bitwise the same as on one device); one with
    --one-device. A count the user's environment sets (JAX_NUM_CPU_DEVICES, or XLA_FLAGS'
    device count) is theirs to keep."""
    from .. import use_cpu_cores
    from .._engine.devices import count_in_environment

    if args.one_device:
        try:
            use_cpu_cores(1)
        except RuntimeError as e:
            raise ValueError(f"--one-device: {e}") from None
        return
    if count_in_environment():
        return
    try:
        use_cpu_cores()
    except RuntimeError:
        pass  # called in a process whose JAX has started (not from the shell): keep its devices


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _one_line_warnings()
    try:
        if args.command in ("reproduce", "run", "sweep"):
            _cpu_devices(args)
        return _main(args)
    except _WriteFailed as e:
        print(f"rnnflow: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnflow: error: {_message(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        import jax  # already loaded wherever a run got as far as running out of memory

        if not (isinstance(e, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(e)):
            raise
        # Not the user's input but the run's size: say so in a line, and how to go on. The
        # units of work do not depend on --lanes, so fewer lanes resume the same run (what
        # they compute agrees with the wider calls to rounding).
        first = str(e).strip().splitlines()[0]
        how = "with a smaller --lanes " if hasattr(args, "lanes") else ""
        print(
            f"rnnflow: error: the device ran out of memory ({first}). What finished is kept; "
            f"run the same command {how}to resume.",
            file=sys.stderr,
        )
        return 1


# Errors of the disk, not of the input: the run stops, what finished is kept.
_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS}


@contextlib.contextmanager
def _writing(out: Path):
    """Turn a failed write of the results in `out` into one line naming the file (where
    known) and saying what is kept and how to go on."""
    try:
        yield
    except OSError as e:
        if e.errno not in _DISK_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        raise _WriteFailed(
            f"writing the results in {out} failed: {e.strerror or e}{where}. Every unit of "
            "work finished before is kept; make room (or raise the file-size limit) and run "
            "the same command to resume."
        ) from None


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
    from ..experiments import EXPERIMENTS, get_experiment, load_results, run_experiment
    from ..experiments.runner import check_folder

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
        check_folder(experiment, config, out)
        start = time.perf_counter()
        with _writing(out):
            res = run_experiment(experiment, config, out=out, progress=progress, lanes=args.lanes)
        print(_table([(experiment.name, time.perf_counter() - start, res.summary.headline)]))
        print(f"\nresults and figure in {out}/")
        return 0

    # reproduce: every folder is checked before anything runs.
    experiments = [get_experiment(n) for n in args.only or list(EXPERIMENTS)]
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be a positive integer; got {args.jobs}.")
    for e in experiments:
        check_folder(e, e.small, args.out / e.name)
    start = time.perf_counter()
    jobs = min(len(experiments), args.jobs or _default_jobs(args))
    if jobs > 1:
        rows = _reproduce_at_once([e.name for e in experiments], args, jobs)
    else:
        _setup(args)
        rows = []
        for e in experiments:
            if not args.quiet:
                print(f"== {e.name}: {e.claim}", flush=True)
            rows.append(_reproduce_one(args, e.name, progress))
    print(_table(rows))
    print(f"\n{len(rows)} experiments in {time.perf_counter() - start:.0f} s; results, figures and")
    print(f"summaries in {args.out}/<experiment>/")
    return 0


def _default_jobs(args) -> int:
    """One experiment per core on a CPU: compiling, most of a small run's time, keeps one
    core busy; an accelerator is the device of one process at a time."""
    if args.device != "cpu":
        return 1
    from .._engine.devices import cpu_cores

    return cpu_cores()


def _reproduce_one(args, name: str, progress=False):
    """Run `name`'s small config into `args.out / name`: (name, seconds, headline)."""
    from ..experiments import get_experiment, run_experiment

    e = get_experiment(name)
    start = time.perf_counter()
    with _writing(args.out / name):
        res = run_experiment(e, e.small, out=args.out / name, progress=progress)
    return name, time.perf_counter() - start, res.summary.headline


def _worker(args, name: str):
    """`_reproduce_one` in a process of its own, set up as the command sets up its own."""
    _one_line_warnings()
    _setup(args)
    return _reproduce_one(args, name)


def _reproduce_at_once(names, args, jobs: int):
    """Run the experiments `jobs` at a time, each in a fresh process with its share of the
    CPU cores as JAX devices (one device per process on two cores): the results are those
    of any other device count, bitwise. Rows in the order of `names`."""
    import concurrent.futures
    import multiprocessing

    from .._engine.devices import count_in_environment, cpu_cores
    from ..experiments import get_experiment

    env = {}
    if not count_in_environment():  # the user's own count is kept in each process
        env["JAX_NUM_CPU_DEVICES"] = str(1 if args.one_device else max(1, cpu_cores() // jobs))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the processes start with it (spawned, they inherit it)
    rows = {}
    try:
        with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            # The longest first, so that the last to finish are short ones.
            by_cost = sorted(names, key=lambda n: -get_experiment(n).small_seconds)
            futures = [pool.submit(_worker, args, name) for name in by_cost]
            try:
                for done in concurrent.futures.as_completed(futures):
                    name, secs, headline = done.result()
                    rows[name] = (name, secs, headline)
                    if not args.quiet:
                        print(f"== {name} ({secs:.0f} s): {headline}", flush=True)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [rows[name] for name in names]


def _sweep(args, progress) -> int:
    from . import sweep_file

    config = sweep_file.read(args.file)  # every check happens before any computation
    _check_lanes(args)
    out = args.out or args.file.with_suffix(".zarr")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a results store.")
    _setup(args)
    from .. import run_sweep

    start = time.perf_counter()
    try:
        with _writing(out):
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
    from .. import Result

    return Result(code).name if code in set(Result) else "not run"
