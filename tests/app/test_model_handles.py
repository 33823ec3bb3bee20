"""ServeModels over handle doubles: a request whose replica died before producing anything
is sent again; a model that may scale to zero is listed without being woken up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ray.exceptions import ActorDiedError

import messages
from app import model_handles
from app.model_handles import ServeModels
from messages import (
    APIError,
    Chunk,
    EmbeddingJob,
    ModelCard,
    ModelRoute,
    Progress,
    ReplicaUnavailable,
    Reply,
    Usage,
)

OK = Reply({"ok": True}, Usage(1))
DEAD_ENGINE = ReplicaUnavailable("m")
CARD = ModelCard(id="m", created=1, owned_by="o", task="chat", context_length=64)
SHOWN = messages.StreamUsage()  # usage on every chunk, as by default
A, B = Chunk("data: a\n\n", None), Chunk("data: b\n\n", None)


def job(text: str) -> EmbeddingJob:
    return EmbeddingJob(texts=[text], single=True)


class Done:
    """An awaitable that is already resolved or failed, like a finished DeploymentResponse."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def __await__(self) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        yield from ()
        return self.outcome


class MethodDoubleForTests:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.calls = 0
        self.sent: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> Any:
        self.calls += 1
        self.sent.append(args)
        return Done(self.outcomes.pop(0))


class ResponseStreamDoubleForTests:
    """A streaming handle call's response: its items, and ``cancel`` as Serve's has it."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.cancelled = False

    def __aiter__(self) -> ResponseStreamDoubleForTests:
        return self

    async def __anext__(self) -> Any:
        if not self.items:
            raise StopAsyncIteration
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, asyncio.Event):  # an engine still generating
            await item.wait()
            return await self.__anext__()
        return item

    def cancel(self) -> None:
        self.cancelled = True


class StreamDoubleForTests:
    def __init__(self, streams: list[list[Any]]) -> None:
        self.streams = streams
        self.calls = 0
        self.responses: list[ResponseStreamDoubleForTests] = []

    def remote(self, *args: Any) -> ResponseStreamDoubleForTests:
        self.calls += 1
        self.responses.append(ResponseStreamDoubleForTests(self.streams.pop(0)))
        return self.responses[-1]


class HandleDoubleForTests:
    def __init__(self, chat: list[Any] | None = None,
                 streams: list[list[Any]] | None = None) -> None:
        # A whole reply's call: each outcome is a stream of its own (progress, then reply).
        self.chat_with_progress = StreamDoubleForTests(
            [o if isinstance(o, list) else [o] for o in chat or []])
        self.embed_many = MethodDoubleForTests([])
        self.chat_stream = StreamDoubleForTests(streams or [])
        self.describe = MethodDoubleForTests([CARD] * 10)

    def options(self, **_: Any) -> HandleDoubleForTests:
        return self


def models(handle: HandleDoubleForTests, scales_to_zero: bool = False) -> ServeModels:
    route = ModelRoute(task="chat", handle=handle, wait_for_replica_s=None,
                       scales_to_zero=scales_to_zero,
                       card=CARD.model_copy(update={"context_length": 32}))
    return ServeModels({"m": route})


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_handles, "REPLICA_FAILURE_RETRY_DELAY_S", 0)


def ignore(usage: Usage) -> None:
    """A whole reply's progress, where a test does not look at it."""


async def test_a_request_on_a_dead_replica_is_sent_again() -> None:
    died = ActorDiedError()
    handle = HandleDoubleForTests(chat=[died, DEAD_ENGINE, OK])
    assert await models(handle).chat("m", {"messages": []}, ignore) == OK
    assert handle.chat_with_progress.calls == 3


async def test_retries_end_with_a_clean_503() -> None:
    handle = HandleDoubleForTests(chat=[ActorDiedError()] * 3)
    with pytest.raises(APIError) as failed:
        await models(handle).chat("m", {"messages": []}, ignore)
    assert failed.value.status == 503 and failed.value.code == "replica_failed"
    assert failed.value.headers["Retry-After"]
    assert handle.chat_with_progress.calls == 3


async def test_a_replys_own_error_is_raised_not_retried() -> None:
    bad = APIError(400, "too long", param="messages")
    handle = HandleDoubleForTests(chat=[bad, OK])
    with pytest.raises(APIError) as refused:
        await models(handle).chat("m", {"messages": []}, ignore)
    assert refused.value.status == 400 and refused.value.param == "messages"
    assert handle.chat_with_progress.calls == 1


async def test_a_stream_is_restarted_only_before_its_first_item() -> None:
    handle = HandleDoubleForTests(streams=[[ActorDiedError()], [DEAD_ENGINE], [A, B]])
    got = [i async for i in models(handle).chat_stream("m", {}, SHOWN)]
    assert got == [A, B] and handle.chat_stream.calls == 3

    broken = HandleDoubleForTests(streams=[[A, ActorDiedError()], [B]])
    with pytest.raises(ActorDiedError):
        _ = [i async for i in models(broken).chat_stream("m", {}, SHOWN)]
    assert broken.chat_stream.calls == 1  # output had gone out: no second try


