"""``POST /v1/audio/transcriptions`` at the ingress, over the models double: the multipart
form, every response format, the 400/413/415 answers, the request quota and the ledger's
audio seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.api import build_api
from app.services import Limits
from control.deployment import AsyncStore
from control.store import Store
from messages import APIError, TranscriptionJob
from tests.app.test_api import assert_error
from tests.support.models_double import CHAT, TRANSCRIBE, ModelsDoubleForTests

URL = "/v1/audio/transcriptions"
AUDIO = b"RIFF....WAVEfmt not really audio, the double does not decode"


def post(client: TestClient, fields: dict[str, Any] | list[tuple[str, str]] | None = None,
         files: Any = None) -> Any:
    data = {"model": TRANSCRIBE} if fields is None else fields
    files = {"file": ("hello.wav", AUDIO, "audio/wav")} if files is None else files
    return client.post(URL, data=data, files=files)


def test_json_is_the_default_with_usage_in_seconds(client: TestClient,
                                                   models: ModelsDoubleForTests) -> None:
    reply = post(client)
    assert reply.status_code == 200
    assert reply.json() == {"text": "Hello there. General Kenobi.",
                            "usage": {"type": "duration", "seconds": 3.25}}
    job = models.sent[-1]
    assert isinstance(job, TranscriptionJob)
    assert (job.audio, job.filename, job.language, job.word_timestamps) == (
        AUDIO, "hello.wav", None, False)


def test_the_form_options_reach_the_model(client: TestClient,
                                          models: ModelsDoubleForTests) -> None:
    fields = {"model": TRANSCRIBE, "language": "en", "prompt": "Star Wars.",
              "temperature": "0.3", "response_format": "verbose_json",
              "timestamp_granularities[]": ["word", "segment"]}
    body = post(client, fields).json()
    job = models.sent[-1]
    assert (job.language, job.prompt, job.temperature, job.word_timestamps) == (
        "en", "Star Wars.", 0.3, True)
    assert body["task"] == "transcribe" and body["language"] == "en"
    assert body["duration"] == 3.25 and len(body["segments"]) == 2
    assert body["words"][0] == {"word": "Hello", "start": 0.0, "end": 0.6}
    assert body["usage"] == {"type": "duration", "seconds": 3.25}


def test_verbose_json_has_segments_by_default_and_words_only_when_asked(
        client: TestClient) -> None:
    plain = post(client, {"model": TRANSCRIBE, "response_format": "verbose_json"}).json()
    assert len(plain["segments"]) == 2 and "words" not in plain
    words = post(client, {"model": TRANSCRIBE, "response_format": "verbose_json",
                          "timestamp_granularities[]": "word"}).json()
    assert "segments" not in words and [w["word"] for w in words["words"]] == ["Hello", "there."]


def test_text_srt_and_vtt(client: TestClient) -> None:
    text = post(client, {"model": TRANSCRIBE, "response_format": "text"})
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == "Hello there. General Kenobi.\n"
    srt = post(client, {"model": TRANSCRIBE, "response_format": "srt"}).text
    assert srt == ("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
                   "2\n00:00:01,500 --> 00:00:03,250\nGeneral Kenobi.\n\n")
    vtt = post(client, {"model": TRANSCRIBE, "response_format": "vtt"})
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
                        "00:00:01.500 --> 00:00:03.250\nGeneral Kenobi.\n\n")


@pytest.mark.parametrize(("fields", "files", "param"), [
    ({}, [("model", (None, TRANSCRIBE))], "file"),  # no file
    ({}, None, "model"),  # no model
    ({"model": TRANSCRIBE}, {"file": ("empty.wav", b"", "audio/wav")}, "file"),
    ({"model": TRANSCRIBE}, {"file": ("a.wav", AUDIO), "other": ("x", b"x")}, "other"),
    ({"model": TRANSCRIBE}, [("file", ("a.wav", AUDIO)), ("file", ("b.wav", AUDIO))], "file"),
    ({"model": TRANSCRIBE, "language": "english"}, None, "language"),
    ({"model": TRANSCRIBE, "language": "EN"}, None, "language"),
    ({"model": TRANSCRIBE, "response_format": "diarized_json"}, None, "response_format"),
    ({"model": TRANSCRIBE, "temperature": "1.5"}, None, "temperature"),
    ({"model": TRANSCRIBE, "temperature": "nan"}, None, "temperature"),
    ({"model": TRANSCRIBE, "temperature": "warm"}, None, "temperature"),
    ({"model": TRANSCRIBE, "timestamp_granularities[]": "word"}, None,
     "timestamp_granularities"),  # needs verbose_json
    ({"model": TRANSCRIBE, "response_format": "verbose_json",
      "timestamp_granularities[]": "sentence"}, None, "timestamp_granularities"),
    ({"model": TRANSCRIBE, "chunking_strategy": "auto"}, None, "chunking_strategy"),
    ({"model": TRANSCRIBE, "stream": "true"}, None, "stream"),
    ({"model": TRANSCRIBE, "prompt": "x" * 5000}, None, "prompt"),
    ({"model": [TRANSCRIBE, TRANSCRIBE]}, None, "model"),  # given twice
    ({"model": CHAT}, None, "model"),  # not a transcription model
])
def test_bad_forms_are_400s_naming_the_field(client: TestClient, models: ModelsDoubleForTests,
                                             fields: dict[str, Any], files: Any,
                                             param: str) -> None:
    assert_error(post(client, fields, files), 400, "invalid_request_error", param)
    assert models.sent == []


def test_a_text_field_in_place_of_the_file_is_a_400_naming_file(client: TestClient) -> None:
    reply = client.post(URL, files=[("model", (None, TRANSCRIBE)), ("file", (None, "text"))])
    assert_error(reply, 400, "invalid_request_error", "file")


def test_an_unknown_model_is_a_404(client: TestClient) -> None:
    err = assert_error(post(client, {"model": "no/such:model"}), 404, "not_found_error", "model")
    assert err["code"] == "model_not_found"


def test_json_instead_of_a_form_is_a_415(client: TestClient) -> None:
    assert_error(client.post(URL, json={"model": TRANSCRIBE, "file": "x"}), 415,
                 "invalid_request_error", None)


def test_the_models_refusal_reaches_the_client(client: TestClient,
                                               models: ModelsDoubleForTests) -> None:
    models.refusal = APIError(400, "cannot decode", param="file")
    assert_error(post(client), 400, "invalid_request_error", "file")


@pytest.fixture
def small(models: ModelsDoubleForTests, store: Store, key: str) -> TestClient:
    limits = Limits(max_body_bytes=65536, max_audio_bytes=4096)
    return TestClient(build_api(models, AsyncStore(store), limits=limits),
                      raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"})


def test_an_upload_over_the_limit_is_a_413_whatever_content_length_says(
        small: TestClient, models: ModelsDoubleForTests) -> None:
    big = {"file": ("big.wav", b"\0" * 5000, "audio/wav")}
    err = assert_error(post(small, files=big), 413, "invalid_request_error", None)
    assert "4096 bytes" in err["message"]
    # Sent in pieces without a Content-Length: counted as the bytes arrive.
    body = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
            + TRANSCRIBE.encode() + b"\r\n--b\r\nContent-Disposition: form-data; "
            b"name=\"file\"; filename=\"a.wav\"\r\n\r\n" + b"\0" * 5000 + b"\r\n--b--\r\n")

    def pieces() -> Any:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    reply = small.post(URL, content=pieces(),
                       headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(reply, 413, "invalid_request_error", None)
    assert models.sent == []
    assert post(small).status_code == 200  # a small one passes


def test_no_key_is_a_401_before_the_form_is_read(client: TestClient) -> None:
    reply = client.post(URL, data={"model": TRANSCRIBE}, files={},
                        headers={"Authorization": "Bearer sk-wrong"})
    assert_error(reply, 401, "authentication_error", None)


def test_usage_meters_audio_seconds(client: TestClient, store: Store) -> None:
    for _ in range(2):
        assert post(client).status_code == 200
    rows = client.get("/v1/usage").json()["data"]
    assert [(r["model"], r["requests"], r["audio_seconds"]) for r in rows] == [
        (TRANSCRIBE, 2, 6.5)]


def test_the_request_quota_applies(models: ModelsDoubleForTests, tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.default_project_id()
    key = store.create_key(["GenerativeApisModelAccess"], [project])["secret_key"]
    store.update_project(project, rpm=1)
    client = TestClient(build_api(models, AsyncStore(store)), raise_server_exceptions=False,
                        headers={"Authorization": f"Bearer {key}"})
    first = post(client)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    err = assert_error(post(client), 429, "rate_limit_error", None)
    assert err["code"] == "rate_limit_requests"
