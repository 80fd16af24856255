"""The stages layer: recipes (the run as typed data), the run folder that holds a run's stages, the forgetting-score
curricula, and the stage engine that turns a recipe into `StageTask`s for a method, stage after stage."""

from .engine import StageEngine, make_context
from .recipe import Recipe, load_recipe
from .run_folder import RunFolder, StageDataError

__all__ = ["Recipe", "RunFolder", "StageDataError", "StageEngine", "load_recipe", "make_context"]
