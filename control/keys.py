"""API keys as the store keeps them: the permission sets a key may hold, its grants, and the
hash that stands for its secret (the secret itself is never stored)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

PERMISSION_SETS = (
    "GenerativeApisModelAccess",
    "GenerativeApisFullAccess",
    "AllProductsFullAccess",
)
SECRET_PREFIX = "sk-"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Grant:
    permission_set: str
    project_id: str | None  # None: the whole organisation


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str | None
    created_at: int
    revoked: bool
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    expires_at: int | None = None  # unix seconds; None: never
    last_used_at: int | None = None  # to the minute (docs/api.md, "Keys")

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public(self) -> dict[str, Any]:
        sets = sorted({g.permission_set for g in self.grants})
        projects = sorted({g.project_id for g in self.grants if g.project_id})
        return {
            "id": self.id,
            "name": self.name,
            "permission_sets": sets,
            "projects": projects,
            "organization": any(g.project_id is None for g in self.grants),
            "created_at": self.created_at,
            "revoked": self.revoked,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
        }
