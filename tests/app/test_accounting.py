"""app/accounting.py: one request's books. The quota reservation is settled exactly once (to
the usage reported, or to nothing), a reply or a stream meters its usage, and the deadline is
the contract's 503."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from app.accounting import Accounting
from app.auth import Caller
from app.errors import APIError
from app.quota_gate import QuotaGate
from app.usage_meter import UsageMeter
from control.deployment import AsyncStore
from control.store import Store
from messages import Chunk, FinalUsage, Reply, Usage
from tests.support.models_double import CHAT, DONE, chunk

RESERVED = 100  # the admission's estimate; the project's limit is 1000 tokens a minute


class Books:
    """Accounting over a real store, gate and meter, for a project with a tokens limit."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(tmp_path)
        self.project = self.store.create_project("p")["id"]
        self.store.update_project(self.project, tpm=1000)
        control_plane = AsyncStore(self.store)
        self.gate = QuotaGate(control_plane)
        self.meter = UsageMeter(control_plane, interval=3600)  # flushed by the tests

    def open(self, timeout_s: float = 60) -> Accounting:
        scope = {"type": "http", "headers": [],
                 "state": {"request_id": "req_1", "arrived": time.monotonic()}}
        return Accounting(Request(scope), Caller("key_1", self.project), CHAT, None,
                          meter=self.meter, quotas=self.gate, timeout_s=timeout_s)

    async def ledger(self) -> list[tuple[int, int, int]]:
        await self.meter.flush()
        return [(r["requests"], r["prompt_tokens"], r["completion_tokens"])
                for r in self.store.usage(self.project)]

    async def tokens_left_after_five(self) -> int:
        """What the next request (of 5 tokens) is told is left: shows how the last settled."""
        admission = await self.gate.admit(self.project, 5)
        assert admission is not None
        return int(admission.headers["x-ratelimit-remaining-tokens"])


@pytest.fixture
def books(tmp_path: Path) -> Books:
    return Books(tmp_path)  # inside one quota minute (conftest.py)


async def test_a_reply_meters_its_usage_and_settles_to_it(books: Books) -> None:
    async with books.open() as account:
        await account.admit(lambda: RESERVED)
        response = account.reply(Reply({"ok": True}, Usage(6, 4)))
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-tokens"] == "1000"
    assert await books.ledger() == [(1, 6, 4)]
    # 1000 - 100 reserved + (100 - 10) refunded once, - 5 for the next request.
    assert await books.tokens_left_after_five() == 985


async def test_a_failed_request_settles_at_zero_and_meters_nothing(books: Books) -> None:
    with pytest.raises(APIError):
        async with books.open() as account:
            await account.admit(lambda: RESERVED)
            raise APIError(400, "refused by the model")
    assert await books.ledger() == []
    assert await books.tokens_left_after_five() == 995  # the whole reservation back


async def rest(*items: Chunk | FinalUsage) -> AsyncIterator[Chunk | FinalUsage]:
    for item in items:
        yield item


async def test_a_stream_settles_when_it_ends_not_when_the_handler_returns(
        books: Books) -> None:
    first = chunk({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 6,
                                                         "completion_tokens": 1}})
    async with books.open() as account:
        await account.admit(lambda: RESERVED)
        response = account.stream(first, rest(FinalUsage(Usage(6, 4)), DONE))
    assert await books.ledger() == []  # the handler has returned; the stream has not run
    frames = [frame async for frame in response.body_iterator]
    assert frames == [first.frame, DONE.frame]
    assert await books.ledger() == [(1, 6, 4)]
    assert await books.tokens_left_after_five() == 985


