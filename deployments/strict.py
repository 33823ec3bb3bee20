"""The base of every operator config model: unknown keys are refused, so a typo never silently
falls back to a default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
