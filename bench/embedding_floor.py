"""The least an embeddings HTTP server can cost on this machine: one bare starlette app with
the model in its own process and a batcher that takes whatever queued while the last batch
ran (no auth, no validation, no Serve). ``make bench`` drives it with the same client and
sentences as the endpoint, so the report shows how much of the gap to in-process
``SentenceTransformer.encode`` is HTTP and the client themselves, and how much is the stack.

Run by uvicorn (``bench.embedding_floor:app``); ``EMBEDDING_FLOOR_MODEL`` is the model folder.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_BATCH = 64


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(os.environ["EMBEDDING_FLOOR_MODEL"], device="cpu")
    queue: asyncio.Queue[tuple[str, asyncio.Future[Any]]] = asyncio.Queue()

    async def batches() -> None:
        while True:
            items = [await queue.get()]
            while not queue.empty() and len(items) < MAX_BATCH:
                items.append(queue.get_nowait())
            vectors = await asyncio.to_thread(model.encode, [text for text, _ in items],
                                              normalize_embeddings=True)
            for (_, done), vector in zip(items, vectors, strict=True):
                done.set_result(vector)

    app.state.queue = queue
    task = asyncio.get_running_loop().create_task(batches())
    yield
    task.cancel()


async def embeddings(request: Request) -> JSONResponse:
    body = await request.json()
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    await request.app.state.queue.put((body["input"], done))
    vector = await done
    return JSONResponse({
        "object": "list", "model": body["model"],
        "data": [{"object": "embedding", "index": 0, "embedding": vector.tolist()}],
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    })


app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])],
                lifespan=lifespan)