async def test_a_stream_the_client_left_settles_to_what_was_generated(books: Books) -> None:
    first = chunk({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 6,
                                                         "completion_tokens": 1}})
    async with books.open() as account:
        await account.admit(lambda: RESERVED)
        response = account.stream(first, rest(DONE))
    frames = response.body_iterator
    assert isinstance(frames, AsyncGenerator)
    assert await anext(frames) == first.frame
    await frames.aclose()
    assert await books.ledger() == [(1, 6, 1)]
    assert await books.tokens_left_after_five() == 1000 - RESERVED + (RESERVED - 7) - 5


async def test_work_past_the_deadline_is_a_503_request_timeout(books: Books) -> None:
    async with books.open(timeout_s=0.05) as account:
        assert await account.within_deadline(asyncio.sleep(0, "fast")) == "fast"
        with pytest.raises(APIError) as raised:
            await account.within_deadline(asyncio.Event().wait())  # never done
    assert (raised.value.status, raised.value.code) == (503, "request_timeout")
    assert raised.value.headers["Retry-After"]


async def test_a_client_gone_before_the_first_frame_is_metered_and_its_stream_closed(
        books: Books) -> None:
    first = chunk({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 6,
                                                         "completion_tokens": 1}})
    closed = asyncio.Event()

    async def engine_rest() -> AsyncIterator[Chunk | FinalUsage]:
        try:
            yield DONE
        finally:
            closed.set()

    rest_of_stream = engine_rest()
    await anext(rest_of_stream)  # started: closing it runs its finally
    async with books.open() as account:
        await account.admit(lambda: RESERVED)
        response = account.stream(first, rest_of_stream)

    async def gone() -> dict[str, str]:
        return {"type": "http.disconnect"}

    async def send(message: object) -> None:
        raise OSError("the client is gone")

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "headers": []}
    with pytest.raises(ClientDisconnect):  # starlette's word for a send that failed
        await response(scope, gone, send)
    assert closed.is_set()
    assert await books.ledger() == [(1, 6, 1)]


async def test_a_client_gone_mid_stream_is_metered_to_the_last_chunk_read(
        books: Books) -> None:
    def token(n: int) -> Chunk:
        return chunk({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 6,
                                                            "completion_tokens": n}})

    closed = asyncio.Event()

    async def engine_rest() -> AsyncIterator[Chunk | FinalUsage]:
        try:
            for n in range(2, 10):
                yield token(n)
        finally:
            closed.set()

    async with books.open() as account:
        await account.admit(lambda: RESERVED)
        response = account.stream(token(1), engine_rest())
    sent: list[object] = []

    async def send(message: dict[str, Any]) -> None:
        if message.get("body") and len(sent) == 3:
            raise OSError("the client is gone")
        sent.append(message)

    async def receive() -> dict[str, str]:
        await asyncio.Event().wait()  # no disconnect message: the failed send tells
        return {}

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "headers": []}
    with pytest.raises(ClientDisconnect):
        await response(scope, receive, send)
    assert closed.is_set()
    [(requests, prompt, completion)] = await books.ledger()
    assert (requests, prompt) == (1, 6) and completion >= 3  # the frames read, not the first


async def test_a_whole_reply_its_client_left_is_metered_with_what_was_generated(
        books: Books) -> None:
    with pytest.raises(asyncio.CancelledError):
        async with books.open() as account:
            await account.admit(lambda: RESERVED)
            account.progress(Usage(6, 2))
            account.progress(Usage(6, 3))
            raise asyncio.CancelledError  # as Serve's proxy cancels it when the client goes
    assert await books.ledger() == [(1, 6, 3)]
    assert await books.tokens_left_after_five() == 1000 - RESERVED + (RESERVED - 9) - 5


async def test_a_whole_reply_past_the_deadline_is_metered_with_what_was_generated(
        books: Books) -> None:
    async def generating() -> None:
        account.progress(Usage(6, 4))
        await asyncio.Event().wait()

    with pytest.raises(APIError):
        async with books.open(timeout_s=0.05) as account:
            await account.admit(lambda: RESERVED)
            await account.within_deadline(generating())
    assert await books.ledger() == [(1, 6, 4)]
