"""The Responses API in-process: requests as the chat requests they become, replies and event
streams in OpenAI's shapes (checked with the openai package's own types), stored responses
per project, their conversations, deletion and expiry (docs/api.md, "Responses")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter
from starlette.testclient import TestClient

from app.api import build_api
from app.services import Limits
from control.deployment import AsyncStore
from control.store import Store
from tests.support.models_double import (
    CHAT,
    COMPLETION_TOKENS,
    EMBED,
    PROMPT_TOKENS,
    ModelsDoubleForTests,
)

TEXT = {"role": "assistant", "content": "Paris is the capital."}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function",
     "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]}
WEATHER = {"type": "function", "name": "weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ITEMS: TypeAdapter[Any] = TypeAdapter(list[ResponseItem])


@pytest.fixture
def replying(models: ModelsDoubleForTests) -> ModelsDoubleForTests:
    models.chat_message = dict(TEXT)
    return models


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/responses", json={"model": CHAT, "input": "Capital of France?",
                                               **fields})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    Response.model_validate(body)  # OpenAI's own type of a response object
    return body


def test_a_response_is_the_chat_reply_as_a_response_object(
        client: TestClient, replying: ModelsDoubleForTests) -> None:
    body = create(client, instructions="Be brief.", max_output_tokens=20, temperature=0,
                  metadata={"case": "1"}, user="u-1")
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["id"].startswith("resp_") and body["metadata"] == {"case": "1"}
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["content"][0]["text"] == TEXT["content"]
    assert body["usage"]["input_tokens"] == PROMPT_TOKENS
    assert body["usage"]["output_tokens"] == COMPLETION_TOKENS
    assert body["usage"]["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS
    sent = replying.sent[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Capital of France?"}]
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0 and sent["user"] == "u-1"


def test_tools_and_formats_become_the_chat_request_s(
        client: TestClient, models: ModelsDoubleForTests) -> None:
    models.chat_message = dict(CALL)
    models.finish_reason = "tool_calls"
    body = create(client, tools=[WEATHER], tool_choice={"type": "function", "name": "weather"},
                  parallel_tool_calls=False)
    [call] = body["output"]
    assert call["type"] == "function_call" and call["call_id"] == "call_1"
    assert call["name"] == "weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    sent = models.sent[-1]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "weather", "description": WEATHER["description"],
        "parameters": WEATHER["parameters"]}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert sent["parallel_tool_calls"] is False
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    models.chat_message = {"role": "assistant", "content": '{"a": 1}'}
    create(client, text={"format": {"type": "json_schema", "name": "thing", "schema": schema,
                                    "strict": True}})
    assert models.sent[-1]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema,
                                               "strict": True}}
    create(client, text={"format": {"type": "json_object"}})
    assert models.sent[-1]["response_format"] == {"type": "json_object"}


def test_max_output_tokens_reached_is_incomplete(client: TestClient,
                                                 replying: ModelsDoubleForTests) -> None:
    replying.finish_reason = "length"
    body = create(client, max_output_tokens=5)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_stored_response_is_read_listed_and_deleted(
        client: TestClient, replying: ModelsDoubleForTests) -> None:
    body = create(client, input=[{"role": "user", "content": "one"},
                                 {"type": "message", "role": "user",
                                  "content": [{"type": "input_text", "text": "two"}]}])
    got = client.get(f"/v1/responses/{body['id']}")
    assert got.status_code == 200 and got.json() == body
    items = client.get(f"/v1/responses/{body['id']}/input_items").json()
    ITEMS.validate_python(items["data"])
    assert [i["content"][0]["text"] for i in items["data"]] == ["two", "one"]  # newest first
    assert items["has_more"] is False and items["first_id"] == items["data"][0]["id"]
    page = client.get(f"/v1/responses/{body['id']}/input_items",
                      params={"order": "asc", "limit": 1}).json()
    assert [i["content"][0]["text"] for i in page["data"]] == ["one"] and page["has_more"]
    rest = client.get(f"/v1/responses/{body['id']}/input_items",
                      params={"order": "asc", "after": page["last_id"]}).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["two"]
    deleted = client.delete(f"/v1/responses/{body['id']}")
    assert deleted.json() == {"id": body["id"], "object": "response", "deleted": True}
    for path in (f"/v1/responses/{body['id']}", f"/v1/responses/{body['id']}/input_items"):
        gone = client.get(path)
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found_error"
    assert client.delete(f"/v1/responses/{body['id']}").status_code == 404


def test_store_false_keeps_nothing(client: TestClient, replying: ModelsDoubleForTests) -> None:
    body = create(client, store=False)
    assert body["store"] is False
    assert client.get(f"/v1/responses/{body['id']}").status_code == 404
    continued = client.post("/v1/responses", json={
        "model": CHAT, "input": "and?", "previous_response_id": body["id"]})
    assert continued.status_code == 404
    assert continued.json()["error"]["param"] == "previous_response_id"


def test_previous_response_id_rebuilds_the_conversation_with_its_calls(
        client: TestClient, models: ModelsDoubleForTests) -> None:
    models.chat_message = dict(CALL)
    first = create(client, input="Weather in Paris?", tools=[WEATHER], instructions="first")
    call_id = first["output"][0]["call_id"]
    models.chat_message = dict(TEXT)
    second = create(client, previous_response_id=first["id"], tools=[WEATHER],
                    input=[{"type": "function_call_output", "call_id": call_id,
                            "output": "sunny"}])
    assert second["previous_response_id"] == first["id"]
    third = create(client, previous_response_id=second["id"], input="Thanks")
    assert models.sent[-1]["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": TEXT["content"]},
        {"role": "user", "content": "Thanks"},
    ], "the earlier instructions are not carried over (as OpenAI)"
    assert third["status"] == "completed"


def test_another_project_s_key_gets_a_404(client: TestClient, store: Store,
                                          replying: ModelsDoubleForTests) -> None:
    body = create(client)
    other = store.create_project("other")["id"]
    secret = store.create_key(["GenerativeApisFullAccess"], [other])["secret_key"]
    headers = {"Authorization": f"Bearer {secret}"}
    for method, path in (("GET", f"/{other}/v1/responses/{body['id']}"),
                         ("GET", f"/{other}/v1/responses/{body['id']}/input_items"),
                         ("DELETE", f"/{other}/v1/responses/{body['id']}")):
        reply = client.request(method, path, headers=headers)
        assert reply.status_code == 404, (method, path)
    continued = client.post(f"/{other}/v1/responses", headers=headers, json={
        "model": CHAT, "input": "x", "previous_response_id": body["id"]})
    assert continued.status_code == 404
    assert client.get(f"/v1/responses/{body['id']}").status_code == 200  # still there


def events_of(client: TestClient, **fields: Any) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/responses", json={
            "model": CHAT, "input": "Capital of France?", "stream": True, **fields}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        text = "".join(reply.iter_text())
    events = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        EVENTS.validate_python(event)  # OpenAI's own event types
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_a_stream_sends_openai_s_events_in_order(client: TestClient,
                                                replying: ModelsDoubleForTests) -> None:
    events = events_of(client)
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * deltas,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == TEXT["content"]
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == text
    assert final["usage"]["output_tokens"] == COMPLETION_TOKENS
    assert client.get(f"/v1/responses/{final['id']}").json() == final


def test_a_streamed_tool_call_sends_argument_events(client: TestClient,
                                                    models: ModelsDoubleForTests) -> None:
    models.chat_message = dict(CALL)
    models.finish_reason = "tool_calls"
    events = events_of(client, tools=[WEATHER])
    kinds = [e["type"] for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    done = events[-3]
    assert done["arguments"] == '{"city": "Paris"}' and done["name"] == "weather"


def test_a_streamed_response_cut_by_max_output_tokens_ends_incomplete(
        client: TestClient, replying: ModelsDoubleForTests) -> None:
    replying.finish_reason = "length"
    events = events_of(client, max_output_tokens=3)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": []}]}, "tools[0].type"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0].type"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"include": ["reasoning.encrypted_content"]}, "include"),
    ({"truncation": "auto"}, "truncation"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ({"text": {"format": {"type": "xml"}}}, "text.format"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ({"user": "u" * 257}, "user"),
    ({"previous_response_id": ""}, "previous_response_id"),
    ({"store": "yes"}, "store"),
])
def test_bad_inputs_are_a_400_naming_the_field(client: TestClient, fields: dict[str, Any],
                                              param: str) -> None:
    reply = client.post("/v1/responses", json={"model": CHAT, "input": "hi", **fields})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_what_the_agents_sdk_sends_for_the_defaults_is_accepted(
        client: TestClient, replying: ModelsDoubleForTests) -> None:
    create(client, include=[], truncation="disabled", instructions=None,
           input=[{"role": "user", "content": "hi"},
                  {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": "hello", "annotations": [],
                                "logprobs": []}]},
                  {"role": "user", "content": "again"}])
    assert replying.sent[-1]["messages"][1] == {"role": "assistant", "content": "hello"}


def test_an_embedding_model_and_an_unknown_id_are_refused(client: TestClient) -> None:
    reply = client.post("/v1/responses", json={"model": EMBED, "input": "hi"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"
    assert client.get("/v1/responses/resp_nope").status_code == 404
    assert client.get("/v1/responses/resp_nope?include=x").status_code == 400
    assert client.get("/v1/responses/x/input_items?limit=0").status_code == 400


def test_a_response_is_metered_on_the_ledger(client: TestClient, store: Store,
                                             replying: ModelsDoubleForTests) -> None:
    with client:  # the lifespan's end flushes the meter
        create(client)
        with client.stream("POST", "/v1/responses", json={
                "model": CHAT, "input": "x", "stream": True}) as reply:
            "".join(reply.iter_text())
    [row] = store.usage(store.default_project_id())
    assert row["route"] == "/v1/responses"
    assert row["requests"] == 2 and row["prompt_tokens"] == 2 * PROMPT_TOKENS
    assert row["completion_tokens"] == 2 * COMPLETION_TOKENS


def test_expired_and_deleted_responses_leave_nothing_in_the_files(tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.default_project_id()

    def keep(response_id: str, text: str, created: int, expires: int) -> None:
        store.store_response(project, {
            "id": response_id, "created_at": created, "expires_at": expires,
            "previous_response_id": None, "response": json.dumps({"output": [], "t": text}),
            "input_items": json.dumps([{"text": text}])}, now=created)

    keep("resp_old", "SECRET-EXPIRING-TEXT", 1000, 2000)
    keep("resp_gone", "SECRET-DELETED-TEXT", 1000, 10**10)
    assert store.stored_response(project, "resp_old", now=1500) is not None
    assert store.stored_response(project, "resp_old", now=2000) is None  # past its time
    assert store.delete_response(project, "resp_gone")
    keep("resp_new", "kept", 3000, 10**10)  # a write purges what has expired
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"SECRET-EXPIRING-TEXT" not in files and b"SECRET-DELETED-TEXT" not in files
    assert b"kept" in files


def test_the_retention_period_sets_expiry(models: ModelsDoubleForTests, store: Store,
                                          key: str) -> None:
    models.chat_message = dict(TEXT)
    app = build_api(models, AsyncStore(store), limits=Limits(responses_retention_s=3600))
    client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
    body = create(client)
    project = store.default_project_id()
    later = body["created_at"] + 3600
    assert store.stored_response(project, body["id"], now=later - 1) is not None
    assert store.stored_response(project, body["id"], now=later) is None


def test_a_stream_that_fails_midway_ends_with_an_error_event_and_is_metered(
        client: TestClient, store: Store, replying: ModelsDoubleForTests) -> None:
    replying.stream_fails_after = 3
    with client, client.stream("POST", "/v1/responses", json={  # the lifespan's end flushes
            "model": CHAT, "input": "x", "stream": True}) as reply:
        text = "".join(reply.iter_text())
    assert '"type": "server_error"' in text and text.endswith("data: [DONE]\n\n")
    assert "response.completed" not in text
    [row] = store.usage(store.default_project_id())
    assert row["requests"] == 1 and row["completion_tokens"] == 3  # the last chunk's count
    ids = [json.loads(line.removeprefix("data: "))["response"]["id"]
           for line in text.splitlines() if '"response.created"' in line]
    assert client.get(f"/v1/responses/{ids[0]}").status_code == 404  # not stored


def test_a_project_s_request_quota_holds_for_responses(
        client: TestClient, store: Store, replying: ModelsDoubleForTests) -> None:
    store.update_project(store.default_project_id(), rpm=1)
    first = client.post("/v1/responses", json={"model": CHAT, "input": "x"})
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    refused = client.post("/v1/responses", json={"model": CHAT, "input": "x", "stream": True})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_requests"
