"""Requests generated from OpenAI's API description (``openai-openapi-subset.yaml``) and the
check every reply must pass: a success, or an error in the envelope, never a 5xx.

Generation is schemathesis's: "positive" requests are valid per the description, "negative"
ones break it (wrong types, missing or null fields, bodies that are no object). Bodies valid
per OpenAI's description may still be refused here (unknown fields are a 400 by contract, and
the generated model ids are not this service's), so a body can be shaped on its way out:
``model`` pinned to one the service has, fields the description does not declare dropped
(both stay valid per the description), to reach further into validation and the models.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pydantic
import schemathesis
import yaml
from hypothesis import strategies as st
from schemathesis import GenerationMode

SPEC_PATH = Path(__file__).with_name("openai-openapi-subset.yaml")
SPEC = yaml.safe_load(SPEC_PATH.read_text())
SCHEMA = schemathesis.openapi.from_dict(SPEC)
OPERATIONS = {(op.method.upper(), op.path): op
              for op in (result.ok() for result in SCHEMA.get_all_operations())}
ENVELOPE_FIELDS = {"message", "type", "param", "code"}
RESPONSE_EVENT: Any = pydantic.TypeAdapter(openai.types.responses.ResponseStreamEvent)


@dataclass(frozen=True)
class Generated:
    method: str
    path: str                   # under /v1
    content: bytes | None       # the body as sent
    query: dict[str, Any]

    @property
    def streamed(self) -> bool:
        try:
            body = json.loads(self.content or b"null")
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("stream") is True


def _content(body: Any) -> bytes | None:
    if isinstance(body, schemathesis.core.NotSet):
        return None
    if isinstance(body, bytes):  # a negative body that is not JSON at all
        return body
    # ensure_ascii: lone surrogates the generator draws go out as \\u escapes, valid JSON text.
    return json.dumps(body).encode()


Shape = Callable[[dict[str, Any]], dict[str, Any]]


def declared_fields(path: str) -> frozenset[str]:
    """The fields the description declares for the JSON body of ``POST path``."""
    schemas = SPEC["components"]["schemas"]

    def fields(schema: dict[str, Any]) -> set[str]:
        if "$ref" in schema:
            return fields(schemas[schema["$ref"].rsplit("/", 1)[1]])
        found = set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            found |= fields(part)
        return found

    body = SPEC["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return frozenset(fields(body["schema"]))


def declared_only(path: str) -> Shape:
    declared = declared_fields(path)
    return lambda body: {name: value for name, value in body.items() if name in declared}


def requests(method: str, path: str, mode: GenerationMode, model: str | None = None,
             shape: Shape | None = None) -> st.SearchStrategy[Generated]:
    """Requests for one operation of the description; with ``model``, an object body gets
    that model (what the service has) in place of the generated one; ``shape`` changes an
    object body further."""

    def build(case: Any) -> Generated:
        body = case.body
        if isinstance(body, dict):
            if shape is not None:
                body = shape(body)
            if model is not None:
                body = {**body, "model": model}
        return Generated(method, "/v1" + case.formatted_path, _content(body),
                         dict(case.query or {}))

    return OPERATIONS[(method, path)].as_strategy(generation_mode=mode).map(build)


def check_reply(request: Generated, status: int, content_type: str, content: bytes,
                sdk_types: bool = True) -> None:
    """What every reply must be. ``sdk_types``: a success parses as the SDK's response type
    (off for replies of a test double, which answers with stand-ins)."""
    where = f"{request.method} {request.path} {request.content!r:.300}"
    assert status < 500, f"{status} for {where}: {content!r:.500}"
    if status >= 400:
        assert content_type.startswith("application/json"), f"{status} {content_type} {where}"
        body = json.loads(content)
        assert set(body) == {"error"}, f"{where}: {body}"
        assert set(body["error"]) == ENVELOPE_FIELDS, f"{where}: {body}"
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert isinstance(body["error"]["type"], str)
        return
    assert 200 <= status < 300, f"{status} for {where}"
    if content_type.startswith("text/event-stream"):
        chunks = [line.removeprefix(b"data: ") for line in content.splitlines()
                  if line.startswith(b"data: ")]
        if request.path == "/v1/responses":  # typed events, no [DONE] (docs/api.md)
            events = [json.loads(chunk) for chunk in chunks]
            assert events and events[-1]["type"] in (
                "response.completed", "response.incomplete"), f"{where}: {content!r:.500}"
            for chunk in chunks:
                try:
                    RESPONSE_EVENT.validate_json(chunk)
                except pydantic.ValidationError as e:
                    raise AssertionError(f"{where}: not a Responses event: {e}") from e
            return
        assert chunks and chunks[-1] == b"[DONE]", f"{where}: {content!r:.500}"
        chunk_type = (openai.types.Completion if request.path.endswith("/completions")
                      and not request.path.endswith("/chat/completions")
                      else openai.types.chat.ChatCompletionChunk)
        for chunk in chunks[:-1]:
            if sdk_types:
                _parse(chunk_type, chunk, where)
            else:
                json.loads(chunk)
        return
    body = json.loads(content)
    if request.path.startswith("/v1/responses"):  # shaped by the ingress, double or not
        if request.method == "DELETE":
            assert body["deleted"] is True, f"{where}: {body}"
        elif request.path.endswith("/input_items"):
            assert body["object"] == "list", f"{where}: {body}"
        else:
            _parse(openai.types.responses.Response, content, where)
        return
    if not sdk_types and request.path not in ("/v1/models",) and \
            not request.path.startswith("/v1/models/"):
        return
    if request.path == "/v1/chat/completions":
        _parse(openai.types.chat.ChatCompletion, content, where)
    elif request.path == "/v1/completions":
        _parse(openai.types.Completion, content, where)
    elif request.path == "/v1/embeddings":
        if json.loads(request.content or b"{}").get("encoding_format") == "base64":
            # The SDK's type says floats: it decodes base64 itself when it asked for it, and
            # hands a caller who asked explicitly the string as sent.
            _check_base64_embeddings(body, where)
        else:
            _parse(openai.types.CreateEmbeddingResponse, content, where)
    elif request.path == "/v1/models":
        for model in body["data"]:
            openai.types.Model.model_validate(model)
    else:
        openai.types.Model.model_validate(body)


def _check_base64_embeddings(body: dict[str, Any], where: str) -> None:
    """Each vector is base64 of packed little-endian float32, and nothing else differs from
    the SDK's type."""
    for item in body["data"]:
        raw = base64.b64decode(item["embedding"], validate=True)
        assert raw and len(raw) % 4 == 0, f"{where}: {len(raw)} bytes is no float32 vector"
    floats = {**body, "data": [{**item, "embedding": [0.0]} for item in body["data"]]}
    _parse(openai.types.CreateEmbeddingResponse, json.dumps(floats).encode(), where)


def _parse(model: type[pydantic.BaseModel], content: bytes, where: str) -> None:
    try:
        model.model_validate_json(content)
    except pydantic.ValidationError as e:
        raise AssertionError(f"{where}: not a {model.__name__}: {e}") from e
