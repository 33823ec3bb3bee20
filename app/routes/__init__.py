"""The API's routes, one module per API family. Every ``/v1`` route also answers under
``/<project-id>/v1`` (docs/api.md, "Routes"); a new family is a module here and a line below.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.routes import (
    audio,
    audit,
    chat,
    completions,
    embeddings,
    keys,
    models,
    projects,
    rerank,
    responses,
    usage,
)

V1_ROUTES: list[BaseRoute] = [
    *models.ROUTES,
    *chat.ROUTES,
    *completions.ROUTES,
    *responses.ROUTES,
    *embeddings.ROUTES,
    *usage.ROUTES,
    *audio.ROUTES,
    *rerank.ROUTES,  # /v2/rerank (Cohere's v2 shape) among them, project prefix too
    *projects.ROUTES,
    *keys.ROUTES,
    *audit.ROUTES,
]
