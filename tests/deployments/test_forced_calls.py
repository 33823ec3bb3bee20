"""deployments/forced_calls.py: how a forced tool call is asked of the engine and framed for
the client, without an engine."""

from __future__ import annotations

from deployments.forced_calls import NAME_OPENING, choosing_request, chosen_tool, plan

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
         for n in ("a", "bb")]
MESSAGES = [{"role": "user", "content": "hi"}]


def characters(text: str) -> int:
    """A stand-in tokenizer for these tests: a token per character."""
    return len(text)


def test_a_named_call_is_decoded_after_an_opening_the_service_writes_and_does_not_bill() -> None:
    named, framing = plan({"messages": MESSAGES, "tools": TOOLS, "tool_choice": {
        "type": "function", "function": {"name": "bb"}}}, characters)
    opening = '[{"name":"bb","parameters":'
    assert named["messages"] == [*MESSAGES, {"role": "assistant", "content": opening}]
    assert named["continue_final_message"] is True and named["add_generation_prompt"] is False
    assert named["tool_choice"] == {"type": "function", "function": {"name": "bb"}}
    assert named["tools"] == TOOLS  # all of them in the prompt, as the client sent them
    assert named["parallel_tool_calls"] is False
    assert framing.hidden_prompt_tokens == len(opening)
    assert framing.finish_reason("stop") == "stop" and framing.finish_reason("length") == "length"
    assert choosing_request({"messages": MESSAGES, "tools": TOOLS, "tool_choice": {
        "type": "function", "function": {"name": "bb"}}}) is None


def test_required_with_one_tool_is_that_tools_named_call_finishing_as_tool_calls() -> None:
    body = {"messages": MESSAGES, "tools": [TOOLS[0]], "tool_choice": "required"}
    assert choosing_request(body) is None
    named, framing = plan(body, characters)
    assert named["tool_choice"] == {"type": "function", "function": {"name": "a"}}
    assert named["messages"][-1]["content"] == '[{"name":"a","parameters":'
    assert framing.finish_reason("stop") == "tool_calls"


def test_required_with_several_tools_lets_the_model_choose_then_bills_the_name() -> None:
    body = {"model": "m", "messages": MESSAGES, "tools": TOOLS, "tool_choice": "required",
            "temperature": 0.5, "max_tokens": 60, "stream": True, "response_format": None}
    choosing = choosing_request(body)
    assert choosing is not None
    assert choosing["messages"][-1] == {"role": "assistant", "content": NAME_OPENING}
    assert choosing["structured_outputs"] == {"choice": ["a", "bb"]}
    assert choosing["stream"] is False and choosing["temperature"] == 0.5
    assert "response_format" not in choosing and choosing["max_tokens"] == 3
    answer = {"choices": [{"message": {"content": "bb"}}], "usage": {"completion_tokens": 2}}
    assert chosen_tool(answer, body) == ("bb", 2)
    named, framing = plan(body, characters, ("bb", 2))
    assert named["tool_choice"]["function"]["name"] == "bb" and named["stream"] is True
    assert framing.earlier_completion_tokens == 2
    assert framing.finish_reason("stop") == "tool_calls"


def test_a_name_outside_the_tools_is_no_choice() -> None:
    answer = {"choices": [{"message": {"content": "c"}}], "usage": {"completion_tokens": 2}}
    assert chosen_tool(answer, {"tools": TOOLS}) is None


def test_several_choices_choosing_their_own_tools_decode_one_item_arrays() -> None:
    body = {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "required", "n": 2}
    assert choosing_request(body) is None
    required, framing = plan(body, characters)
    assert required["parallel_tool_calls"] is False and len(required["tools"]) == 2
    assert "continue_final_message" not in required and framing.hidden_prompt_tokens == 0
    auto = {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "auto"}
    assert plan(auto, characters) == (auto, framing)
