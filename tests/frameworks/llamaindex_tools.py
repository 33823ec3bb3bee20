"""LlamaIndex's OpenAI-compatible LLM (``OpenAILike``) on the running service, unchanged but
for the base URL and the key: chat, streaming, tool calls, calling the tool it chose, and
structured output (LlamaIndex sends ``parallel_tool_calls`` and ``strict`` with every tool).

Run in the LlamaIndex environment (.venvs/llamaindex) by tests/e2e/test_framework_suites.py.
"""

from __future__ import annotations

import json
import os

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel

WEATHER_QUESTION = "What's the weather like in Paris today?"


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


class City(BaseModel):
    """A city."""

    name: str


@pytest.fixture
def llm() -> OpenAILike:
    return OpenAILike(
        model=os.environ["INFERENCE_CHAT_MODEL"], api_base=os.environ["INFERENCE_BASE_URL"],
        api_key=os.environ["INFERENCE_API_KEY"], is_chat_model=True,
        is_function_calling_model=True, context_window=2048, max_tokens=256, temperature=0,
        max_retries=0, timeout=300)


def test_chat_and_its_stream_agree(llm: OpenAILike) -> None:
    messages = [ChatMessage(role="user", content="What is the capital of France?")]
    whole = llm.chat(messages)
    assert "Paris" in (whole.message.content or "")
    streamed = "".join(chunk.delta or "" for chunk in llm.stream_chat(messages))
    assert streamed == whole.message.content


def test_chat_with_tools_calls_the_tool(llm: OpenAILike) -> None:
    tool = FunctionTool.from_defaults(fn=get_weather)
    response = llm.chat_with_tools([tool], user_msg=WEATHER_QUESTION, tool_required=True)
    [call] = llm.get_tool_calls_from_response(response)
    assert call.tool_name == "get_weather"
    assert isinstance(call.tool_kwargs.get("city"), str) and call.tool_kwargs["city"]


async def test_async_streamed_tool_call_is_the_same_call(llm: OpenAILike) -> None:
    tool = FunctionTool.from_defaults(fn=get_weather)
    last = None
    async for last in await llm.astream_chat_with_tools(
            [tool], user_msg=WEATHER_QUESTION, tool_required=True):
        pass
    assert last is not None
    [call] = llm.get_tool_calls_from_response(last)
    assert call.tool_name == "get_weather" and call.tool_kwargs.get("city")


def test_predict_and_call_runs_the_tool(llm: OpenAILike) -> None:
    tool = FunctionTool.from_defaults(fn=get_weather)
    answer = llm.predict_and_call([tool], user_msg=WEATHER_QUESTION, tool_required=True)
    [source] = answer.sources
    assert source.tool_name == "get_weather" and not source.is_error
    assert str(source.content).startswith("sunny in ")


def test_structured_predict(llm: OpenAILike) -> None:
    city = llm.structured_predict(
        City, PromptTemplate("What is the capital of {country}? Answer with the city."),
        country="France")
    assert isinstance(city, City) and city.name
    assert json.loads(city.model_dump_json())["name"] == city.name
