"""Where a vmapped Tsit5 step's time goes, and whether its per-stage copy can be removed.

A bare vmapped `diffrax.diffeqsolve(ODETerm(-∇L), Tsit5(), PIDController(rtol=1e-6,
atol=1e-9))` over S seeds of a gradient flow (parameters as one flat vector, float64) is
timed against variants that should give the same solution:

- `plain`: `diffrax.Tsit5()`, the seed axis first (vmap's default);
- `seed-last`: the same solve vmapped with the seed axis last (`in_axes=1, out_axes=1`);
- `scan_kind=lax`, `scan_kind=bounded`: diffrax's other stage-loop kinds;
- `loop-reduce`: diffrax's stage loop and buffer, each combination a product with the
  buffer summed over the stage axis instead of a dot product (`LoopTsit5` below);
- `unrolled`: `rnnflow.UnrolledTsit5`, which forms each stage's
  combination as an unrolled sum over a tuple of stages instead of diffrax's `(7, n)`
  buffer dotted with a tableau row.

Cases: diagonal d = 40 (closed-form gradient of `rnnflow._rnn.fused`) for 64 and 1024 seeds, the
same by autodiff on the parameter arrays (`diag64-tree`, the state `train_seeds` solves),
and dense d = 20 (autodiff, flat) for 256 seeds.

Checks, per variant against `plain`: the same accepted and rejected steps for every seed;
final states equal to 1e-12 (relative) with 1000 equal steps instead of the controller;
and with the controller, equal to 1e-12 or within 10× of how far the plain solve itself
moves when y0 is changed by 1e-15 (relative): the diagonal flows leave a saddle near
the origin and amplify rounding ~1e5-fold, so any change in the order of a sum shows.

Reported: milliseconds per accepted step (the wall time of a solve, compile excluded, over
the most steps any seed accepted; best of `--repeats` interleaved rounds) and the
`copy`/`transpose` instructions in the compiled HLO (fused ones included): all, and those
that move a whole stage buffer, by where they run (once, once a step, once a stage);
`--hlo` lists them with shapes.

    python benchmarks/tsit5_stages.py [--case diag64 ...] [--variant plain unrolled ...]
        [--repeats 3] [--hlo]
"""

import argparse
import collections
import math
import re
import time

import jax

jax.config.update("jax_enable_x64", True)  # a benchmark script, not library code

import diffrax  # noqa: E402
import equinox.internal as eqxi  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import rnnflow as rf  # noqa: E402
from rnnflow._rnn import fused as _fused  # noqa: E402

CASES = {  # name: (parameterization, d, seeds, t1, init scale, teacher modes)
    "diag64": ("diagonal", 40, 64, 20.0, 1e-3, ([0.9], [1.0])),
    "diag64-tree": ("diagonal-tree", 40, 64, 20.0, 1e-3, ([0.9], [1.0])),
    "diag1024": ("diagonal", 40, 1024, 20.0, 1e-3, ([0.9], [1.0])),
    "dense256": ("dense", 20, 256, 5.0, 0.2, ([0.9, -0.5], [1.0, 0.5])),
}


def problem(kind, d, seeds, scale, modes):
    """The initial parameters, flat `(seeds, n)` (or the parameter pytree for
    "diagonal-tree"), and the gradient of one seed's loss."""
    model = rf.make_model(kind.removesuffix("-tree"), d)
    loss = rf.ImpulseLoss(rf.modes_teacher(*modes), 5)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), seeds), scale=scale)
    if kind == "diagonal":  # the closed-form gradient of `rnnflow._rnn.fused`
        y = loss.target[:, 0, 0]

        def grad(p):
            _, g = _fused.value_and_grad(p[:d], p[d : 2 * d], p[2 * d :], y)
            return jnp.concatenate(g)

        flat = jnp.concatenate(
            [x.reshape(seeds, d) for x in (params.a, params.b, params.c)], axis=1
        )
        return flat, grad
    if kind == "diagonal-tree":  # autodiff, on the parameter arrays as train_seeds has them
        return params, jax.grad(lambda p: loss(model, p))
    one, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], params))
    bound = loss.bind(model)
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(params)
    return flat, lambda p: ravel_pytree(jax.grad(bound)(unravel(p)))[0]


