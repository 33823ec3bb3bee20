"""vLLM's chat and completion replies and stream chunks in exactly OpenAI's shape
(docs/api.md, "Chat completions", "Completions" and "Streaming and usage").

vLLM's serving layer adds fields of its own (token ids, the prompt's text, stop reasons),
leaves out fields OpenAI's schema requires as null, and reports per-chunk usage per choice.
Here every reply and chunk is read once, put in OpenAI's shape, and its usage taken for
metering, so nothing downstream parses a frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from messages import Chunk, StreamUsage, Usage

# vLLM's own fields: in a reply or chunk, and in each choice.
_ENGINE_FIELDS = ("prompt_token_ids", "prompt_logprobs", "prompt_text", "kv_transfer_params",
                  "ec_transfer_params", "metrics")
_ENGINE_CHOICE_FIELDS = ("token_ids", "stop_reason", "routed_experts", "prompt_token_ids",
                         "prompt_logprobs")
# vLLM's reasoning output, on a message or delta; OpenAI's chat completion has no such field.
_ENGINE_MESSAGE_FIELDS = ("reasoning", "reasoning_content")


@dataclass(frozen=True, slots=True)
class Framing:
    """What the service wrote into a request on the client's behalf, taken back out of the
    answer: prompt tokens of its own (a forced tool call's opening, which the client neither
    sent nor receives, so is not billed for), completion tokens generated in an earlier step
    (the tool a ``required`` call chose), and the finish reason OpenAI gives for what the
    client asked (``tool_calls`` for ``tool_choice: required`` where the engine, decoding a
    named call, says ``stop``)."""

    hidden_prompt_tokens: int = 0
    finish_reason_of_stop: str = "stop"
    # Generated for this answer before the engine's request ran (a forced call's tool choice).
    earlier_completion_tokens: int = 0

    def usage(self, usage: Usage) -> Usage:
        return Usage(usage.prompt_tokens - self.hidden_prompt_tokens,
                     usage.completion_tokens + self.earlier_completion_tokens)

    def finish_reason(self, reason: str | None) -> str | None:
        return self.finish_reason_of_stop if reason == "stop" else reason


AS_ASKED = Framing()


def reply(body: dict[str, Any], framing: Framing = AS_ASKED) -> dict[str, Any]:
    """A whole reply (``model_dump()`` of vLLM's, nulls kept) in OpenAI's shape."""
    _drop(body, _ENGINE_FIELDS)
    if body.get("usage"):
        body["usage"] = _reported(framing.usage(Usage.of(body["usage"])))
    for choice in body.get("choices", []):
        _drop(choice, _ENGINE_CHOICE_FIELDS)
        choice.setdefault("logprobs", None)
        choice["finish_reason"] = framing.finish_reason(choice.get("finish_reason"))
        message = choice.get("message", {})
        _drop(message, _ENGINE_MESSAGE_FIELDS)
        message.setdefault("content", None)
        if message.get("tool_calls") and message["content"] == "":
            message["content"] = None  # OpenAI's tool-call message: content null
        message.setdefault("refusal", None)
        for key in ("tool_calls", "function_call", "audio", "annotations"):
            if not message.get(key):  # optional: absent rather than null or empty
                message.pop(key, None)
        for call in message.get("tool_calls", []):
            _drop_nulls(call)
    return body


class StreamShaper:
    """One stream's chunks, in order: OpenAI's fields, and usage as the client asked for it.

    The engine always reports usage on every chunk (continuous usage stats), counting the
    completion tokens of the chunk's own choice; a chunk's usage here is cumulative over all
    choices, which is what a request with ``n`` > 1 is billed."""

    def __init__(self, shown: StreamUsage, framing: Framing = AS_ASKED,
                 choices_per_prompt: int | None = None) -> None:
        self._shown = shown
        self._framing = framing
        # A legacy completion's prompts each have their own choices, numbered on (prompt i's
        # are i*n .. i*n+n-1) and their own prompt count; a chat's choices share one prompt.
        self._choices_per_prompt = choices_per_prompt
        self._prompt: dict[int, int] = {}  # per prompt
        self._completion: dict[int, int] = {}  # per choice index

    def chunk(self, frame: str) -> Chunk:
        payload = frame.removeprefix("data: ").rstrip()
        if not payload.startswith("{"):  # "[DONE]"
            return Chunk(frame, None)
        data = json.loads(payload)
        usage = self._usage(data)
        usage_only = data.get("choices") == [] and usage is not None
        _drop(data, _ENGINE_FIELDS)
        for choice in data.get("choices", []):
            _chunk_choice(choice)
            if choice["finish_reason"] is not None:
                choice["finish_reason"] = self._framing.finish_reason(choice["finish_reason"])
        if usage_only:
            assert usage is not None
            data["usage"] = _reported(usage)
        elif self._shown.every_chunk and usage is not None:
            data["usage"] = _reported(usage)
        elif self._shown.trailing:
            data["usage"] = None  # OpenAI's protocol: null until the trailing chunk
        else:
            data.pop("usage", None)
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return Chunk(f"data: {text}\n\n", usage,
                     usage_only=usage_only)

    def _usage(self, data: dict[str, Any]) -> Usage | None:
        reported = data.get("usage")
        if reported is None:
            return None
        if data.get("choices") == []:  # the engine's final count, over every choice
            return self._framing.usage(Usage.of(reported))
        for choice in data.get("choices", []):
            index = int(choice.get("index", 0))
            prompt = 0 if self._choices_per_prompt is None else index // self._choices_per_prompt
            self._prompt[prompt] = int(reported.get("prompt_tokens") or 0)
            self._completion[index] = int(reported.get("completion_tokens") or 0)
        return self._framing.usage(Usage(sum(self._prompt.values()),
                                         sum(self._completion.values())))


def engine_error(frame: str) -> tuple[int, str, str | None] | None:
    """The status, message and param of an error event vLLM wrote into a stream, if
    ``frame`` is one (its envelope is vLLM's own: ``code`` the HTTP status)."""
    if not frame.startswith('data: {"error"'):
        return None
    error = json.loads(frame.removeprefix("data: "))["error"]
    return int(error.get("code") or 500), str(error.get("message", "")), error.get("param")


def _chunk_choice(choice: dict[str, Any]) -> None:
    _drop(choice, _ENGINE_CHOICE_FIELDS)
    choice.setdefault("logprobs", None)
    choice.setdefault("finish_reason", None)
    delta = choice.get("delta", {})
    _drop(delta, _ENGINE_MESSAGE_FIELDS)
    for call in delta.get("tool_calls") or []:
        # A continuation delta carries only what it continues: no "name": null, "id": null.
        _drop_nulls(call)


def _reported(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _drop(data: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        data.pop(key, None)


def _drop_nulls(call: dict[str, Any]) -> None:
    for key in [k for k, v in call.items() if v is None]:
        del call[key]
    function = call.get("function")
    if isinstance(function, dict):
        for key in [k for k, v in function.items() if v is None]:
            del function[key]
