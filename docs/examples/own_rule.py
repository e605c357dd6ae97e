"""A learning rule written by a user: Sanger's generalized Hebbian algorithm (GHA).

Rows w_1, ..., w_m of W (m × d) are m linear neurons y = W x. Sanger's rule (1989),
ΔW = η (y xᵀ − LT(y yᵀ) W) with LT the lower triangle (diagonal included), averaged over
the inputs, is the field

    F(W) = W C − LT(W C Wᵀ) W,        C = E[x xᵀ],

which is no loss's gradient. Row i is Oja's rule on the inputs with the first i − 1
components removed, so W converges to the top m eigenvectors of C, in order, up to sign.
Around that fixed point a descent step θ ← θ + ηF(θ) is linearly stable while
|1 + ηλ| < 1 for every eigenvalue λ of DF: below η* = min 2|Re λ| / |λ|².
Run: python docs/examples/own_rule.py
"""

import jax
import jax.numpy as jnp
import numpy as np

import rnnflow as rf

jax.config.update("jax_enable_x64", True)

M, DIM = 2, 5


def covariance(key):
    """C with eigenvalues 5, 3, 1.5, 0.7, 0.2 along a random rotation."""
    q = jnp.linalg.qr(jax.random.normal(key, (DIM, DIM)))[0]
    return q @ jnp.diag(jnp.asarray([5.0, 3.0, 1.5, 0.7, 0.2])) @ q.T


def sanger(c):
    def field(w):
        wc = w @ c
        return wc - jnp.tril(wc @ w.T) @ w

    return rf.Rule(field)  # no loss: the run watches ‖W‖ and saves it as "norm"


def main(seeds: int = 8):
    c = covariance(jax.random.key(0))
    rule = sanger(c)
    w0 = 0.1 * jax.random.normal(jax.random.key(1), (seeds, M, DIM))
    flow = rf.train_seeds(rule, w0, rf.GradientFlow(t1=30.0))
    # Each row against the eigenvector of C it should reach: |cos| = 1 up to sign.
    vectors = np.linalg.eigh(np.asarray(c))[1][:, ::-1][:, :M]  # v₁, v₂ as columns
    cosines = np.abs(np.einsum("smd,dm->sm", np.asarray(flow.final), vectors))
    print(f"|cos(w_i, v_i)| after the flow, worst seed: {cosines.min(axis=0)}")

    # Stability of descent at the fixed point W* = (v₁, v₂)ᵀ.
    w_star = jnp.asarray(vectors.T)
    lam = np.asarray(rf.field_eigenvalues(rule, w_star, k=M * DIM))
    critical = float(np.min(-2 * lam.real / np.abs(lam) ** 2))
    print(f"DF at W*: eigenvalues {np.sort(lam.real)}; descent stable below η* = {critical:.4f}")
    start = w_star + 1e-3 * jax.random.normal(jax.random.key(2), w_star.shape)
    distances = {}
    for lr in (0.9 * critical, 1.1 * critical):
        radius = float(rf.stability_metric(rule, lr)(0.0, w_star))
        gd = rf.train(rule, start, rf.GradientDescent(lr, 300))
        distances[lr] = float(jnp.linalg.norm(gd.final - w_star))
        print(f"  η = {lr:.4f}: max|1 + ηλ| = {radius:.3f}, ‖W − W*‖ after 300 steps: "
              f"{distances[lr]:.1e}")  # fmt: skip
    return cosines, critical, lam, distances


if __name__ == "__main__":
    main()
