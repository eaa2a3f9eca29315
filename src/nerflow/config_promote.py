"""The `promote` section of the config: the evidence gate's rules and what happens when it accepts (`mode`).

`mode` replaced the boolean `promote.auto`; configs and resolved configs logged before still say `auto`, so it is
read as a mode (`auto: true` is `auto`, `auto: false` is `manual`) and never written back: the resolved config
holds `mode` only. Both given and disagreeing is an error naming both keys.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, model_validator

from nerflow.config_marks import REPORTING

# auto: the gate moves the alias; manual: stop at the evidence, a person promotes (`nerflow promote`); approval:
# the decision waits on the version for `nerflow approve` / `nerflow reject` (docs/promotion.md)
Mode = Literal["auto", "manual", "approval"]


class PromoteConfig(BaseModel):
    """The evidence gate that moves `alias` (default `champion`) to a newly registered version (nerflow.promotion)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # keys still read but no longer a field (deploy_guard.leaf_keys lets a deployment override them too)
    legacy_keys: ClassVar[tuple[str, ...]] = ("auto",)

    mode: Mode = "auto"
    alias: str = "champion"
    min_delta: float = Field(0.0, ge=0.0)       # test F1 must beat the champion's by more than this (a tie keeps it)
    min_f1: float = Field(0.1, ge=0.0, le=1.0)  # a floor: a model that predicts only `O` (F1 0) never passes
    min_support: NonNegativeInt = 20            # entity types (classes) with fewer test examples never reject ...
    max_type_drop: float = Field(0.02, ge=0.0)  # ... others may lose at most this much F1
    # score a version without a stored model hash (registered before nerflow stored one), or one with pickled
    # weights; a version whose files differ from its stored hash is refused whatever this says (docs/promotion.md)
    trust_unverified: bool = False
    # seconds the gate may spend scoring both versions (a stuck download, a hung load) before it stops with one
    # error, having written nothing and holding no lock; 0 = no limit. How long, not what: not in the stage's key
    score_timeout_s: Annotated[NonNegativeFloat, REPORTING] = 1800.0

    @model_validator(mode="before")
    @classmethod
    def _auto_is_a_mode(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "auto" not in data:
            return data
        data = dict(data)
        auto = data.pop("auto")
        if not isinstance(auto, bool):
            raise ValueError(f"promote.auto must be true or false (got {auto!r}); or set promote.mode: auto | "
                             "manual | approval")
        implied = "auto" if auto else "manual"
        if "mode" in data and data["mode"] != implied:
            raise ValueError(f"promote.auto: {str(auto).lower()} and promote.mode: {data['mode']} disagree (auto: "
                             f"{str(auto).lower()} means mode {implied}); set only promote.mode")
        data.setdefault("mode", implied)
        return data

    @property
    def auto(self) -> bool:
        """The gate moves the alias itself (what `promote.auto: true` meant)."""
        return self.mode == "auto"
