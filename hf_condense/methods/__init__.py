"""The method registry: one plain dict from recipe names to method specs."""

from __future__ import annotations

from .base import Capabilities, Distiller, MethodSpec, StageOutput, StageTask, SynSet
from .coreset import SPECS as _CORESETS

METHODS: dict[str, MethodSpec] = {
    **_CORESETS,
}

__all__ = ["METHODS", "Capabilities", "Distiller", "MethodSpec", "StageOutput", "StageTask", "SynSet"]
