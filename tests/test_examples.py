"""The documentation's examples run, and show what their pages say they show."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "examples"))

import lru  # noqa: E402
import mlp  # noqa: E402
import sweep  # noqa: E402
import three_limits  # noqa: E402
import two_layer  # noqa: E402


def test_two_layer_network_follows_the_closed_form_and_learns_strong_modes_first():
    error, half, predicted = two_layer.main()
    assert error < 1e-8  # float64, rtol 1e-10: the flow is the closed form
    assert np.all(np.diff(half) > 0)  # strongest first: saddle to saddle
    assert np.all(np.abs(half - predicted) <= 0.05 + 1e-9)  # within one save interval


def test_mlp_gradient_descent_follows_the_flow_to_first_order():
    # Halving η halves the gap between gradient descent and the flow at equal flow times.
    gaps = []
    for lr in (0.05, 0.025):
        gd, gf = mlp.main(seeds=8, t1=10.0, lr=lr)
        assert gd.summary() == gf.summary() == {"finished": 8}
        gap = np.abs(np.asarray(gd.metrics["loss"]) - np.asarray(gf.metrics["loss"]))
        gaps.append(np.median(gap[:, -1] / np.asarray(gf.metrics["loss"])[:, -1]))
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.15)


def test_complex_lru_trains_as_its_real_split():
    by_adam, by_flow, gap = lru.main(seeds=4, steps=300, t1=5.0)
    assert by_adam.summary() == by_flow.summary() == {"finished": 4}
    assert gap < 1e-12  # the same steps as on the (real, imaginary) split, to rounding
    assert by_adam.time_axis == "sum of rates" and by_flow.time_axis == "flow time"
    loss = np.asarray(by_adam.metrics["loss"])
    assert np.all(loss[:, -1] < loss[:, 0])


def test_sweep_example_writes_a_labelled_store(tmp_path):
    ds = sweep.main(str(tmp_path / "s.zarr"), 4, str(tmp_path / "s.png"))
    assert ds.extrapolation.dims == ("init_scale", "seed", "time")
    assert (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_sgd_spread_is_2_over_2_minus_eta_times_that_of_its_sde():
    # Stationary spreads on a quadratic, in units of η tr C / 2B: SGD 2/(2 − η) exactly, the
    # SDE 1 (to its own step's 0.25 %). Sampling error over 1000 seeds × 10 saves: ~2 %.
    rows = three_limits.main(figure=None)
    lr, sgd, sde = rows.T
    assert np.all(np.abs(sgd - 2 / (2 - lr)) < 0.08)
    assert np.all(np.abs(sde - 1.0) < 0.08)
    assert sgd[-1] - sde[-1] > 0.5  # at η = 0.8 the two limits differ by 2/3


def test_the_getting_started_page_names_what_a_results_folder_holds():
    # Before: it named metadata.json and results.npz, which no run writes.
    from rnnflow.experiments import results

    page = (Path(__file__).resolve().parent.parent / "docs" / "index.md").read_text()
    sentence = page[page.index("Each run writes a results folder") :].split("load_results")[0]
    for name in (results.RUN, results.SUMMARY, results.FIGURE, ".zarr"):
        assert name in sentence
    assert "metadata.json" not in page and "results.npz" not in page
