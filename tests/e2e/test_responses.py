"""OpenAI's Responses API on the built-in chat model, through the official client: replies,
typed event streams, function tools, JSON schemas, and stored conversations continued across
two ingress replicas and across a restart of the ingress and the control plane."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from deployments.app import deployment_name
from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, inference_cli, make_client

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

CAPITAL = "What is the capital of France? Answer in one sentence."
WEATHER: dict[str, Any] = {
    "type": "function", "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}


def test_a_reply_is_a_response_object(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=CHAT_MODEL, input=CAPITAL, temperature=0,
                                    max_output_tokens=30, instructions="Be brief.")
    assert reply.object == "response" and reply.status == "completed"
    assert "Paris" in reply.output_text
    assert reply.usage is not None and reply.usage.input_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=CHAT_MODEL, max_output_tokens=3,
                                    input="Write a long story about a dragon.")
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage is not None and reply.usage.output_tokens == 3


def test_the_event_stream_spells_the_same_text_as_the_reply(client: openai.OpenAI) -> None:
    whole = client.responses.create(model=CHAT_MODEL, input=CAPITAL, temperature=0,
                                    max_output_tokens=30, store=False)
    kinds: list[str] = []
    numbers: list[int] = []
    deltas = ""
    with client.responses.stream(model=CHAT_MODEL, input=CAPITAL, temperature=0,
                                 max_output_tokens=30, store=False) as stream:
        for event in stream:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas += event.delta
        final = stream.get_final_response()
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert numbers == list(range(len(kinds)))
    assert deltas == final.output_text == whole.output_text
    assert final.usage is not None and whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_a_function_tool_round_trip(client: openai.OpenAI) -> None:
    asked = client.responses.create(model=CHAT_MODEL, input="What's the weather in Paris?",
                                    tools=[WEATHER], tool_choice="required", temperature=0)
    [call] = [item for item in asked.output if item.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    answered = client.responses.create(
        model=CHAT_MODEL, previous_response_id=asked.id, tools=[WEATHER], tool_choice="none",
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": "Sunny, 24 degrees."}], max_output_tokens=40, temperature=0)
    assert answered.output_text
    items = client.responses.input_items.list(answered.id)
    assert [item.type for item in items.data] == ["function_call_output"]


def test_streamed_function_calls_send_argument_events(client: openai.OpenAI) -> None:
    with client.responses.stream(model=CHAT_MODEL, input="What's the weather in Paris?",
                                 tools=[WEATHER], tool_choice="required",
                                 temperature=0) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    [call] = [item for item in final.output if item.type == "function_call"]
    assert "city" in json.loads(call.arguments)


def test_a_json_schema_reply_parses(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    reply = client.responses.create(
        model=CHAT_MODEL, input="Name a city and its country.", temperature=0,
        text={"format": {"type": "json_schema", "name": "place", "schema": schema,
                         "strict": True}})
    jsonschema.validate(json.loads(reply.output_text), schema)


def test_stored_responses_are_read_listed_and_deleted(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=CHAT_MODEL, input="Say hello.", max_output_tokens=8,
                                    metadata={"case": "stored"})
    got = client.responses.retrieve(reply.id)
    assert got.id == reply.id and got.output_text == reply.output_text
    assert got.metadata == {"case": "stored"}
    [item] = client.responses.input_items.list(reply.id).data
    assert item.type == "message" and item.content[0].text == "Say hello."  # type: ignore[union-attr]
    client.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=CHAT_MODEL, input="more", previous_response_id=reply.id)


def test_another_project_s_key_gets_a_404(base_url: str, client: openai.OpenAI) -> None:
    reply = client.responses.create(model=CHAT_MODEL, input="Say hi.", max_output_tokens=4)
    project = inference_cli("projects", "create", "responses-elsewhere")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", project)["secret_key"]
    other = make_client(base_url, key, project)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(reply.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model=CHAT_MODEL, input="x", previous_response_id=reply.id)
    assert client.responses.retrieve(reply.id).id == reply.id


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image",
                                              "image_url": "https://example.com/a.png"}]}]},
     "input[0].content[0].type"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"truncation": "auto"}, "truncation"),
    ({"model": EMBED_MODEL}, "model"),
])
def test_bad_inputs_are_a_400_naming_the_field(client: openai.OpenAI, fields: dict[str, Any],
                                              param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(**{"model": CHAT_MODEL, "input": "hi", **fields})
    assert refused.value.param == param


def test_a_stream_the_client_left_is_aborted_and_metered(base_url: str) -> None:
    project = inference_cli("projects", "create", "responses-cut")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", project)["secret_key"]
    client = make_client(base_url, key, project)
    with client.responses.stream(model=CHAT_MODEL, max_output_tokens=2000,
                                 input="Write a long story about a dragon.") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    deadline = time.monotonic() + 20
    rows = inference_cli("usage", "--project", project)
    while not rows and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = inference_cli("usage", "--project", project)
    [row] = rows
    assert row["requests"] == 1 and row["prompt_tokens"] > 0
    assert 0 < row["completion_tokens"] < 2000


@pytest.fixture(scope="module")
def second_ingress_url(serve_proxy_url: str) -> Iterator[str]:
    """A second ingress deployment of two replicas in its own app, in front of the same
    chat deployment and the same control plane as the session's app: the shape of a
    cluster whose ingress replicas run on several nodes."""
    from ray import serve

    from app.ingress import Ingress
    from app.model_catalog import ModelCatalog
    from messages import ModelRoute

    chat = serve.get_deployment_handle(deployment_name(CHAT_MODEL), app_name="inference")
    control = serve.get_deployment_handle("ControlPlane", app_name="inference")
    routes = {CHAT_MODEL: ModelRoute(task="chat", handle=chat, wait_for_replica_s=None,
                                     scales_to_zero=False, card=None)}
    ingress: Any = Ingress
    serve.run(ingress.options(num_replicas=2, ray_actor_options={"num_cpus": 0.01}).bind(
        routes, control, {}, ModelCatalog()), name="second-ingress", route_prefix="/second")
    try:
        yield f"{serve_proxy_url}/second"
    finally:
        serve.delete("second-ingress")


def conversation_start(client: openai.OpenAI) -> tuple[Any, Any]:
    """A first stored turn, and what its continuation must be: the same conversation sent
    whole, at temperature 0 (a check that holds whatever the small model makes of it)."""
    first = client.responses.create(model=CHAT_MODEL, temperature=0, max_output_tokens=20,
                                    input="My name is Ada. Say hello to me.")
    whole = client.responses.create(
        model=CHAT_MODEL, temperature=0, max_output_tokens=20, store=False,
        input=[{"role": "user", "content": "My name is Ada. Say hello to me."},
               {"role": "assistant", "content": first.output_text},
               {"role": "user", "content": "What is my name?"}])
    return first, whole


def same_turn(got: Any, want: Any) -> None:
    assert got.output_text == want.output_text
    assert got.usage.input_tokens == want.usage.input_tokens  # the whole conversation


def test_a_conversation_continues_across_ingress_replicas(
        client: openai.OpenAI, second_ingress_url: str, admin_key: str) -> None:
    second = make_client(second_ingress_url, admin_key)
    first, whole = conversation_start(client)
    for _ in range(3):  # whichever replica of the second ingress takes each turn
        answer = second.responses.create(model=CHAT_MODEL, previous_response_id=first.id,
                                         temperature=0, max_output_tokens=20,
                                         input="What is my name?")
        same_turn(answer, whole)
    # A longer chain: each turn's prompt holds every earlier turn, input and output.
    turn = answer
    for _ in range(2):
        later = second.responses.create(model=CHAT_MODEL, previous_response_id=turn.id,
                                        temperature=0, max_output_tokens=10, input="Thanks.")
        assert later.usage is not None and turn.usage is not None
        assert later.usage.input_tokens > turn.usage.total_tokens
        turn = later
    assert client.responses.retrieve(turn.id).previous_response_id is not None
    for either in (client, second):
        assert either.responses.retrieve(first.id).output_text == first.output_text


def test_a_conversation_survives_a_restart(client: openai.OpenAI, base_url: str) -> None:
    import ray

    first, whole = conversation_start(client)
    # Every process that holds the service's state or its caches: the control plane (which
    # owns the store) and the ingress; Serve starts new ones. The engine keeps no state.
    killed = 0
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if any(part in actor["name"] for part in ("#ControlPlane#", "#Ingress#")) and (
                actor["name"].startswith("SERVE_REPLICA::inference#")):
            ray.kill(ray.get_actor(actor["name"], namespace="serve"), no_restart=True)
            killed += 1
    assert killed == 2
    deadline = time.monotonic() + 120
    while True:
        try:
            later = client.responses.create(model=CHAT_MODEL, previous_response_id=first.id,
                                            temperature=0, max_output_tokens=20,
                                            input="What is my name?")
            break
        except (openai.APIStatusError, openai.APIConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    same_turn(later, whole)
    assert httpx.get(f"{base_url}/health").status_code == 200
