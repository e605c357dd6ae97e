"""What verifying a sweep's store costs: the CRC-32C every chunk carries, and the check of
every chunk when a store is opened.

1. The codec: a store laid out as `rnnflow.run_sweep` lays out 10⁴ seeds × 3 points (three
   float64 metrics over 11 saves and four per-seed values, in chunks of one point × 1024
   seeds) is written unit by unit and read back whole through zarr, once with the store's
   codecs (zstd, then zarr's `crc32c` codec) and once with zstd alone. Reported: the median
   write and read time of each over `--repeats` runs, and the ratios (checksummed / not).
2. The check on open: a real store of 10⁴ seeds × 3 points (one step of gradient descent,
   so that training costs little) is opened with `rnnflow.open_results` with and without
   `verify`, and loaded; reported: the median time of each and the ratio.

Everything runs in this process, on the CPU, after one warm-up run of each.

    python benchmarks/store_checksums.py [--quick] [--seeds 10000] [--repeats 5] [--json F]
"""

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

import rnnflow as rf

POINTS, SAVES, BLOCK = 3, 11, 1024


def write(path: Path, seeds: int, checksums: bool, rng) -> None:
    compressors = [ZstdCodec(level=0)] + ([Crc32cCodec()] if checksums else [])
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    shapes = {
        **{m: ((POINTS, seeds, SAVES), (1, BLOCK, SAVES)) for m in ("loss", "extr", "imb")},
        **{v: ((POINTS, seeds), (1, BLOCK)) for v in ("result", "t_stop", "steps", "evals")},
    }
    arrays = {
        name: group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=np.float64,
            compressors=compressors,
            config={"write_empty_chunks": True},
        )
        for name, (shape, chunks) in shapes.items()
    }
    values = {name: rng.standard_normal(shape) for name, (shape, _) in shapes.items()}
    for p in range(POINTS):  # unit by unit, as a sweep writes
        for lo in range(0, seeds, BLOCK):
            for name, array in arrays.items():
                array[p, lo : lo + BLOCK] = values[name][p, lo : lo + BLOCK]


def read(path: Path) -> None:
    group = zarr.open_group(str(path), mode="r")
    for name in group.array_keys():
        group[name][...]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def codec_cost(folder: Path, seeds: int, repeats: int) -> dict:
    """Each repeat times both stores, one after the other, so that a load on the machine
    that comes and goes falls on both alike."""
    rng = np.random.default_rng(0)
    paths = {c: folder / f"codec-{c}.zarr" for c in (False, True)}
    times = {c: {"write_s": [], "read_s": []} for c in (False, True)}
    for r in range(repeats + 1):  # the first is a warm-up
        for c in (False, True) if r % 2 else (True, False):
            start = time.perf_counter()
            write(paths[c], seeds, c, rng)
            wrote = time.perf_counter()
            read(paths[c])
            if r:
                times[c]["write_s"].append(wrote - start)
                times[c]["read_s"].append(time.perf_counter() - wrote)
    out = {c: {k: statistics.median(v) for k, v in times[c].items()} for c in (False, True)}
    return {
        "without": out[False],
        "with": out[True],
        "write_ratio": out[True]["write_s"] / out[False]["write_s"],
        "read_ratio": out[True]["read_s"] / out[False]["read_s"],
    }


def setup(point, key):
    model = rf.DiagonalRNN(4, scan="sequential")
    loss_fn = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 5).bind(model)
    params = model.init(key=key, scale=point["init_scale"])
    return loss_fn, params, rf.GradientDescent(0.01, 1)


def open_cost(folder: Path, seeds: int, repeats: int) -> dict:
    sweep = rf.Sweep(
        {"init_scale": [0.01, 0.1, 0.3]},
        seeds=seeds,
        setup=setup,
        key=jax.random.key(0),
        save=rf.Save(num=SAVES),
    )
    path = folder / "sweep.zarr"
    rf.run_sweep(sweep, path, progress=False)
    plain = median_time(lambda: rf.open_results(path, verify=False).load(), repeats)
    verified = median_time(lambda: rf.open_results(path).load(), repeats)
    return {"load_s": plain, "verify_and_load_s": verified, "ratio": verified / plain}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10³ seeds, 2 repeats")
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seeds, repeats = (1000, 2) if args.quick else (args.seeds, args.repeats)
    folder = Path(tempfile.mkdtemp(prefix="rnnflow-bench-"))
    try:
        codec = codec_cost(folder, seeds, repeats)
        opening = open_cost(folder, seeds, repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    machine = f"{platform.processor() or platform.machine()}, zarr {zarr.__version__}"
    print(f"store checksums, {seeds} seeds × {POINTS} points ({machine}):")
    for what in ("without", "with"):
        c = codec[what]
        print(f"  {what:>7} crc32c: write {c['write_s']:.3f} s, read {c['read_s']:.3f} s")
    ratios = f"write {codec['write_ratio']:.3f}, read {codec['read_ratio']:.3f}"
    print(f"  ratio (with / without): {ratios}")
    print(
        f"  open_results: load {opening['load_s']:.3f} s, "
        f"verify and load "
        f"{opening['verify_and_load_s']:.3f} s (ratio {opening['ratio']:.2f})"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"seeds": seeds, "codec": codec, "open": opening}, indent=1)
        )


if __name__ == "__main__":
    main()
