"""The methods layer: one module per base method (its config dataclass, its distiller, its registry entry), the
method contract (`base`), the run context they work in, and the shared method loop (`loop.DistillLoop`).

The registry is one plain dict from recipe names (`method.name`) to specs; adding a method is one module, one line
here and a recipe. A method reads only its `StageTask` and the `RunContext`, never the recipe.
"""

from __future__ import annotations

from .base import (
    Capabilities,
    Distiller,
    DivergenceError,
    MethodConfig,
    MethodSpec,
    Probe,
    StageOutput,
    StageTask,
    SynSet,
)
from .coreset import SPECS as _CORESETS
from .datm import SPEC as _DATM
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
    "datm": _DATM,
    "ratbptt": _RATBPTT,
}


def method_config(name: str, **values) -> MethodConfig:
    """The config of registered method `name` (its name is its registry key), with `values` set."""
    return METHODS[name].config_class(name=name, **values)


__all__ = [
    "METHODS",
    "Capabilities",
    "Distiller",
    "DivergenceError",
    "MethodConfig",
    "MethodSpec",
    "Probe",
    "StageOutput",
    "StageTask",
    "SynSet",
    "method_config",
]
