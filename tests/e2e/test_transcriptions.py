"""Speech to text on the live app, through the official client: recordings made with
espeak-ng (tests/e2e/audio) transcribed by the built-in Whisper tiny.en, in every response
format; every bad input the contract lists gets its 4xx; usage is metered in seconds."""

from __future__ import annotations

import io
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.support.e2e import (
    CHAT_MODEL,
    RECORDINGS,
    SPEECH_MODEL,
    inference_cli,
    make_client,
)

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

WEATHER = RECORDINGS / "weather.wav"  # "The weather today is sunny and warm."
NUMBERS = RECORDINGS / "numbers.wav"  # "Please call me back tomorrow morning."


def words_of(text: str) -> list[str]:
    return [w.strip(".,!?").lower() for w in text.split()]


@pytest.mark.parametrize("name", ["weather.wav", "weather.mp3", "weather.ogg", "weather.flac"])
def test_each_format_is_transcribed_to_the_spoken_words(client: openai.OpenAI,
                                                        name: str) -> None:
    with (RECORDINGS / name).open("rb") as audio:
        reply = client.audio.transcriptions.create(model=SPEECH_MODEL, file=audio)
    heard = words_of(reply.text)
    assert {"today", "sunny", "warm"} <= set(heard), reply.text
    assert reply.usage is not None and reply.usage.type == "duration"
    assert 2 < reply.usage.seconds < 4  # the recording is about 2.7 s long


def test_verbose_json_with_word_and_segment_timestamps(client: openai.OpenAI) -> None:
    reply = client.audio.transcriptions.create(
        model=SPEECH_MODEL, file=NUMBERS.open("rb"), response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en")
    assert reply.language == "en" and 2 < reply.duration < 4
    assert {"tomorrow", "morning"} <= set(words_of(reply.text))
    assert reply.segments and reply.segments[0].end <= reply.duration + 0.5
    words = reply.words or []
    assert [w.word.strip(".").lower() for w in words][-2:] == ["tomorrow", "morning"]
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in words)
    assert words[-1].end <= reply.duration + 0.5


def test_text_srt_and_vtt(client: openai.OpenAI) -> None:
    text = client.audio.transcriptions.create(model=SPEECH_MODEL, file=NUMBERS.open("rb"),
                                              response_format="text")
    assert isinstance(text, str) and "tomorrow" in text.lower()
    srt = client.audio.transcriptions.create(model=SPEECH_MODEL, file=NUMBERS.open("rb"),
                                             response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and "tomorrow" in srt.lower()
    vtt = client.audio.transcriptions.create(model=SPEECH_MODEL, file=NUMBERS.open("rb"),
                                             response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and "tomorrow" in vtt.lower()


def test_prompt_and_temperature_are_taken(client: openai.OpenAI) -> None:
    reply = client.audio.transcriptions.create(
        model=SPEECH_MODEL, file=WEATHER.open("rb"), prompt="A weather report.",
        temperature=0.2)
    assert "sunny" in words_of(reply.text)


def bad(client: openai.OpenAI, status: type[openai.APIStatusError], param: str | None,
        **fields: Any) -> openai.APIStatusError:
    fields.setdefault("model", SPEECH_MODEL)
    fields.setdefault("file", WEATHER.open("rb"))
    with pytest.raises(status) as caught:
        client.audio.transcriptions.create(**fields)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body.get("param") == param, caught.value.body
    return caught.value


@pytest.mark.parametrize(("fields", "param"), [
    ({"file": ("notes.wav", b"this is not audio at all" * 10)}, "file"),
    ({"file": ("empty.mp3", b"")}, "file"),
    ({"language": "fr"}, "language"),  # an English-only model
    ({"language": "english"}, "language"),
    ({"response_format": "diarized_json"}, "response_format"),
    ({"temperature": 2}, "temperature"),
    ({"timestamp_granularities": ["word"]}, "timestamp_granularities"),  # not verbose_json
    ({"prompt": "word " * 400}, "prompt"),  # beyond Whisper's prompt window
    ({"model": CHAT_MODEL}, "model"),
    ({"stream": True}, "stream"),
])
def test_bad_inputs_are_400s_naming_the_field(client: openai.OpenAI, fields: dict[str, Any],
                                              param: str) -> None:
    bad(client, openai.BadRequestError, param, **fields)


def test_an_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    err = bad(client, openai.NotFoundError, "model", model="openai/whisper-1")
    assert err.code == "model_not_found"


def test_a_missing_file_or_model_is_a_400_naming_it(http: httpx.Client) -> None:
    url = "/v1/audio/transcriptions"
    no_file = http.post(url, files={"model": (None, SPEECH_MODEL)})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    no_model = http.post(url, files={"file": ("a.wav", WEATHER.read_bytes())})
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"


def test_an_upload_of_several_megabytes_reaches_the_model_whole(client: openai.OpenAI) -> None:
    """The file crosses from the ingress to the speech model's replica as it was sent: an
    upload well over 4 MiB (the recording at 48 kHz, stereo, 32-bit, padded with silence to
    16 s) is transcribed like the recording."""
    with wave.open(str(WEATHER)) as recording:
        assert recording.getframerate() == 16000 and recording.getsampwidth() == 2
        speech = np.frombuffer(recording.readframes(recording.getnframes()), dtype="<i2")
    samples = np.zeros(48000 * 16, dtype="<i4")
    samples[:3 * len(speech)] = np.repeat(speech.astype("<i4") << 16, 3)
    upload = io.BytesIO()
    with wave.open(upload, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(4)
        out.setframerate(48000)
        out.writeframes(np.repeat(samples, 2).tobytes())
    assert upload.tell() > 5 * 1024 * 1024
    upload.seek(0)
    reply = client.audio.transcriptions.create(model=SPEECH_MODEL, file=("long.wav", upload))
    assert {"today", "sunny", "warm"} <= set(words_of(reply.text)), reply.text
    assert reply.usage is not None and 15 < reply.usage.seconds < 17


def test_over_25_mb_is_a_413(client: openai.OpenAI) -> None:
    big = io.BytesIO(WEATHER.read_bytes() + b"\0" * (25 * 1024 * 1024))
    err = bad(client, openai.APIStatusError, None, file=("big.wav", big))
    assert err.status_code == 413 and err.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_usage_shows_audio_seconds(base_url: str, admin_key: str) -> None:
    project = inference_cli("projects", "create", "listening")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisFullAccess",
                        "--project", project)
    client = make_client(base_url, key["secret_key"], project)
    told = 0.0
    for path in (WEATHER, NUMBERS):
        reply = client.audio.transcriptions.create(model=SPEECH_MODEL, file=Path(path))
        assert reply.usage is not None and reply.usage.type == "duration"
        told += reply.usage.seconds
    # The ingress flushes its meter about once a second: the two requests may reach the
    # ledger in two flushes, so wait for both rather than the first row.
    deadline = time.monotonic() + 15
    while True:
        rows = [r for r in inference_cli("usage", "--project", project)
                if r["model"] == SPEECH_MODEL]
        if sum(r["requests"] for r in rows) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(r["requests"], r["audio_seconds"]) for r in rows] == [(2, pytest.approx(told))]
    served = client.get("/usage", cast_to=object)["data"]  # type: ignore[index]
    assert [r["audio_seconds"] for r in served if r["model"] == SPEECH_MODEL] == [
        pytest.approx(told)]
