"""A sweep over init scales and seeds, written to a zarr store, opened as a labelled array.

Diagonal students d = 20 on the impulse loss of 0.9^i (k = 5) trained by gradient descent
from unbalanced random starts at five init scales; the relative extrapolation error to
10 k is saved at 11 times. Run: python docs/examples/sweep.py [STORE] [SEEDS]
"""

import sys

import jax

import rnnflow as rf

TEACHER = rf.modes_teacher([0.9], [1.0])


def setup(point, key):
    model = rf.DiagonalRNN(20)
    params = model.init(key=key, scale=point["init_scale"])  # traced: one program for all
    return rf.ImpulseLoss(TEACHER, 5).bind(model), params, rf.GradientDescent(0.02, 5000)


def main(store="sweep.zarr", seeds=100, figure="sweep.png"):
    sweep = rf.Sweep(
        axes={"init_scale": [1e-3, 1e-2, 0.05, 0.1, 0.2]},
        seeds=seeds,
        setup=setup,
        key=jax.random.key(0),
        save=rf.Save(num=11),
        stop=rf.Stop(loss_below=1e-10),
    )
    ds = rf.run_sweep(sweep, store)

    # The analysis reads the store, lazily, like any xarray Dataset:
    ds = rf.open_results(store)
    final = ds.extrapolation.isel(time=-1).where(ds.result <= rf.Result.converged)
    final.median("seed").plot(x="init_scale", xscale="log", yscale="log", marker="o")
    import matplotlib.pyplot as plt

    plt.savefig(figure)
    return ds


if __name__ == "__main__":
    main(*sys.argv[1:2], *(int(a) for a in sys.argv[2:3]))
