"""Which model answers a name a client sends: aliases and the models' lifecycle.

The config (deployments/config.py) gives every model a lifecycle, ``preview``, ``active``,
``deprecated`` or ``eol`` (end of life), with the dates of its deprecation and end of life and
the model that replaces it, and may give it aliases. Here that becomes what clients see:

- an alias is another name of its model: the request runs on the model, and the reply and the
  ledger name the model;
- a deprecated model still answers, and every reply tells the client so, in the standard
  headers (RFC 9745 ``Deprecation``, RFC 8594 ``Sunset``, a ``Link`` to the successor), so
  that a client can notice before the date;
- an end-of-life model runs no more: its requests are served by its replacement (followed
  through replacements that are themselves retired), the reply's ``model`` names the model
  that answered and the ledger the model that ran; the headers still say why.

A name the catalog does not know is passed on as it is, for the models' own 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from email.utils import format_datetime
from typing import Literal

from messages import ModelCard

Status = Literal["preview", "active", "deprecated", "eol"]


@dataclass(frozen=True)
class Lifecycle:
    """One model's lifecycle, as the config declares it (validated there)."""

    status: Status = "active"
    deprecated_at: date | None = None
    eol_at: date | None = None
    replacement: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def retiring(self) -> bool:
        return self.status in ("deprecated", "eol")


@dataclass(frozen=True)
class Resolved:
    """The model a request runs on, and the headers its reply carries."""

    model: str
    notice: dict[str, str] = field(default_factory=dict)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def notice_headers(lifecycle: Lifecycle) -> dict[str, str]:
    """The headers of a reply for a deprecated or retired model: ``Deprecation`` is when it was
    deprecated (a structured-field date, ``@`` and seconds since the epoch), ``Sunset`` when it
    ends (an HTTP date), ``Link`` its successor's model card."""
    headers: dict[str, str] = {}
    if not lifecycle.retiring:
        return headers
    if lifecycle.deprecated_at is not None:
        headers["Deprecation"] = f"@{int(_midnight(lifecycle.deprecated_at).timestamp())}"
    if lifecycle.eol_at is not None:
        headers["Sunset"] = format_datetime(_midnight(lifecycle.eol_at), usegmt=True)
    if lifecycle.replacement is not None:
        headers["Link"] = f'</v1/models/{lifecycle.replacement}>; rel="successor-version"'
    return headers


class ModelCatalog:
    """Every public model name (ids and aliases) and the model that answers it."""

    def __init__(self, lifecycles: dict[str, Lifecycle] | None = None,
                 retired_cards: list[ModelCard] | None = None) -> None:
        # lifecycles: model id -> lifecycle (a model not in it is active, without aliases);
        # retired_cards: the cards of end-of-life models, which have no replica to describe
        # them.
        self._lifecycles = dict(lifecycles or {})
        self._alias_of = {alias: model for model, lc in self._lifecycles.items()
                          for alias in lc.aliases}
        self._retired = {card.id: card for card in retired_cards or []}

    def lifecycle(self, model: str) -> Lifecycle:
        return self._lifecycles.get(model, Lifecycle())

    def named(self, name: str) -> str:
        """The model id ``name`` stands for: itself, or the model it is an alias of."""
        return self._alias_of.get(name, name)

    def resolve(self, name: str) -> Resolved:
        """The model that serves a request for ``name``; the headers say why if it is not the
        model named (past its end of life) or if that model is being retired."""
        model = self.named(name)
        notice = notice_headers(self.lifecycle(model))
        seen = {model}
        while self.lifecycle(model).status == "eol":
            replacement = self.lifecycle(model).replacement
            # The config refuses an end-of-life model without a replacement, and cycles.
            assert replacement is not None and replacement not in seen, model
            model = replacement
            seen.add(model)
        return Resolved(model, notice)

    def retired_card(self, model: str) -> ModelCard | None:
        card = self._retired.get(model)
        return self.described(card) if card is not None else None

    def described(self, card: ModelCard) -> ModelCard:
        """``card`` with its model's lifecycle and aliases."""
        lc = self.lifecycle(card.id)
        return card.model_copy(update={
            "status": lc.status,
            "deprecated_at": lc.deprecated_at.isoformat() if lc.deprecated_at else None,
            "eol_at": lc.eol_at.isoformat() if lc.eol_at else None,
            "replacement": lc.replacement,
            "aliases": list(lc.aliases) or None,
        })

    def listing(self, served: list[ModelCard]) -> list[ModelCard]:
        """``GET /v1/models``: the served models' cards, then the retired ones, each with its
        lifecycle."""
        return [self.described(card) for card in [*served, *self._retired.values()]]
