"""The hub layer: what a finished run folder becomes for other people: its dataset card and figures, its upload to
a Hub dataset repo, and the replay of any such repo (or folder) stage by stage."""

from .push import HubUnreachable
from .replay import ProgressiveSet, Stage, load_progressive

__all__ = ["HubUnreachable", "ProgressiveSet", "Stage", "load_progressive"]
