"""The ingress's cache of control-plane reads (app/control_plane_cache.py): never older than
its ttl, and a value in use is fetched again in the background, off the requests' path."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from app.control_plane_cache import ControlPlaneCache

# Set around the test's reads: a fetch that sees it ran on a request's path.
ON_A_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("on_a_request",
                                                                    default=False)


class ControlPlaneDouble:
    """Answers with its current value per key, counting fetches on and off requests' paths."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.on_requests = 0
        self.in_background = 0
        self.failing = False

    async def fetch(self, key: str) -> object:
        if ON_A_REQUEST.get():
            self.on_requests += 1
        else:
            self.in_background += 1
        if self.failing:
            raise ConnectionError("the control plane is away")
        return self.value


async def read(cache: ControlPlaneCache[str, object], key: str = "k") -> object:
    token = ON_A_REQUEST.set(True)
    try:
        return await cache.get(key)
    finally:
        ON_A_REQUEST.reset(token)


async def test_a_client_reading_less_often_than_the_ttl_never_waits_on_the_control_plane(
        ) -> None:
    source = ControlPlaneDouble("record")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=2.0)
    assert await read(cache) == "record"
    for _ in range(2):  # a chat at one stream: a request every few seconds
        await asyncio.sleep(2.5)
        assert await read(cache) == "record"
    assert source.on_requests == 1  # the first read only
    assert source.in_background >= 2
    cache.close()


async def test_no_value_is_served_older_than_the_ttl() -> None:
    """A revoked key, a changed limit: every read at least a ttl after the change sees it,
    kept fresh in the background or not."""
    source = ControlPlaneDouble("before")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=0.5)
    await read(cache)
    await asyncio.sleep(0.3)
    source.value = "after"
    loop = asyncio.get_running_loop()
    changed = loop.time()
    seen = []
    while loop.time() - changed < 1.5:
        seen.append((loop.time() - changed, await read(cache)))
        await asyncio.sleep(0.05)
    assert all(value == "after" for since, value in seen if since >= 0.5), seen
    cache.close()


async def test_an_old_value_stops_at_the_ttl_when_it_cannot_be_fetched_again() -> None:
    """The control plane stops answering: what was fetched is served until a ttl after its
    fetch started, never longer; then the read fails as the control plane's call did."""
    source = ControlPlaneDouble("record")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=0.5)
    await read(cache)
    loop = asyncio.get_running_loop()
    source.failing = True
    away = loop.time()  # the last successful fetch started before this
    served, failed = [], []
    while loop.time() - away < 1.2:
        before = loop.time()
        try:
            await read(cache)
            served.append(before - away)
        except ConnectionError:
            failed.append(before - away)
        await asyncio.sleep(0.02)
    assert all(since < 0.5 for since in served), served
    assert failed and min(failed) <= 0.6, failed
    cache.close()


async def test_a_slower_fetch_that_lands_last_does_not_replace_a_newer_value() -> None:
    answers: dict[str, asyncio.Future[object]] = {}

    async def fetch(key: str) -> object:
        answers[key] = asyncio.get_running_loop().create_future()
        return await answers[key]

    clock = iter(range(100)).__next__
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(
        fetch, ttl=1000, clock=lambda: float(clock()))
    first = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)
    first_answer = answers["k"]
    second = asyncio.ensure_future(cache.get("k"))  # still a miss: the first has not landed
    await asyncio.sleep(0)
    answers["k"].set_result("newer")
    assert await second == "newer"
    first_answer.set_result("older")
    assert await first == "older"  # its own caller gets what it fetched
    assert await cache.get("k") == "newer"
    cache.close()


async def test_a_value_nobody_reads_is_left_to_expire() -> None:
    source = ControlPlaneDouble("record")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=0.2,
                                                              keep_warm_s=0.5)
    await read(cache)
    await asyncio.sleep(1.0)
    settled = source.in_background
    await asyncio.sleep(0.6)
    assert source.in_background == settled  # refreshing stopped once it went unread
    assert await read(cache) == "record"
    assert source.on_requests == 2  # expired: fetched on the request's path again
    cache.close()


async def test_an_unknown_key_is_not_kept_fresh() -> None:
    source = ControlPlaneDouble(None)
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(
        source.fetch, ttl=0.2, worth_keeping=lambda value: value is not None)
    assert await read(cache) is None
    await asyncio.sleep(0.6)
    assert source.in_background == 0


async def test_a_failed_refresh_leaves_the_value_to_expire_and_the_read_fails() -> None:
    source = ControlPlaneDouble("record")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=0.3)
    await read(cache)
    source.failing = True
    await asyncio.sleep(0.5)
    with pytest.raises(ConnectionError):
        await read(cache)


async def test_latest_is_the_last_value_fetched() -> None:
    source = ControlPlaneDouble((3, 40))
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=10)
    assert cache.latest("p") is None
    await read(cache, "p")
    assert cache.latest("p") == (3, 40)


def test_refreshing_moves_to_the_event_loop_of_the_latest_read() -> None:
    """An ingress's app can be served from more than one event loop over its life (a test's
    client opens one per request): a loop that closed with the refresh armed stops nothing."""
    source = ControlPlaneDouble("record")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=0.2)
    asyncio.run(read(cache))  # this loop closes with the refresh armed

    async def later() -> None:
        await read(cache)
        await asyncio.sleep(0.6)
        cache.close()

    asyncio.run(later())
    assert source.in_background >= 1


async def test_a_closed_cache_stops_refreshing_and_still_answers() -> None:
    source = ControlPlaneDouble("record")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=0.2)
    await read(cache)
    cache.close()
    await asyncio.sleep(0.5)
    assert source.in_background == 0
    assert await read(cache) == "record"
    cache.close()


async def test_no_ttl_caches_nothing() -> None:
    source = ControlPlaneDouble("record")
    cache: ControlPlaneCache[str, object] = ControlPlaneCache(source.fetch, ttl=0)
    for _ in range(3):
        assert await read(cache) == "record"
    await asyncio.sleep(0.2)
    assert (source.on_requests, source.in_background) == (3, 0)