def solver_fn(grad, solver, t1, seed_last=False, fixed=False):
    """A jitted vmapped solve: initial states `(seeds, n)` to final states and the
    accepted and rejected steps of each seed. `fixed`: 1000 equal steps instead of the
    PID controller's."""
    term = diffrax.ODETerm(lambda t, y, args: jax.tree.map(jnp.negative, grad(y)))
    if fixed:
        ctrl, dt0 = diffrax.ConstantStepSize(), t1 / 1000
    else:
        ctrl, dt0 = diffrax.PIDController(rtol=1e-6, atol=1e-9), None

    def one(y0):
        sol = diffrax.diffeqsolve(
            term, solver, 0.0, t1, dt0, y0, stepsize_controller=ctrl, max_steps=10**6
        )
        return (
            jax.tree.map(lambda x: x[-1], sol.ys),
            sol.stats["num_accepted_steps"],
            sol.stats["num_rejected_steps"],
        )

    if seed_last:
        batched = jax.vmap(one, in_axes=1, out_axes=(1, 0, 0))
        return jax.jit(lambda y0: (lambda y, a, r: (y.T, a, r))(*batched(y0.T)))
    return jax.jit(jax.vmap(one))


def hlo_copies(fn, y0):
    """The `copy`/`transpose` instructions in the compiled HLO (fused ones included), as
    counts by (loop depth, op and shape): depth 0 runs once, 1 once a step (inside the
    solver's step loop), 2 inside a loop in the step (diffrax's stage loop: once a stage)."""
    text = fn.lower(y0).compile().as_text()
    comps, name = {}, None
    for line in text.splitlines():
        head = re.match(r"(?:ENTRY )?%([\w.\-]+) .*\{$", line)
        if head:
            name = head.group(1)
            comps[name] = []
        elif name:
            comps[name].append(line)
    depth = {}

    def visit(comp, d):  # each computation at the deepest loop nesting it is reached at
        if depth.get(comp, -1) >= d:
            return
        depth[comp] = d
        for line in comps[comp]:
            for body in re.findall(r"body=%([\w.\-]+)", line):
                visit(body, d + 1)
            for callee in re.findall(r"(?:calls|condition|to_apply)=%([\w.\-]+)", line):
                visit(callee, d)
            for group in re.findall(r"branch_computations=\{([^}]*)\}", line):
                for callee in re.findall(r"%([\w.\-]+)", group):
                    visit(callee, d)

    visit(re.search(r"ENTRY %([\w.\-]+)", text).group(1), 0)
    counts = collections.Counter()
    for comp, lines in comps.items():
        for line in lines:
            op = re.search(r"= (\w+\[[\d,]*\])(?:\{[^}]*\})? (copy|transpose)\(", line)
            if op:
                counts[depth.get(comp, 0), f"{op.group(2)} {op.group(1)}"] += 1
    return counts


def _stage_buffer(counts, seeds):
    """How many of `counts` move a whole stage buffer (`(7, seeds, …)` in some order, for
    n > 1), by loop depth: "once/step/stage"."""
    out = collections.Counter()
    for (depth, op), count in counts.items():
        dims = [int(x) for x in re.search(r"\[([\d,]*)\]", op).group(1).split(",") if x]
        if 7 in dims and seeds in dims and math.prod(dims) > 7 * seeds:
            out[depth] += count
    return "/".join(str(out[d]) for d in range(3))


def _rel(y, ref):
    y, ref = (
        jnp.concatenate([x.reshape(len(x), -1) for x in jax.tree.leaves(z)], 1) for z in (y, ref)
    )
    return float(jnp.max(jnp.linalg.norm(y - ref, axis=1) / jnp.linalg.norm(ref, axis=1)))


class LoopTsit5(diffrax.Tsit5):
    """Tsit5 keeping diffrax's loop over stages and `(7, n)` stage buffer, but forming each
    combination as the buffer times a column of weights summed over the stage axis, not
    as a dot product (which XLA feeds with the transposed buffer)."""

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tab = self.tableau
        n = len(tab.c) + 1
        a = np.zeros((n, n))
        for i, row in enumerate(tab.a_lower):
            a[i + 1, : i + 1] = row
        c = np.concatenate([[0.0], tab.c])
        weighted = lambda w, ks: jnp.sum(w.reshape((-1,) + (1,) * (ks.ndim - 1)) * ks, 0)  # noqa: E731
        first_step, f0 = solver_state
        control = terms.contr(t0, t1)
        first = eqxi.unvmap_any(first_step | made_jump)
        f0 = jax.lax.cond(first, lambda: terms.vf(t0, y0, args), lambda: f0)
        k0 = terms.prod(f0, control)
        ks = jax.tree.map(lambda k: jnp.zeros((n,) + k.shape, k.dtype).at[0].set(k), k0)

        def stage(i, carry):
            ks, _, _ = carry
            yi = jax.tree.map(lambda y, k: y + weighted(jnp.asarray(a)[i], k), y0, ks)
            ci = jnp.asarray(c)[i]
            fi = terms.vf(jnp.where(ci == 1, t1, t0 + ci * (t1 - t0)), yi, args)
            ki = terms.prod(fi, control)
            return jax.tree.map(lambda b, k: b.at[i].set(k), ks, ki), yi, fi

        ks, y1, f1 = jax.lax.fori_loop(1, n, stage, (ks, y0, f0))
        y_error = jax.tree.map(lambda k: weighted(jnp.asarray(tab.b_error), k), ks)
        return y1, y_error, dict(y0=y0, y1=y1, k=ks), (False, f1), diffrax.RESULTS.successful


