"""Chat completions on the built-in model, through the official client."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from transformers import AutoTokenizer

from deployments.builtin_models import prepare
from tests.support.e2e import CHAT_MODEL, EMBED_MODEL

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "What's the weather like in Paris today?"}]


def test_answers_paris(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, temperature=0,
                                           max_tokens=30)
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.model == CHAT_MODEL
    assert reply.usage is not None and reply.usage.prompt_tokens > 0


def test_max_tokens_stops_with_length_at_exactly_that_many(client: openai.OpenAI) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        reply = client.chat.completions.create(model=CHAT_MODEL, messages=STORY, **{field: 7})
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage is not None and reply.usage.completion_tokens == 7


def test_stop_sequence_ends_the_reply_before_it(client: openai.OpenAI) -> None:
    free = client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, temperature=0,
                                          max_tokens=30).choices[0].message.content or ""
    word = free.split()[3]
    stopped = client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, temperature=0,
                                             max_tokens=30, stop=[word])
    content = stopped.choices[0].message.content or ""
    assert stopped.choices[0].finish_reason == "stop"
    assert word not in content and free.startswith(content)


def test_seed_reproduces_a_sampled_reply(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return client.chat.completions.create(
            model=CHAT_MODEL, messages=STORY, temperature=1.0, seed=seed, max_tokens=20
        ).choices[0].message.content or ""

    assert sample(1234) == sample(1234)


def test_json_schema_output_parses_and_matches(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=CAPITAL, max_tokens=60,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "answer", "schema": schema}},
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    # json_object constrains the shape, not the length: a reply cut by max_tokens is cut JSON
    # (as on OpenAI), so this asks at temperature 0 for one that ends by itself.
    reply = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=100, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["required", "named"],
)
def test_tool_calls_are_valid_within_60_tokens(client: openai.OpenAI, tool_choice: Any) -> None:
    for _ in range(5):  # sampled at the default temperature: every try must be valid
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL],
            tool_choice=tool_choice, max_tokens=60,
        )
        calls = reply.choices[0].message.tool_calls
        assert calls, reply
        for call in calls:
            assert call.type == "function" and call.function.name == "get_weather"
            args = json.loads(call.function.arguments)
            jsonschema.validate(args, WEATHER_TOOL["function"]["parameters"])


NAMED = {"type": "function", "function": {"name": "get_weather"}}


def test_a_forced_call_bills_its_arguments_not_the_calls_framing(client: openai.OpenAI) -> None:
    tokenizer = AutoTokenizer.from_pretrained(prepare("smollm2-135m-instruct"))
    ask = {"model": CHAT_MODEL, "messages": WEATHER_QUESTION, "tools": [WEATHER_TOOL],
           "temperature": 0}
    reply = client.chat.completions.create(**ask, tool_choice=NAMED, max_tokens=60)
    [choice] = reply.choices
    assert choice.finish_reason == "stop" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    arguments = tokenizer.encode(call.function.arguments, add_special_tokens=False)
    assert reply.usage is not None
    # The arguments and the model's end of turn; none of '[{"name":"get_weather",...'.
    assert reply.usage.completion_tokens <= len(arguments) + 1
    plain = client.chat.completions.create(**ask, tool_choice="none", max_tokens=1)
    assert plain.usage is not None and reply.usage.prompt_tokens == plain.usage.prompt_tokens
    required = client.chat.completions.create(**ask, tool_choice="required", max_tokens=60)
    assert required.choices[0].finish_reason == "tool_calls"
    assert required.usage == reply.usage


TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}


def test_required_over_several_tools_bills_the_chosen_name_and_its_arguments(
        client: openai.OpenAI) -> None:
    tokenizer = AutoTokenizer.from_pretrained(prepare("smollm2-135m-instruct"))
    ask = {"model": CHAT_MODEL, "messages": WEATHER_QUESTION,
           "tools": [WEATHER_TOOL, TIME_TOOL], "temperature": 0}
    reply = client.chat.completions.create(**ask, tool_choice="required", max_tokens=60)
    [choice] = reply.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name in ("get_weather", "get_time")
    json.loads(call.function.arguments)
    name = tokenizer.encode(call.function.name, add_special_tokens=False)
    arguments = tokenizer.encode(call.function.arguments, add_special_tokens=False)
    assert reply.usage is not None
    # The name (and its end), the arguments (and the end of turn): no JSON framing.
    assert reply.usage.completion_tokens <= len(name) + len(arguments) + 2
    plain = client.chat.completions.create(**ask, tool_choice="none", max_tokens=1)
    assert plain.usage is not None and reply.usage.prompt_tokens == plain.usage.prompt_tokens


def test_a_forced_call_cut_by_max_tokens_comes_back_partial(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice=NAMED,
        temperature=0, max_tokens=3)
    [choice] = reply.choices
    assert choice.finish_reason == "length"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and call.function.arguments.startswith("{")
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_a_streamed_forced_call_is_the_same_call(client: openai.OpenAI) -> None:
    ask = {"model": CHAT_MODEL, "messages": WEATHER_QUESTION, "tools": [WEATHER_TOOL],
           "tool_choice": NAMED, "temperature": 0, "max_tokens": 60}
    whole = client.chat.completions.create(**ask)
    arguments, finish, usage = "", None, None
    for chunk in client.chat.completions.create(**ask, stream=True,
                                                stream_options={"include_usage": True}):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                if delta.function is not None:
                    arguments += delta.function.arguments or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    [call] = whole.choices[0].message.tool_calls or []
    assert arguments == call.function.arguments
    assert finish == whole.choices[0].finish_reason and usage == whole.usage


def test_what_the_sdk_sends_for_none_and_what_frameworks_add_is_taken(
        client: openai.OpenAI) -> None:
    """The SDK sends null for a parameter given as None; LlamaIndex adds parallel_tool_calls
    to every tool request; store false is OpenAI's default spelled out."""
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL],
        tool_choice="required", parallel_tool_calls=False, store=False, max_tokens=60,
        temperature=None, top_p=None, n=None, presence_penalty=None, frequency_penalty=None,
        logprobs=None, stop=None, seed=None, user=None)
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, store=True)
    assert info.value.param == "store"


