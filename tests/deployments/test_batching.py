"""The embedding replica's batcher (deployments/batching.py), with a test double standing in
for the model: inputs submitted together share a batch, inputs that arrive while a batch runs
share the next one, an idle model does not wait and a busy one does, and a failure or a
caller who gives up touches only its own."""

from __future__ import annotations

import asyncio

import pytest

from deployments.batching import ContinuousBatcher


class ModelDouble:
    """Records each batch; returns each input doubled. A batch waits while ``hold`` is clear."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail_next = False

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.hold.wait()
        if self.fail_next:
            self.fail_next = False
            raise ValueError("the model failed")
        return [2 * i for i in items]


async def busy_with(item: int) -> tuple[ModelDouble, ContinuousBatcher[int, int],
                                        asyncio.Task[int]]:
    """A batcher whose model is held running a batch of ``item``."""
    model = ModelDouble()
    model.hold.clear()
    batcher = ContinuousBatcher(model.run, max_batch_size=32)
    first = asyncio.create_task(batcher.submit(item))
    while not model.batches:
        await asyncio.sleep(0)
    return model, batcher, first


def test_inputs_submitted_together_share_one_batch() -> None:
    async def scenario() -> None:
        model = ModelDouble()
        batcher = ContinuousBatcher(model.run, max_batch_size=32)
        assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
        assert model.batches == [[0, 1, 2, 3, 4]]

    asyncio.run(scenario())


def test_inputs_arriving_during_a_batch_go_together_in_the_next() -> None:
    async def scenario() -> None:
        model, batcher, first = await busy_with(1)
        later = [asyncio.create_task(batcher.submit(i)) for i in (2, 3, 4)]
        # Proving no batch starts while the model is busy: an interval, not a wait.
        await asyncio.sleep(0.05)
        assert model.batches == [[1]]  # the model is busy: they wait, together
        model.hold.set()
        assert await first == 2
        assert [await t for t in later] == [4, 6, 8]
        assert model.batches == [[1], [2, 3, 4]]

    asyncio.run(scenario())


def test_an_idle_model_starts_at_once_whatever_the_wait() -> None:
    async def scenario() -> None:
        model = ModelDouble()
        batcher = ContinuousBatcher(model.run, max_batch_size=32, wait_s=60)
        assert await asyncio.wait_for(batcher.submit(1), 10) == 2

    asyncio.run(scenario())


def test_a_model_that_has_just_run_a_batch_waits_for_the_next_to_fill() -> None:
    async def scenario() -> None:
        model = ModelDouble()
        batcher = ContinuousBatcher(model.run, max_batch_size=32, wait_s=1.0)
        assert await batcher.submit(1) == 2  # idle: at once
        second = asyncio.create_task(batcher.submit(2))  # busy a moment ago: it waits
        # The scenario's timing: the third input arrives later, within the 1 s wait.
        await asyncio.sleep(0.1)
        third = asyncio.create_task(batcher.submit(3))
        assert (await second, await third) == (4, 6)
        assert model.batches == [[1], [2, 3]]

    asyncio.run(scenario())


def test_batches_never_exceed_the_maximum() -> None:
    async def scenario() -> None:
        model = ModelDouble()
        batcher = ContinuousBatcher(model.run, max_batch_size=2)
        assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
        assert model.batches == [[0, 1], [2, 3], [4]]

    asyncio.run(scenario())


def test_a_failed_batch_fails_its_own_inputs_only() -> None:
    async def scenario() -> None:
        model = ModelDouble()
        model.fail_next = True
        batcher = ContinuousBatcher(model.run, max_batch_size=32)
        failed = await asyncio.gather(*(batcher.submit(i) for i in range(3)),
                                      return_exceptions=True)
        assert all(isinstance(f, ValueError) for f in failed)
        assert await batcher.submit(7) == 14

    asyncio.run(scenario())


def test_a_caller_who_gives_up_is_left_out_of_the_next_batch() -> None:
    async def scenario() -> None:
        model, batcher, first = await busy_with(1)
        gone = asyncio.create_task(batcher.submit(2))
        stays = asyncio.create_task(batcher.submit(3))
        await asyncio.sleep(0)
        gone.cancel()
        model.hold.set()
        assert (await first, await stays) == (2, 6)
        assert model.batches == [[1], [3]]

    asyncio.run(scenario())


def test_a_model_that_loses_inputs_is_an_error_not_a_shifted_answer() -> None:
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    async def scenario() -> None:
        batcher = ContinuousBatcher(run, max_batch_size=32)
        with pytest.raises(RuntimeError, match="2 items gave 1 results"):
            await asyncio.gather(batcher.submit(1), batcher.submit(2))

    asyncio.run(scenario())


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        ContinuousBatcher(ModelDouble().run, max_batch_size=0)


async def test_requests_take_turns_so_a_large_one_does_not_hold_up_a_small_one() -> None:
    model = ModelDouble()
    batcher: ContinuousBatcher[int, int] = ContinuousBatcher(model.run, max_batch_size=4)
    large = asyncio.create_task(batcher.submit_all(list(range(100, 110))))
    small = asyncio.create_task(batcher.submit_all([7]))
    assert await small == [14]
    assert await large == [2 * i for i in range(100, 110)]
    assert model.batches[0] == [100, 7, 101, 102]  # one from each request in turn
    assert [len(b) for b in model.batches] == [4, 4, 3]


async def test_a_request_arriving_while_a_large_one_runs_goes_in_the_next_batch() -> None:
    model = ModelDouble()
    model.hold.clear()
    batcher: ContinuousBatcher[int, int] = ContinuousBatcher(model.run, max_batch_size=4)
    large = asyncio.create_task(batcher.submit_all(list(range(100, 112))))
    while not model.batches:
        await asyncio.sleep(0)
    small = asyncio.create_task(batcher.submit_all([7]))
    await asyncio.sleep(0)
    model.hold.set()
    assert await small == [14]
    assert 7 in model.batches[1]
    await large
