"""Interrupted sweeps: checkpointed chunks resume to results identical to an uninterrupted run."""

import functools
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import diffrax
import jax
import numpy as np
import optax
import pytest

import rnnflow as rf
import rnnflow._engine.blocks as blocks_module
import rnnflow._engine.files as rf_files

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
    real = blocks_module._block_jit

    def counting(*args, **kwargs):
        # Counts computations; abstract evaluation (jax.eval_shape, for the output structure)
        # traces with tracers and computes nothing. args: loss_fn, method, seeds' params, ...
        if not isinstance(jax.tree.leaves(args[2])[0], jax.core.Tracer):
            calls.append(1)
        return real(*args, **kwargs)

    counting.lower = real.lower  # lowering (to look for LAPACK calls) computes nothing
    monkeypatch.setattr(blocks_module, "_block_jit", counting)
    return calls


def test_checkpointed_equals_plain_and_resumes_without_work(tmp_path, count_blocks):
    p = params(10)
    one = jax.devices()[:1]
    # Blocks of 2 seeds (lanes), in chunks of 2 blocks: 10 seeds are 4 + 4 + 2.
    plain = rf.train_seeds(LOSS.bind(MODEL), p, METHOD, save=SAVE, lanes=2, devices=one)

    def run():
        return rf.train_seeds(
            LOSS.bind(MODEL),
            p,
            METHOD,
            save=SAVE,
            lanes=2,
            chunk_size=4,
            devices=one,
            checkpoint=tmp_path,
        )

    first = run()
    assert_identical(first, plain)
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == ["checkpoint.json"] + [f"seeds-chunk-{i:05d}.npz" for i in range(3)]

    # A run killed before chunk 1 was written: that chunk alone (2 blocks) is computed again.
    (tmp_path / files[2]).unlink()
    (tmp_path / ".seeds-chunk-00001.npz.abc.tmp").write_bytes(b"partial write")  # never read
    count_blocks.clear()
    assert_identical(run(), plain)
    assert len(count_blocks) == 2

    # A finished run does no work at all.
    count_blocks.clear()
    assert_identical(run(), plain)
    assert count_blocks == []


