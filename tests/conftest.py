import os

# Four virtual CPU devices, so that sharding over the seed axis is tested without a GPU.
# XLA reads this flag once, when the backend starts: it must be set before jax is imported.
# With several CPU devices jaxlib 0.10.2 can deadlock in batched LAPACK calls (eigh in a
# save metric, from about 10 seeds per device). train_seeds runs such blocks on one device;
# a test that calls LAPACK on sharded arrays outside it should keep to a few per device.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import pytest  # noqa: E402

# Exact facts (scan equality, conservation laws, convergence orders) are tested in float64.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop every compiled program after each test module. XLA's CPU backend maps memory
    for each executable it keeps; a whole test session keeps thousands and can exhaust the
    kernel's limit on memory maps (vm.max_map_count), which ends the process in a
    segmentation fault inside the compiler."""
    yield
    jax.clear_caches()


class Tripwire(Exception):
    """Raised by the stand-ins of `no_compile`."""


@pytest.fixture
def no_compile(monkeypatch):
    """Replace the compiled training programs (and the field's eigenvalue program): reaching
    them means the checks let a call through. Returns the exception they raise."""
    import rnnflow

    def tripwire(*args, **kwargs):
        raise Tripwire("the compiled training program was reached")

    tripwire.lower = tripwire  # lowering it (to look for LAPACK calls) counts as reaching it
    monkeypatch.setattr(rnnflow._engine.train, "_run_jit", tripwire)
    monkeypatch.setattr(rnnflow._engine.blocks, "_block_jit", tripwire)
    monkeypatch.setattr(rnnflow._lens.field_spectrum, "_eigenvalues", tripwire)
    return Tripwire


@pytest.fixture
def placed_on(monkeypatch):
    """The set of devices that blocks' shares of seeds are placed on (by `train_seeds` and
    `run_sweep`), recorded from here on; clear it before the call to look at."""
    from rnnflow._engine import blocks

    used, placed = set(), blocks._placed

    def record(args, device):
        used.add(device)
        return placed(args, device)

    monkeypatch.setattr(blocks, "_placed", record)
    return used
