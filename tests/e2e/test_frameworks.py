"""LangChain's OpenAI integration against the running service, unchanged but for the base URL
and the key: usage in a stream counted as in the whole reply, structured output and forced tool
calls (which send parallel_tool_calls), embeddings."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

from tests.support.e2e import CHAT_MODEL, EMBED_MODEL

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

QUESTION = "What is the capital of France?"


@pytest.fixture
def chat(base_url: str, admin_key: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{base_url}/v1", api_key=admin_key,  # type: ignore[arg-type]
                      model=CHAT_MODEL, temperature=0, max_tokens=24, max_retries=0)


def test_a_streams_usage_metadata_equals_the_whole_replys(chat: ChatOpenAI) -> None:
    whole = chat.invoke(QUESTION)
    assert whole.usage_metadata is not None
    streamed: Any = None
    for chunk in chat.stream(QUESTION, stream_usage=True):  # OpenAI's include_usage
        streamed = chunk if streamed is None else streamed + chunk
    assert isinstance(streamed, AIMessageChunk)
    assert streamed.content == whole.content
    assert streamed.usage_metadata is not None
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert streamed.usage_metadata[key] == whole.usage_metadata[key], key  # type: ignore[literal-required]


class City(BaseModel):
    name: str


def test_structured_output_by_function_calling(chat: ChatOpenAI) -> None:
    structured = chat.bind(max_tokens=60).with_structured_output(  # type: ignore[attr-defined]
        City, method="function_calling")
    answer = structured.invoke(f"{QUESTION} Answer with the city's name.")
    assert isinstance(answer, City) and answer.name


def test_forced_tool_calls_through_bind_tools(chat: ChatOpenAI) -> None:
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "sunny"

    forced = chat.bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False)
    reply = forced.invoke("What's the weather like in Paris today?", max_tokens=60)
    [call] = reply.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str)


def test_embeddings_of_text(base_url: str, admin_key: str) -> None:
    embeddings = OpenAIEmbeddings(base_url=f"{base_url}/v1", api_key=admin_key,  # type: ignore[arg-type]
                                  model=EMBED_MODEL, check_embedding_ctx_length=False,
                                  max_retries=0)
    vectors = embeddings.embed_documents(["a cat", "a kitten"])
    assert [len(v) for v in vectors] == [384, 384]
    assert len(embeddings.embed_query("a dog")) == 384