def folder_hashes(folder):
    """Every file under `folder` and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _refused(run, *args, **kwargs):
    """`run(*args, **kwargs)` into a folder of another run is refused, and nothing in the
    folder changes (its files are the same, byte for byte)."""
    before = folder_hashes(kwargs["checkpoint"])
    with pytest.raises(FileExistsError, match="holds the chunks of another run"):
        run(*args, **kwargs)
    assert folder_hashes(kwargs["checkpoint"]) == before


def test_checkpoint_of_another_run_is_refused_and_left_unchanged(tmp_path):
    rf.train_seeds(LOSS.bind(MODEL), params(4), METHOD, save=SAVE, checkpoint=tmp_path)

    def run(loss_fn=LOSS.bind(MODEL), method=METHOD, save=SAVE, **kwargs):
        return rf.train_seeds(loss_fn, params(4), method, save=save, **kwargs)

    def other(**kwargs):
        _refused(run, checkpoint=tmp_path, **kwargs)

    other(method=rf.GradientDescent(0.05, 300))
    # The same end time and save times with another step size is another run too.
    other(method=rf.GradientDescent(0.1, 100))
    # Another teacher of the same shapes (only the loss's values differ), other saves, an
    # early stop, another batch width (which may round differently: see train_seeds).
    other(loss_fn=rf.ImpulseLoss(rf.modes_teacher([0.9, -0.4], [1.0, 0.5]), 4).bind(MODEL))
    other(save=rf.Save(num=4, metrics=dict(SAVE.metrics)))
    other(stop=rf.Stop(loss_below=1e-6))
    other(lanes=2)
    # Other initial parameters.
    before = folder_hashes(tmp_path)
    with pytest.raises(FileExistsError, match="other seeds"):
        rf.train_seeds(LOSS.bind(MODEL), params(4, seed=1), METHOD, save=SAVE, checkpoint=tmp_path)
    assert folder_hashes(tmp_path) == before


def test_a_folder_of_other_files_is_refused_and_left_unchanged(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    before = folder_hashes(tmp_path)
    with pytest.raises(FileExistsError, match="not rnnflow checkpoints"):
        rf.train_seeds(LOSS.bind(MODEL), params(4), METHOD, save=SAVE, checkpoint=tmp_path)
    assert folder_hashes(tmp_path) == before


def test_damaged_or_swapped_chunk_files_are_recomputed(tmp_path, count_blocks):
    p = params(10)
    one = jax.devices()[:1]
    plain = rf.train_seeds(LOSS.bind(MODEL), p, METHOD, save=SAVE, lanes=2, devices=one)

    def run(seeds=p):
        # Blocks of 2 seeds, in chunks of 2 blocks: 10 seeds are 4 + 4 + 2.
        return rf.train_seeds(
            LOSS.bind(MODEL),
            seeds,
            METHOD,
            save=SAVE,
            lanes=2,
            chunk_size=4,
            devices=one,
            checkpoint=tmp_path,
        )

    def recomputed(chunk, why, blocks=2):
        # Each damaged file is reported and its chunk (2 blocks) alone computed again, to
        # the results of an uninterrupted run.
        count_blocks.clear()
        with pytest.warns(rf_files.DamageWarning, match=f"chunk-{chunk:05d}.npz is damaged: {why}"):
            traj = run()
        assert_identical(traj, plain)
        assert len(count_blocks) == blocks

    run()
    files = [tmp_path / f"seeds-chunk-{i:05d}.npz" for i in range(3)]
    # A truncated file.
    files[0].write_bytes(files[0].read_bytes()[:100])
    recomputed(0, "it cannot be read")
    # A file whose results were altered.
    with np.load(files[1]) as data:
        fields = dict(data)
    fields["leaf0"] = fields["leaf0"] + 1
    np.savez(files[1], **fields)
    recomputed(1, "its content does not match its checksum")
    # A file of another chunk: chunk 0's file copied over chunk 1's.
    files[1].write_bytes(files[0].read_bytes())
    recomputed(1, "it holds other seeds than this chunk's")

    # A file of another run of the same shapes put in this run's folder.
    (tmp_path / "other").mkdir()
    rf.train_seeds(
        LOSS.bind(MODEL),
        params(10, seed=1),
        rf.GradientDescent(0.04, 200),
        save=SAVE,
        lanes=2,
        chunk_size=4,
        devices=one,
        checkpoint=tmp_path / "other",
    )
    files[2].write_bytes((tmp_path / "other" / files[2].name).read_bytes())
    (tmp_path / "other").rename(tmp_path / ".other")  # hidden: not a file of this folder
    recomputed(2, "it was computed by another run", blocks=1)


@pytest.mark.slow
def test_checkpoint_of_a_flow_with_other_settings_is_refused(tmp_path, count_blocks):
    save = rf.Save(num=3)
    run = functools.partial(rf.train_seeds, LOSS.bind(MODEL), params(4), save=save)
    first = run(rf.GradientFlow(1.0), checkpoint=tmp_path / "a")
    run(rf.GradientFlow(1.0), checkpoint=tmp_path / "b")
    count_blocks.clear()
    assert_identical(run(rf.GradientFlow(1.0), checkpoint=tmp_path / "a"), first)
    assert not count_blocks  # the same run resumes
    for other in (
        rf.GradientFlow(1.0, stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-7)),
        rf.GradientFlow(1.0, solver=rf.LeastSquaresRosenbrock()),
    ):
        _refused(run, other, checkpoint=tmp_path / "b")
        run(rf.GradientFlow(1.0), checkpoint=tmp_path / "b")  # and back
    # A progress meter changes nothing computed: the run resumes with one.
    with_meter = rf.GradientFlow(1.0, progress_meter=diffrax.TextProgressMeter())
    count_blocks.clear()
    assert_identical(run(with_meter, checkpoint=tmp_path / "a"), first)
    assert not count_blocks


@pytest.mark.slow
def test_checkpoint_of_another_optax_optimizer_is_refused(tmp_path, count_blocks):
    def run(optimizer, checkpoint=tmp_path):
        method = rf.GradientDescent(0.01, 50, optimizer)  # the optimizers' own rate
        return rf.train_seeds(LOSS.bind(MODEL), params(4), method, save=SAVE, checkpoint=checkpoint)

    first = run(optax.adam(0.01))
    count_blocks.clear()
    assert_identical(run(optax.adam(0.01)), first)  # a new, equal optimizer resumes
    assert not count_blocks
    # Hyperparameters live in closures, which print the same; their updates differ. (The
    # rate is the method's: an optimizer at another rate is refused, see test_methods.)
    for other in (
        optax.adam(0.01, b1=0.8),
        optax.chain(optax.clip_by_global_norm(1e-3), optax.adam(0.01)),
        optax.sgd(0.01, momentum=0.9),
    ):
        _refused(run, other, checkpoint=tmp_path)
        run(optax.adam(0.01))  # and back


@pytest.mark.slow
def test_checkpoint_of_another_learning_rate_schedule_is_refused(tmp_path, count_blocks):
    def run(lr, checkpoint=tmp_path):
        method = rf.GradientDescent(lr, 50)
        return rf.train_seeds(LOSS.bind(MODEL), params(4), method, save=SAVE, checkpoint=checkpoint)

    first = run(optax.linear_schedule(0.05, 0.01, 50))
    count_blocks.clear()
    assert_identical(run(optax.linear_schedule(0.05, 0.01, 50)), first)  # an equal schedule
    assert not count_blocks
    # A constant rate, and schedules whose hyperparameters (in closures) differ.
    for other in (
        0.05,
        optax.linear_schedule(0.05, 0.02, 50),
        optax.linear_schedule(0.05, 0.01, 40),
        optax.cosine_decay_schedule(0.05, 50),
    ):
        _refused(run, other, checkpoint=tmp_path)
        run(optax.linear_schedule(0.05, 0.01, 50))  # and back


SCRIPT = textwrap.dedent(
    """
    import sys, jax, rnnflow as rf
    model = rf.DiagonalRNN(6, scan="sequential")
    loss = rf.ImpulseLoss(rf.modes_teacher([0.9, -0.5], [1.0, 0.5]), 4)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), 12), scale=0.3)
    rf.train_seeds(loss.bind(model), params, rf.GradientDescent(0.05, 20000),
                   save=rf.Save(num=3), lanes=2, chunk_size=2, checkpoint=sys.argv[1],
                   progress=True)
    """
)


@pytest.mark.slow  # three processes that start JAX: about 15 s
def test_sigkill_then_rerun_gives_identical_results(tmp_path):
    # Float32, like a real sweep; this process runs float64, so the reference runs in a
    # subprocess too.
    env = {**os.environ, "JAX_ENABLE_X64": "0", "XLA_FLAGS": "", "JAX_NUM_CPU_DEVICES": "1"}
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


_KILL_SCRIPT = """
import sys, jax, numpy as np, rnnflow as rf
model = rf.DenseRNN(4)
loss = rf.ImpulseLoss(rf.modes_teacher([0.9, -0.5], [1.0, 0.5]), 5).bind(model)
params = rf.init_seeds(model, jax.random.split(jax.random.key(0), 32), scale=0.3)
traj = rf.train_seeds(loss, params, rf.GradientDescent(0.05, 20_000), save=rf.Save(num=3),
                      chunk_size=2, lanes=2, checkpoint=sys.argv[1], progress=True)
