"""Interrupted sweeps: checkpointed chunks resume to results identical to an uninterrupted run."""

import functools
import os
import signal
import subprocess
import sys
import textwrap

import diffrax
import jax
import numpy as np
import optax
import pytest

import rnnflow as rf
import rnnflow._train as train_module

MODEL = rf.DiagonalRNN(6, scan="sequential")
LOSS = rf.ImpulseLoss(rf.modes_teacher([0.9, -0.5], [1.0, 0.5]), 4)
METHOD = rf.GradientDescent(0.05, 200)
SAVE = rf.Save(num=3, metrics={"loss": lambda t, p: LOSS(MODEL, p)})


def params(num, seed=0):
    return rf.init_seeds(MODEL, jax.random.split(jax.random.key(seed), num), scale=0.3)


def assert_identical(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture
def count_blocks(monkeypatch):
    calls = []
    real = train_module._train_block_jit

    def counting(*args):
        # Counts computations; abstract evaluation (jax.eval_shape, for the output structure)
        # traces with tracers and computes nothing.
        if not isinstance(jax.tree.leaves(args[3])[0], jax.core.Tracer):
            calls.append(1)
        return real(*args)

    counting.lower = real.lower  # lowering (to look for LAPACK calls) computes nothing
    monkeypatch.setattr(train_module, "_train_block_jit", counting)
    return calls


def test_checkpointed_equals_plain_and_resumes_without_work(tmp_path, count_blocks):
    p = params(10)
    one = jax.devices()[:1]
    # Blocks of 2 seeds (lanes), in chunks of 2 blocks: 10 seeds are 4 + 4 + 2.
    plain = rf.train_seeds(MODEL, LOSS, METHOD, p, save=SAVE, lanes=2, devices=one)

    def run():
        return rf.train_seeds(
            MODEL,
            LOSS,
            METHOD,
            p,
            save=SAVE,
            lanes=2,
            chunk_size=4,
            devices=one,
            checkpoint=tmp_path,
        )

    first = run()
    assert_identical(first, plain)
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == [f"seeds-chunk-{i:05d}.npz" for i in range(3)]

    # A run killed before chunk 1 was written: that chunk alone (2 blocks) is computed again.
    (tmp_path / files[1]).unlink()
    (tmp_path / ".seeds-chunk-00001.npz.abc.tmp").write_bytes(b"partial write")  # never read
    count_blocks.clear()
    assert_identical(run(), plain)
    assert len(count_blocks) == 2

    # A finished run does no work at all.
    count_blocks.clear()
    assert_identical(run(), plain)
    assert count_blocks == []


def test_checkpoint_of_another_run_is_refused(tmp_path):
    rf.train_seeds(MODEL, LOSS, METHOD, params(4), save=SAVE, checkpoint=tmp_path)
    with pytest.raises(FileExistsError, match="different run"):
        rf.train_seeds(MODEL, LOSS, METHOD, params(4, seed=1), save=SAVE, checkpoint=tmp_path)
    with pytest.raises(FileExistsError, match="different run"):
        method = rf.GradientDescent(0.05, 300)
        rf.train_seeds(MODEL, LOSS, method, params(4), save=SAVE, checkpoint=tmp_path)
    # The same end time and save times with another step size is another run too.
    with pytest.raises(FileExistsError, match="different run"):
        method = rf.GradientDescent(0.1, 100)
        rf.train_seeds(MODEL, LOSS, method, params(4), save=SAVE, checkpoint=tmp_path)


def test_checkpoint_of_a_flow_with_other_settings_is_refused(tmp_path):
    save = rf.Save(num=3)
    run = functools.partial(rf.train_seeds, MODEL, LOSS, params=params(4), save=save)
    run(rf.GradientFlow(1.0), checkpoint=tmp_path / "a")
    run(rf.GradientFlow(1.0), checkpoint=tmp_path / "a")  # the same run resumes
    for other in (
        rf.GradientFlow(1.0, stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-7)),
        rf.GradientFlow(1.0, solver=rf.LeastSquaresRosenbrock()),
    ):
        with pytest.raises(FileExistsError, match="different run"):
            run(other, checkpoint=tmp_path / "a")
    # A progress meter changes nothing computed: the run resumes with one.
    with_meter = rf.GradientFlow(1.0, progress_meter=diffrax.TextProgressMeter())
    assert with_meter.settings(params(1)) == rf.GradientFlow(1.0).settings(params(1))


