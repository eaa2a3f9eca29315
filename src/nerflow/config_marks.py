"""Field marks of the config classes (nerflow.config, nerflow.config_promote): which settings never enter a stage
key. In a module of their own so that every config module can use them without importing nerflow.config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class NotInKey:
    """Field metadata: the setting never enters a stage key. `why` is "identity" (the data or model identity covers
    it by content: where files are is not what they hold) or "reporting" (how a stage reports, how often it saves
    its progress, or where its processes meet: not what it produces)."""

    why: Literal["identity", "reporting"]


IDENTITY, REPORTING = NotInKey("identity"), NotInKey("reporting")
