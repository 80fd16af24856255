"""hf_condense: progressive dataset condensation for the Hugging Face ecosystem.

The package reads as the pipeline, lowest layer first; a layer imports only the layers below it (import-linter's
contract in pyproject.toml, checked in CI):

    core        typed-config parsing, crash-safe and verifiable files
    data        real images from `datasets`, preprocessing (normalise / ZCA), DSA augmentation, multi-formation
    models      timm backbones (the ConvNet family), flat parameters, training and testing loops
    methods     one module per base method, the method contract, the run context, the shared method loop
    stages      recipes, the run folder, curricula, the stage engine (PDD, SeqMatch, Boost-DD)
    evaluation  the standard protocol over staged sets, references, the per-stage report
    hub         dataset card and figures, upload, replay of a repo
    cli         the `hf-condense` commands and their error boundary
"""

from . import models  # noqa: E402  (registers the ConvNet family in timm)
from .core.config import RecipeError  # noqa: E402
from .core.version import __version__
from .data import DSA, Preprocessor, RealData, load_real_data  # noqa: E402
from .evaluation import RunResult  # noqa: E402
from .hub import HubUnreachable, ProgressiveSet, Stage, load_progressive  # noqa: E402
from .methods import METHODS, Capabilities, MethodSpec, StageTask, SynSet  # noqa: E402
from .methods.context import RunContext  # noqa: E402
from .methods.loop import DistillLoop  # noqa: E402
from .models import ConvNet, build_model  # noqa: E402
from .stages import Recipe, RunFolder, StageEngine, load_recipe  # noqa: E402

__all__ = [
    "__version__",
    "DSA",
    "METHODS",
    "Capabilities",
    "ConvNet",
    "DistillLoop",
    "HubUnreachable",
    "MethodSpec",
    "Preprocessor",
    "ProgressiveSet",
    "RealData",
    "Recipe",
    "RecipeError",
    "RunContext",
    "RunFolder",
    "RunResult",
    "Stage",
    "StageEngine",
    "StageTask",
    "SynSet",
    "build_model",
    "evaluate_progressive",
    "load_progressive",
    "load_real_data",
    "load_recipe",
    "models",
    "run",
]


def __getattr__(name: str):
    # The command modules import lazily, so `python -m hf_condense.distill` does not find itself half-imported.
    if name == "run":
        from .cli.distill import run

        return run
    if name == "evaluate_progressive":
        from .hub.evaluate import evaluate_progressive

        return evaluate_progressive
    raise AttributeError(f"module 'hf_condense' has no attribute {name!r}")