def test_logprobs_and_top_logprobs(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, max_tokens=5,
                                           logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 5
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)


def test_n_gives_n_choices(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=STORY, max_tokens=5, n=3)
    assert sorted(c.index for c in reply.choices) == [0, 1, 2]


def test_logit_bias_forces_a_token(client: openai.OpenAI) -> None:
    tokenizer = AutoTokenizer.from_pretrained(prepare("smollm2-135m-instruct"))
    token = tokenizer.encode(" banana", add_special_tokens=False)[0]
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, max_tokens=4,
                                           temperature=0, logit_bias={str(token): 100})
    assert reply.choices[0].message.content == tokenizer.decode([token] * 4)


def test_penalties_and_user_are_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=STORY, max_tokens=5, frequency_penalty=1.5,
        presence_penalty=1.0, user="user-42", top_p=0.9,
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_multi_turn_with_tool_result_and_text_parts(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=10,
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            *WEATHER_QUESTION,
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        ],
    )
    assert reply.choices[0].message.content


def test_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such/model:x", messages=CAPITAL)
    assert info.value.code == "model_not_found" and info.value.param == "model"


def test_unknown_field_raises_bad_request_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL,
                                       extra_body={"top_k": 5})
    assert info.value.param == "top_k"


def test_embedding_model_on_the_chat_route_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=EMBED_MODEL, messages=CAPITAL)
    assert info.value.param == "model"


def test_prompt_longer_than_the_context_is_context_length_exceeded(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=long, max_tokens=5)
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=long, max_tokens=5,
                                       stream=True)
    assert info.value.code == "context_length_exceeded"


def test_max_tokens_beyond_the_context_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, max_tokens=5000)
    assert info.value.param == "max_tokens"
    assert info.value.code == "context_length_exceeded"


@pytest.mark.parametrize("stream", [False, True])
def test_a_short_prompt_with_max_tokens_past_the_context_is_refused_not_clamped(
        client: openai.OpenAI, stream: bool) -> None:
    short = client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, max_tokens=1,
                                           temperature=0)
    assert short.usage is not None
    room = 2048 - short.usage.prompt_tokens  # what the context leaves the completion
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, max_tokens=room + 1,
                                       stream=stream, temperature=0)
    assert info.value.code == "context_length_exceeded"
    # Exactly what fits is taken (the greedy answer is short: it stops long before).
    fits = client.chat.completions.create(model=CHAT_MODEL, messages=CAPITAL, max_tokens=room,
                                          temperature=0)
    assert fits.choices[0].finish_reason == "stop"


def test_control_characters_get_an_answer_and_lone_surrogates_a_400(
        client: openai.OpenAI, http: object) -> None:
    import httpx

    assert isinstance(http, httpx.Client)
    reply = client.chat.completions.create(
        model=CHAT_MODEL, max_tokens=5,
        messages=[{"role": "user", "content": "tab\there\u0000nul\u0007bell\u001besc\u202e"}])
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    body = json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "aXb"}]})
    raw = body.replace("aXb", "a\\ud800b").encode()  # JSON's escape for a lone surrogate
    resp = http.post("/v1/chat/completions", content=raw,
                     headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_a_schema_constrained_decoding_cannot_use_is_a_400_naming_its_field(
        client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(["}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=CAPITAL, max_tokens=5,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": schema}})
    assert info.value.param == "response_format"
    assert "Unclosed" in info.value.message and "<path>" not in info.value.message
