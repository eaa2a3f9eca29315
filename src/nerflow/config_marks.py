"""Field marks of the config classes (nerflow.config, nerflow.config_promote, nerflow.config_train): which settings
never enter a stage key; and `Section`, the frozen, strict base of a config section. In a module of their own so
that every config module can use them without importing nerflow.config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class NotInKey:
    """Field metadata: the setting never enters a stage key. `why` is "identity" (the data or model identity covers
    it by content: where files are is not what they hold) or "reporting" (how a stage reports, how often it saves
    its progress, or where its processes meet: not what it produces)."""

    why: Literal["identity", "reporting"]


IDENTITY, REPORTING = NotInKey("identity"), NotInKey("reporting")


class Section(BaseModel):
    """A config section: frozen once validated, and a key it does not declare is an error naming it."""
    model_config = ConfigDict(frozen=True, extra="forbid")
