"""The method registry: one plain dict from recipe names to method specs."""

from __future__ import annotations

from .base import Capabilities, Distiller, DivergenceError, MethodSpec, StageOutput, StageTask, SynSet
from .coreset import SPECS as _CORESETS
from .dm import SPEC as _DM
from .gradient_matching import SPECS as _GM
from .idc import SPEC as _IDC
from .mtt import SPEC as _MTT
from .ratbptt import SPEC as _RATBPTT

METHODS: dict[str, MethodSpec] = {
    **_CORESETS,
    **_GM,
    "idc": _IDC,
    "dm": _DM,
    "mtt": _MTT,
    "ratbptt": _RATBPTT,
}

__all__ = [
    "METHODS",
    "Capabilities",
    "Distiller",
    "DivergenceError",
    "MethodSpec",
    "StageOutput",
    "StageTask",
    "SynSet",
]