VARIANTS = {  # name: (solver, seed_last)
    "plain": (diffrax.Tsit5(), False),
    "seed-last": (diffrax.Tsit5(), True),
    "scan_kind=lax": (diffrax.Tsit5(scan_kind="lax"), False),
    "scan_kind=bounded": (diffrax.Tsit5(scan_kind="bounded"), False),
    "loop-reduce": (LoopTsit5(), False),
    "unrolled": (rf.UnrolledTsit5(), False),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hlo", action="store_true", help="print the copies' shapes")
    args = p.parse_args()
    names = ["plain"] + [v for v in args.variant if v != "plain"]
    print(f"device: {jax.devices()[0].device_kind}, float64, rtol 1e-6, atol 1e-9")
    for case in args.case:
        kind, d, seeds, t1, scale, modes = CASES[case]
        y0, grad = problem(kind, d, seeds, scale, modes)
        tree = kind.endswith("-tree")  # no seed-last variant for a pytree state
        case_names = [v for v in names if not (tree and VARIANTS[v][1])]
        fns = {v: solver_fn(grad, VARIANTS[v][0], t1, VARIANTS[v][1]) for v in case_names}
        n = sum(x[0].size for x in jax.tree.leaves(y0))
        print(f"\n{case}: {kind} d={d}, {seeds} seeds, n={n}, t1={t1:g}")
        outs, best = {}, dict.fromkeys(case_names, float("inf"))
        for name, fn in fns.items():
            outs[name] = jax.block_until_ready(fn(y0))  # compile
        for _ in range(args.repeats):  # interleaved, so that load drifts hit all alike
            for name, fn in fns.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(y0))
                best[name] = min(best[name], time.perf_counter() - start)
        ref_y, ref_acc, ref_rej = outs["plain"]
        steps = int(jnp.max(ref_acc))
        # How far rounding alone moves the plain solve: y0 perturbed by 1e-15 relative.
        keys = iter(jax.random.split(jax.random.key(1), 3))
        noisy = jax.tree.map(lambda x: x * (1 + 1e-15 * jax.random.normal(next(keys), x.shape)), y0)
        floor = _rel(fns["plain"](noisy)[0], ref_y)
        print(
            f"  steps: most accepted {steps}, most rejected {int(jnp.max(ref_rej))}; "
            f"plain solve moved {floor:.1e} by a 1e-15 change of y0"
        )
        fixed_ref = solver_fn(grad, VARIANTS["plain"][0], t1, fixed=True)(y0)[0]
        print(
            f"  {'variant':<18} {'ms/step':>8} {'vs plain':>8} {'rel. diff':>9} {'fixed dt':>9}",
            end="",
        )
        print("  copies (buffer: once/step/stage)")
        for name, fn in fns.items():
            y, acc, rej = outs[name]
            rel = _rel(y, ref_y)
            solver, seed_last = VARIANTS[name]
            fixed = _rel(solver_fn(grad, solver, t1, seed_last, fixed=True)(y0)[0], fixed_ref)
            same = bool(jnp.all(acc == ref_acc) & jnp.all(rej == ref_rej))
            # Same steps, and equal to 1e-12 at fixed steps; with the controller, equal to
            # 1e-12 or within the plain solve's own rounding spread (10× the floor).
            assert same and fixed <= 1e-12 and rel <= max(1e-12, 10 * floor), (
                name,
                same,
                fixed,
                rel,
            )
            copies = hlo_copies(fn, y0)
            print(
                f"  {name:<18} {1e3 * best[name] / steps:8.3f} "
                f"{best['plain'] / best[name]:7.2f}x {rel:9.1e} {fixed:9.1e} "
                f"{sum(copies.values()):4d} ({_stage_buffer(copies, seeds)})"
            )
            if args.hlo:
                for (depth, op), count in sorted(copies.items()):
                    print(f"      loop depth {depth}: {count:3d} × {op}")


if __name__ == "__main__":
    main()
