"""Models by name, for configs and the command line."""

from ..._engine.checks import check_choice
from .base import AbstractRNN
from .dense import DenseRNN
from .diagonal import DiagonalRNN
from .symmetric import SymmetricRNN
from .tanh import TanhRNN

MODELS: dict[str, type[AbstractRNN]] = {
    "dense": DenseRNN,
    "symmetric": SymmetricRNN,
    "diagonal": DiagonalRNN,
    "tanh": TanhRNN,
}


def make_model(parameterization: str, state_dim: int, **kwargs) -> AbstractRNN:
    """The model called `parameterization`: `"dense"`, `"symmetric"`, `"diagonal"` or `"tanh"`.

    ```python
    model = make_model("diagonal", 40)  # == DiagonalRNN(40)
    ```
    """
    check_choice("parameterization", parameterization, tuple(MODELS))
    return MODELS[parameterization](state_dim, **kwargs)
