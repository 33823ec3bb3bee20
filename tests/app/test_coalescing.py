"""CallCoalescer over a deployment double: requests go at once while a call is free, wait
and leave together when none is, are refused past the waiting bound, and fail or give up
one by one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.coalescing import CallCoalescer
from messages import EmbeddingJob


def job(input: str | list[str]) -> EmbeddingJob:
    """An embedding request's job for ``input`` (one text, or a list of them)."""
    return EmbeddingJob(texts=[input] if isinstance(input, str) else input,
                        single=isinstance(input, str))


def sent(job: EmbeddingJob) -> str | list[str]:
    """The ``input`` the job was made from."""
    return job.texts[0] if job.single else job.texts


class DeploymentDoubleForTests:
    """Each call blocks until released; replies echo each body's ``input``."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []
        self.release: list[asyncio.Event] = []
        self.fail_next = False

    async def send(self, bodies: list[EmbeddingJob]) -> list[Any]:
        self.calls.append([sent(b) for b in bodies])
        gate = asyncio.Event()
        self.release.append(gate)
        await gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("replica failed")
        return [{"status": 200, "echo": sent(b)} for b in bodies]


class Refused(Exception):
    pass


def coalescer(double: DeploymentDoubleForTests, in_flight: int = 1, max_waiting: int = 100,
              max_inputs: int = 2048) -> CallCoalescer:
    return CallCoalescer(double.send, in_flight, max_waiting, max_inputs, refuse=Refused)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_go_at_once_while_a_call_is_free() -> None:
    double = DeploymentDoubleForTests()
    c = coalescer(double, in_flight=2)
    first = asyncio.create_task(c.submit(job("a")))
    second = asyncio.create_task(c.submit(job("b")))
    await settle()
    assert double.calls == [["a"], ["b"]]
    for gate in double.release:
        gate.set()
    assert (await first)["echo"] == "a" and (await second)["echo"] == "b"


async def test_waiting_requests_leave_together_when_a_call_returns() -> None:
    double = DeploymentDoubleForTests()
    c = coalescer(double)
    tasks = [asyncio.create_task(c.submit(job(t))) for t in "abcd"]
    await settle()
    assert double.calls == [["a"]]
    double.release[0].set()
    await settle()
    assert double.calls == [["a"], ["b", "c", "d"]]
    double.release[1].set()
    assert [(await t)["echo"] for t in tasks] == ["a", "b", "c", "d"]


async def test_past_the_waiting_bound_a_request_is_refused_at_once() -> None:
    double = DeploymentDoubleForTests()
    c = coalescer(double, max_waiting=1)
    held = [asyncio.create_task(c.submit(job(t))) for t in "ab"]
    await settle()
    with pytest.raises(Refused):
        await c.submit(job("c"))
    double.release[0].set()
    await settle()
    double.release[1].set()
    assert [(await t)["echo"] for t in held] == ["a", "b"]


async def test_a_caller_that_gives_up_while_waiting_is_left_out() -> None:
    double = DeploymentDoubleForTests()
    c = coalescer(double)
    first = asyncio.create_task(c.submit(job("a")))
    gone = asyncio.create_task(c.submit(job("b")))
    kept = asyncio.create_task(c.submit(job("c")))
    await settle()
    gone.cancel()
    double.release[0].set()
    await settle()
    assert double.calls[1] == ["c"]
    double.release[1].set()
    assert (await first)["echo"] == "a" and (await kept)["echo"] == "c"


async def test_a_caller_that_gives_up_frees_its_place_in_the_wait() -> None:
    double = DeploymentDoubleForTests()
    c = coalescer(double, max_waiting=1)
    first = asyncio.create_task(c.submit(job("a")))
    gone = asyncio.create_task(c.submit(job("b")))
    await settle()
    gone.cancel()
    await settle()
    kept = asyncio.create_task(c.submit(job("c")))  # not refused: b's place is free
    await settle()
    double.release[0].set()
    await settle()
    assert double.calls == [["a"], ["c"]]
    double.release[1].set()
    assert (await first)["echo"] == "a" and (await kept)["echo"] == "c"


async def test_a_failed_call_fails_its_requests_and_the_next_call_still_runs() -> None:
    double = DeploymentDoubleForTests()
    c = coalescer(double)
    double.fail_next = True
    failing = asyncio.create_task(c.submit(job("a")))
    later = asyncio.create_task(c.submit(job("b")))
    await settle()
    double.release[0].set()
    with pytest.raises(RuntimeError):
        await failing
    await settle()
    double.release[1].set()
    assert (await later)["echo"] == "b"


async def test_a_call_carries_at_most_max_inputs_but_always_one_request() -> None:
    double = DeploymentDoubleForTests()
    c = coalescer(double, max_inputs=3)
    tasks = [asyncio.create_task(c.submit(job(x)))
             for x in ("a", ["b", "c"], ["d", "e"], ["f", "g", "h", "i"])]
    await settle()
    for i in range(4):
        double.release[i].set()
        await settle()
    assert double.calls == [["a"], [["b", "c"]], [["d", "e"]], [["f", "g", "h", "i"]]]
    assert [(await t)["echo"] for t in tasks][3] == ["f", "g", "h", "i"]


async def test_a_call_that_answers_for_fewer_requests_fails_them_all() -> None:
    """Never a reply handed to the wrong caller, and never a caller left waiting."""
    async def short(bodies: list[EmbeddingJob]) -> list[Any]:
        return [{"status": 200, "echo": sent(b)} for b in bodies][:-1]

    c = CallCoalescer(short, 1, 100, 2048, refuse=Refused)
    first = asyncio.create_task(c.submit(job("a")))
    waiting = [asyncio.create_task(c.submit(job(t))) for t in "bc"]
    done = await asyncio.wait_for(asyncio.gather(first, *waiting, return_exceptions=True), 10)
    assert all(isinstance(d, RuntimeError) for d in done), done
