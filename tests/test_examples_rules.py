"""The rules page's example runs and shows what the page says: a user's rule (Sanger's
generalized Hebbian algorithm) finds the top eigenvectors, and descent is stable at its
fixed point exactly below the step that max|1 + ηλ(DF)| < 1 allows."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "examples"))

import own_rule  # noqa: E402


def test_sangers_rule_finds_the_top_eigenvectors_and_descent_is_stable_below_eta_star():
    cosines, critical, lam, distances = own_rule.main(seeds=4)
    np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
    # DF at (v₁, v₂): for row 1 (Oja's rule) λ₁ − λ_j and −2λ₁ = −10, the most negative, so
    # η* = 2/10; row 2 adds λ₂ − λ_j, −2λ₂ and the coupling terms, all real.
    assert critical == pytest.approx(0.2, rel=1e-9)
    np.testing.assert_allclose(np.asarray(lam).imag, 0.0, atol=1e-9)
    below, above = distances.values()
    assert below < 1e-10 < 1e-2 < above
