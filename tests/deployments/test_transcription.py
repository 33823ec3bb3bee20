"""The transcription replica in-process on the built-in Whisper tiny.en (small enough for the
fast tier: it loads in about a second): decoding with PyAV, the refusals it owns, the
transcript it sends to the ingress."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from deployments.transcription import TranscriptionDeployment, transcribe_threads
from launch.cpu_layout import MODEL_CPUS_ENV
from messages import APIError, Reply, TranscriptionJob
from tests.support.e2e import RECORDINGS

MODEL = "openai/whisper-tiny.en:int8"


@pytest.fixture(scope="module")
def replica() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(MODEL_CPUS_ENV, raising=False)  # no CPU layout: leave this process be
        return TranscriptionDeployment.func_or_class(  # type: ignore[attr-defined]
            {"id": MODEL, "task": "transcription", "source": "builtin:whisper-tiny-en",
             "transcription": {"beam_size": 1, "cpu_threads": 1}})


def job(name: str = "numbers.wav", **options: Any) -> TranscriptionJob:
    return TranscriptionJob((RECORDINGS / name).read_bytes(), name, **options)


def test_threads_follow_the_cpu_layout_unless_configured() -> None:
    assert transcribe_threads(None, None) == 0  # CTranslate2's own choice
    assert transcribe_threads(None, {0, 1, 2}) == 3
    assert transcribe_threads(2, {0, 1, 2}) == 2


async def test_describe_says_it_transcribes(replica: Any) -> None:
    card = await replica.describe()
    assert (card.id, card.task, card.context_length) == (MODEL, "transcription", 448)


async def test_a_recording_becomes_its_words_with_timestamps(replica: Any) -> None:
    reply = await replica.transcribe(job(word_timestamps=True))
    assert isinstance(reply, Reply)
    assert "tomorrow morning" in reply.body["text"].lower()
    assert reply.body["language"] == "en" and reply.usage.audio_seconds == reply.body["duration"]
    assert 2 < reply.usage.audio_seconds < 4
    assert [w["word"].strip(".").lower() for w in reply.body["words"]][-1] == "morning"
    assert reply.body["segments"][0]["start"] == 0.0


async def test_without_word_timestamps_there_are_no_words(replica: Any) -> None:
    reply = await replica.transcribe(job("weather.flac"))
    assert isinstance(reply, Reply) and "words" not in reply.body
    assert "sunny" in reply.body["text"]


@pytest.mark.parametrize(("audio", "param"), [
    (b"plain text, not audio" * 20, "file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "file"),  # a WAV header cut short
])
async def test_bytes_that_are_not_audio_are_a_400_naming_file(replica: Any, audio: bytes,
                                                              param: str) -> None:
    refusal = await replica.transcribe(TranscriptionJob(audio, "x.wav"))
    assert isinstance(refusal, APIError)
    assert (refusal.status, refusal.param) == (400, param) and "x.wav" in refusal.message


async def test_a_language_the_model_cannot_transcribe_is_a_400(replica: Any) -> None:
    refusal = await replica.transcribe(job(language="de"))
    assert isinstance(refusal, APIError) and refusal.param == "language"
    assert "English only" in refusal.message


async def test_a_prompt_beyond_whispers_window_is_a_400(replica: Any) -> None:
    refusal = await replica.transcribe(job(prompt="weather " * 300))
    assert isinstance(refusal, APIError) and refusal.param == "prompt"
    assert "at most 223" in refusal.message
    assert isinstance(await replica.transcribe(job(prompt="A phone message.")), Reply)


def test_a_cancelled_request_stops_between_windows(replica: Any) -> None:
    """Serve cancels the call when the deadline passes or the client leaves; the thread,
    which cannot be interrupted, sees the flag before its next 30-second window."""
    cancelled = threading.Event()
    cancelled.set()
    assert replica._transcribe(job("paragraph.ogg"), cancelled) is None
    assert isinstance(replica._transcribe(job(), threading.Event()), Reply)