async def test_a_model_that_scales_to_zero_is_listed_without_waking_it() -> None:
    handle = HandleDoubleForTests(chat=[OK])
    served = models(handle, scales_to_zero=True)
    [card] = await served.cards()
    assert card.context_length == 32 and handle.describe.calls == 0
    await served.chat("m", {"messages": []}, ignore)
    await served.cards()
    assert handle.describe.calls == 0  # the config's card stands


async def test_other_models_are_described_by_their_replica_once() -> None:
    handle = HandleDoubleForTests()
    served = models(handle)
    for _ in range(3):
        [card] = await served.cards()
    assert card.context_length == 64 and handle.describe.calls == 1


def embedding_models(handle: HandleDoubleForTests, **route: Any) -> ServeModels:
    return ServeModels({"e": ModelRoute(task="embedding", handle=handle, wait_for_replica_s=None,
                                        scales_to_zero=False, card=None, **route)})


async def test_coalesced_embeddings_go_through_embed_many_and_fail_one_by_one() -> None:
    handle = HandleDoubleForTests()
    handle.embed_many = MethodDoubleForTests(
        [[OK], [messages.UnexpectedFailure("ValueError('boom')")]])
    served = embedding_models(handle, ingress_calls_in_flight=1, max_queued_requests=-1)
    assert await served.embed("e", job("a")) == OK
    with pytest.raises(RuntimeError, match="boom"):
        await served.embed("e", job("b"))
    assert handle.embed_many.calls == 2


async def test_uncoalesced_embeddings_are_one_call_each_and_sent_again_on_a_dead_replica() -> None:
    handle = HandleDoubleForTests()
    handle.embed_many = MethodDoubleForTests([[OK], [OK], ActorDiedError(), [OK]])
    served = embedding_models(handle)  # the config leaves ingress_calls_in_flight unset
    replies = await asyncio.gather(*(served.embed("e", job(t)) for t in "abc"))
    assert replies == [OK, OK, OK]
    sent = [bodies for bodies, in handle.embed_many.sent]
    assert sorted(b[0].texts[0] for b in sent) == ["a", "b", "c", "c"]
    assert all(len(bodies) == 1 for bodies in sent)


async def test_a_whole_replys_progress_reaches_the_ingress_before_its_reply() -> None:
    handle = HandleDoubleForTests(chat=[[Progress(Usage(5, 1)), Progress(Usage(5, 2)), OK]])
    seen: list[Usage] = []
    assert await models(handle).chat("m", {}, seen.append) == OK
    assert seen == [Usage(5, 1), Usage(5, 2)]


async def test_a_replica_dying_mid_reply_is_retried_and_its_work_not_counted() -> None:
    handle = HandleDoubleForTests(chat=[[Progress(Usage(5, 9)), DEAD_ENGINE],
                                        [Progress(Usage(5, 1)), ActorDiedError()], [OK]])
    seen: list[Usage] = []
    assert await models(handle).chat("m", {}, seen.append) == OK
    assert seen == [Usage(5, 9), Usage(0), Usage(5, 1), Usage(0)]
    assert handle.chat_with_progress.calls == 3


async def test_a_whole_reply_ended_by_its_client_cancels_the_replicas_call() -> None:
    still_generating = asyncio.Event()
    handle = HandleDoubleForTests(chat=[[Progress(Usage(5, 1)), still_generating, OK]])
    seen: list[Usage] = []
    request = asyncio.ensure_future(models(handle).chat("m", {}, seen.append))
    while not seen:
        await asyncio.sleep(0)
    request.cancel()  # Serve's proxy cancels the handler when the client goes away
    with pytest.raises(asyncio.CancelledError):
        await request
    assert handle.chat_with_progress.responses[0].cancelled


async def test_a_reply_whose_replicas_all_die_mid_reply_is_tried_three_times_in_all() -> None:
    dying = [Progress(Usage(5, 2)), DEAD_ENGINE]
    handle = HandleDoubleForTests(chat=[list(dying), list(dying), list(dying)])
    with pytest.raises(APIError) as failed:
        await models(handle).chat("m", {}, ignore)
    assert failed.value.code == "replica_failed"
    assert handle.chat_with_progress.calls == 3


async def test_rerank_on_an_embedding_model_shares_its_coalesced_calls() -> None:
    handle = HandleDoubleForTests()
    handle.embed_many = MethodDoubleForTests([[OK]])
    served = embedding_models(handle, ingress_calls_in_flight=1, max_queued_requests=-1)
    rerank = messages.RerankJob("q", ["a", "b"])
    assert await served.rerank("e", rerank) == OK
    assert handle.embed_many.sent == [([rerank],)]


async def test_rerank_on_a_rerank_model_is_sent_again_on_a_dead_replica() -> None:
    handle = HandleDoubleForTests()
    handle.rerank = MethodDoubleForTests(  # type: ignore[attr-defined]
        [ActorDiedError(), OK, messages.UnexpectedFailure("ValueError('boom')")])
    served = ServeModels({"r": ModelRoute(task="rerank", handle=handle, wait_for_replica_s=None,
                                          scales_to_zero=False, card=None)})
    assert await served.rerank("r", messages.RerankJob("q", ["a"])) == OK
    assert handle.rerank.calls == 2  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="boom"):
        await served.rerank("r", messages.RerankJob("q", ["a"]))