np.savez(sys.argv[2], *jax.tree.leaves(traj))
"""


def _run_script(script, folder, out, env):
    subprocess.run(
        [sys.executable, str(script), str(folder), str(out)],
        env=env,
        check=True,
        capture_output=True,
    )
    with np.load(out) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_the_same_call_gives_the_same_result(tmp_path):
    # Each run is killed at a random moment: after a random number of its chunks (0 to 6)
    # have been reported finished, plus a random delay within a chunk's time, so that it
    # dies while compiling, computing or writing a chunk.
    script, out = tmp_path / "run.py", tmp_path / "out.npz"
    script.write_text(_KILL_SCRIPT)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
    env.pop("XLA_FLAGS", None)
    reference = _run_script(script, tmp_path / "uninterrupted", out, env)  # 16 chunks
    folder, rng = tmp_path / "ck", random.Random(0)
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(folder), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_for = rng.randint(0, 6)
        start = time.perf_counter()
        for _ in range(wait_for):
            if not proc.stdout.readline():
                break
        time.sleep(rng.uniform(0.0, 0.2) if wait_for else rng.uniform(0.5, 3.0))
        proc.kill()  # SIGKILL
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, time.perf_counter() - start
    written = len(list(folder.glob("seeds-chunk-*.npz")))
    assert 0 < written < 16  # killed part-way: resuming has work to load and work to do
    resumed = _run_script(script, folder, out, env)
    assert len(resumed) == len(reference)
    assert all(
        np.array_equal(a, b, equal_nan=True) for a, b in zip(resumed, reference, strict=True)
    )
