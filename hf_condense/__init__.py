"""hf_condense: progressive dataset condensation for the Hugging Face ecosystem."""

__version__ = "0.1.0"

from . import models  # noqa: E402  (registers the ConvNet family in timm)
from .augment import DSA  # noqa: E402
from .config import Recipe, RecipeError, load_recipe  # noqa: E402
from .data import RealData, load_real_data  # noqa: E402
from .methods import METHODS, Capabilities, MethodSpec, StageTask, SynSet  # noqa: E402
from .models import ConvNet, build_model  # noqa: E402
from .preprocess import Preprocessor  # noqa: E402
from .replay import ProgressiveSet, Stage, load_progressive  # noqa: E402

__all__ = [
    "DSA",
    "METHODS",
    "Capabilities",
    "ConvNet",
    "MethodSpec",
    "Preprocessor",
    "ProgressiveSet",
    "RealData",
    "Recipe",
    "RecipeError",
    "RunResult",
    "StageTask",
    "Stage",
    "SynSet",
    "build_model",
    "evaluate_progressive",
    "load_real_data",
    "load_progressive",
    "load_recipe",
    "models",
    "run",
]


def __getattr__(name: str):
    # The entry modules import lazily, so `python -m hf_condense.distill` does not find itself half-imported.
    if name in ("run", "RunResult"):
        from . import distill

        return getattr(distill, name)
    if name == "evaluate_progressive":
        from . import evaluate

        return evaluate.evaluate_progressive
    raise AttributeError(f"module 'hf_condense' has no attribute {name!r}")
