"""The OpenAI Agents SDK on the running service, unchanged but for the client's base URL and
key: its Responses model (``OpenAIResponsesModel``) runs an agent with a function tool, whole
and streamed, and continues a conversation by ``previous_response_id``.

Run in the Agents SDK's environment (.venvs/agents) by tests/e2e/test_framework_suites.py.
"""

from __future__ import annotations

import os

from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

set_tracing_disabled(True)  # the SDK would send traces to OpenAI's own servers

CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    CALLS.append(city)
    return f"It is sunny and 24 degrees in {city}."


def model() -> OpenAIResponsesModel:
    client = AsyncOpenAI(base_url=os.environ["INFERENCE_BASE_URL"],
                         api_key=os.environ["INFERENCE_API_KEY"], max_retries=0, timeout=120)
    return OpenAIResponsesModel(model=os.environ["INFERENCE_CHAT_MODEL"], openai_client=client)


def weather_agent() -> Agent:
    # tool_choice "required" makes the small built-in model call the tool (constrained
    # decoding); the SDK resets it to "auto" after the call (reset_tool_choice), and the
    # model then answers from the tool's output.
    return Agent(name="weather", instructions="You answer questions about the weather.",
                 model=model(), tools=[get_weather],
                 model_settings=ModelSettings(tool_choice="required", temperature=0,
                                              max_tokens=60))


async def test_an_agent_calls_its_function_tool_and_answers() -> None:
    CALLS.clear()
    result = await Runner.run(weather_agent(), "What is the weather in Paris?", max_turns=4)
    assert CALLS, "the agent did not call its tool"
    assert isinstance(result.final_output, str) and result.final_output
    assert result.last_response_id is not None and result.last_response_id.startswith("resp_")


async def test_a_streamed_agent_run_calls_its_tool() -> None:
    CALLS.clear()
    run = Runner.run_streamed(weather_agent(), "What is the weather in Rome?", max_turns=4)
    kinds = [event.type async for event in run.stream_events()]
    assert CALLS and "raw_response_event" in kinds
    assert isinstance(run.final_output, str) and run.final_output


async def test_a_conversation_continues_by_previous_response_id() -> None:
    agent = Agent(name="friend", instructions="You are a friendly assistant.", model=model(),
                  model_settings=ModelSettings(temperature=0, max_tokens=400))
    first = await Runner.run(agent, "My name is Ada. Say hello to me.")
    assert first.last_response_id is not None
    later = await Runner.run(agent, "What is my name?",
                             previous_response_id=first.last_response_id)
    # The same conversation replayed whole by the SDK (its own input list) gets the same
    # answer at temperature 0: the service rebuilt the conversation from its store.
    replayed = await Runner.run(agent, first.to_input_list() + [
        {"role": "user", "content": "What is my name?"}])
    assert later.final_output == replayed.final_output
