"""An ingress replica that takes HTTP itself, stopping while a request is in flight: the API
over a test double of the models, served by the real front on a real socket, with the real
usage meter writing to the real store, started and stopped the way the replica does
(app/ingress.py: the front stops first, then the API's lifespan closes the meter)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest

from app.api import build_api
from app.ingress import serve_own_front
from bench.run import free_port
from control.deployment import AsyncStore
from control.store import Store
from messages import Reply
from tests.support.models_double import (
    CHAT,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    ModelsDoubleForTests,
)


class ModelsAnsweringSlowlyForTests(ModelsDoubleForTests):
    """A test double whose whole chat replies take ``seconds``; ``started`` is set when the
    first one is under way."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.started = asyncio.Event()
        self.chat_message = {"role": "assistant", "content": "Hello."}

    async def chat(self, model: str, body: dict[str, Any], progress: Any) -> Reply:
        self.started.set()
        await asyncio.sleep(self.seconds)
        return await super().chat(model, body, progress)


async def test_a_request_in_flight_when_the_replica_stops_is_answered_and_metered(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.default_project_id()
    secret = store.create_key(["GenerativeApisFullAccess"], [project])["secret_key"]
    models = ModelsAnsweringSlowlyForTests(seconds=1.0)
    # The meter's periodic flush is an hour away: only its last flush, when the replica
    # stops, can put this request's usage in the ledger.
    app = build_api(models, AsyncStore(store), usage_flush_seconds=3600)
    port = free_port()
    async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret,
                                  max_retries=0) as client:
        # As the replica starts: the front, then the API's lifespan (which now stops the
        # front before it closes the meter).
        await serve_own_front(app, "127.0.0.1", port)
        async with app.router.lifespan_context(app):
            reply = asyncio.create_task(client.chat.completions.create(
                model=CHAT, messages=[{"role": "user", "content": "Hi"}]))
            try:
                await asyncio.wait_for(models.started.wait(), 10)
            except BaseException:
                reply.cancel()
                raise
            assert store.usage(project) == []
        # The replica has stopped: its front closed its socket, let the request finish, and
        # the meter then wrote what it held.

        answered = await asyncio.wait_for(reply, 10)
        assert answered.choices[0].message.content == "Hello."
        rows = store.usage(project)
        assert [(r["model"], r["requests"], r["prompt_tokens"], r["completion_tokens"])
                for r in rows] == [(CHAT, 1, PROMPT_TOKENS, COMPLETION_TOKENS)]
        # And the stopped replica takes no new request.
        with pytest.raises(openai.APIConnectionError):
            await client.models.list()
