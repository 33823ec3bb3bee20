"""The models routes, through the official client."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, SPEECH_MODEL

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models


def test_list_says_what_each_model_is(client: openai.OpenAI, http: httpx.Client) -> None:
    ids = {m.id for m in client.models.list()}
    assert ids == {CHAT_MODEL, EMBED_MODEL, SPEECH_MODEL}
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert cards[CHAT_MODEL]["task"] == "chat" and cards[CHAT_MODEL]["context_length"] == 2048
    assert cards[EMBED_MODEL]["task"] == "embedding" and cards[EMBED_MODEL]["dimensions"] == 384
    assert cards[SPEECH_MODEL]["task"] == "transcription"


@pytest.mark.parametrize("model", [CHAT_MODEL, EMBED_MODEL, SPEECH_MODEL])
def test_retrieve_by_id_with_slash_and_colon(client: openai.OpenAI, model: str) -> None:
    assert client.models.retrieve(model).id == model


def test_retrieve_unknown_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("org/unknown:fp8")


def test_health_is_open_and_echoes_the_request_id(base_url: str) -> None:
    resp = httpx.get(f"{base_url}/health", headers={"x-request-id": "trace-1"})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "trace-1"