def test_checkpoint_of_another_optax_optimizer_is_refused(tmp_path, count_blocks):
    def run(optimizer):
        method = rf.GradientDescent(0.05, 50, optimizer)
        return rf.train_seeds(MODEL, LOSS, method, params(4), save=SAVE, checkpoint=tmp_path)

    first = run(optax.adam(0.01))
    count_blocks.clear()
    assert_identical(run(optax.adam(0.01)), first)  # a new, equal optimizer resumes
    assert not count_blocks
    # Hyperparameters live in closures, which print the same; their updates differ.
    for other in (
        optax.adam(0.02),
        optax.adam(0.01, b1=0.8),
        optax.chain(optax.clip_by_global_norm(1e-3), optax.adam(0.01)),
        optax.sgd(0.05, momentum=0.9),
        optax.adam(optax.linear_schedule(0.01, 0.0, 3)),
    ):
        with pytest.raises(FileExistsError, match="different run"):
            run(other)


SCRIPT = textwrap.dedent(
    """
    import sys, jax, rnnflow as rf
    model = rf.DiagonalRNN(6, scan="sequential")
    loss = rf.ImpulseLoss(rf.modes_teacher([0.9, -0.5], [1.0, 0.5]), 4)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), 12), scale=0.3)
    rf.train_seeds(model, loss, rf.GradientDescent(0.05, 20000), params,
                   save=rf.Save(num=3), lanes=2, chunk_size=2, checkpoint=sys.argv[1],
                   progress=True)
    """
)


def test_sigkill_then_rerun_gives_identical_results(tmp_path):
    # Float32, like a real sweep; this process runs float64, so the reference runs in a
    # subprocess too.
    env = {**os.environ, "JAX_ENABLE_X64": "0", "XLA_FLAGS": ""}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(killed)], stdout=subprocess.PIPE, text=True, env=env
    )
    for line in proc.stdout:  # kill it once two of the six chunks are on disk
        if line.startswith("rnnflow: seeds 4/12"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_done = len(list(killed.glob("seeds-chunk-*.npz")))
    assert 2 <= n_done < 6
    for folder in (killed, whole):
        subprocess.run(
            [sys.executable, "-c", SCRIPT, str(folder)], check=True, env=env, capture_output=True
        )
    for i in range(6):
        with (
            np.load(killed / f"seeds-chunk-{i:05d}.npz") as a,
            np.load(whole / f"seeds-chunk-{i:05d}.npz") as b,
        ):
            assert a.files == b.files
            for name in a.files:
                np.testing.assert_array_equal(a[name], b[name])


def test_interrupted_experiment_resumes_to_identical_results(tmp_path, count_blocks):
    import dataclasses

    from rnnflow.experiments import Sweep, init_scale

    config = init_scale.InitScaleConfig(
        seeds=2,
        parameterizations=("diagonal",),
        teachers=("short", "long"),
        state_dim=5,
        scales=(0.01, 0.3),
        t1=20.0,
    )

    class Interrupted(Exception):
        pass

    def killed_after_first_cell(config, sweep):
        calls = []

        class Once(Sweep):
            def train(self, *args, **kwargs):
                if calls:
                    raise Interrupted
                calls.append(1)
                return super().train(*args, **kwargs)

        return init_scale.run(config, Once(**dataclasses.asdict(sweep)))

    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        rf.run_experiment(
            dataclasses.replace(init_scale.EXPERIMENT, run=killed_after_first_cell), config, out=out
        )
    assert not (out / "metadata.json").exists()
    assert len(list((out / ".partial").rglob("seeds-chunk-*.npz"))) == 1

    # Another config into the unfinished folder is refused.
    with pytest.raises(FileExistsError, match="unfinished run"):
        rf.run_experiment("init_scale", config.replace(seeds=3), out=out)

    count_blocks.clear()
    resumed = rf.run_experiment("init_scale", config, out=out)
    assert len(count_blocks) == 1  # only the second cell (the "long" teacher) was trained
    assert not (out / ".partial").exists()
    whole = rf.run_experiment("init_scale", config, out=tmp_path / "whole")
    assert resumed.arrays.keys() == whole.arrays.keys()
    for name in whole.arrays:
        np.testing.assert_array_equal(resumed[name], whole[name])
