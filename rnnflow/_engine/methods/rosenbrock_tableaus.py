r"""The Rosenbrock-W tableaus of [`rnnflow.LeastSquaresRosenbrock`][]: ROS2 (Verwer et al.
1999) and ROS34PW2 (Rang and Angermann 2005), in the variables its steps use."""

from typing import NamedTuple

import numpy as np


class _Tableau(NamedTuple):
    r"""A Rosenbrock-W method in the variables $u_i = \sum_{j \le i} γ_{ij} k_j$ (Hairer and
    Wanner, IV.7): each stage solves $W u_i = hγ f(θ_n + \sum_{j<i} a_{ij} u_j) + γ \sum_{j<i}
    c_{ij} u_j$ with $W = I - γh\,\partial f/\partial θ$, and $θ_{n+1} = θ_n + \sum_i m_i
    u_i$; the embedded solution uses $\hat m$."""

    order: int
    gamma: float
    a: np.ndarray  # strictly lower triangular
    c: np.ndarray  # strictly lower triangular
    m: np.ndarray
    m_hat: np.ndarray


def _from_standard_form(order, gamma, alpha, gamma_offdiag, b, b_hat) -> _Tableau:
    r"""The tableau from the coefficients $α_{ij}, γ_{ij}, b_i, \hat b_i$ as published."""
    inv = np.linalg.inv(np.asarray(gamma_offdiag) + gamma * np.eye(len(b)))
    return _Tableau(
        order,
        gamma,
        np.asarray(alpha) @ inv,
        np.tril(-inv, -1),
        np.asarray(b) @ inv,
        np.asarray(b_hat) @ inv,
    )


# ROS2 of Verwer et al. (1999): W k_1 = f(θ_n), W k_2 = f(θ_n + hk_1) - 2k_1,
# θ_{n+1} = θ_n + (3/2)hk_1 + (1/2)hk_2, embedded first-order θ_n + hk_1; here u_i = γhk_i.
_G2 = 1.0 + 1.0 / np.sqrt(2.0)
_ROS2 = _Tableau(
    2,
    _G2,
    np.array([[0.0, 0.0], [1.0 / _G2, 0.0]]),
    np.array([[0.0, 0.0], [-2.0 / _G2, 0.0]]),
    np.array([1.5, 0.5]) / _G2,
    np.array([1.0, 0.0]) / _G2,
)
# ROS34PW2 of Rang and Angermann (2005): four stages, order 3 for any W (a W-method), with an
# embedded method of order 2; L-stable and stiffly accurate.
_ROS34PW2 = _from_standard_form(
    3,
    0.43586652150845900,
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.87173304301691801, 0.0, 0.0, 0.0],
        [0.84457060015369423, -0.11299064236484185, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ],
    [
        [0.0, 0.0, 0.0, 0.0],
        [-0.87173304301691801, 0.0, 0.0, 0.0],
        [-0.90338057013044082, 0.054180672388095326, 0.0, 0.0],
        [0.24212380706095346, -1.2232505839045147, 0.54526025533510214, 0.0],
    ],
    [0.24212380706095346, -1.2232505839045147, 1.5452602553351020, 0.43586652150845900],
    [0.37810903145819369, -0.096042292212423178, 0.5, 0.21793326075422950],
)
_TABLEAUS = {"ros2": _ROS2, "ros34pw2": _ROS34PW2}
