"""The Responses API over the chat path: a ``POST /v1/responses`` request as the chat request
the chat deployments serve (vLLM's templating, tool parsing and constrained decoding, as for
chat), and a chat reply as OpenAI's ``response`` object (docs/api.md, "Responses").

Items are plain JSON dicts in OpenAI's shapes: they are what the store keeps and what the
client reads back, so they are built once, here, and never re-shaped.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from app.protocol import (
    ChatCompletionRequest,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    NamedFunctionChoice,
    ResponsesRequest,
    TextFormat,
)
from app.quota_gate import DEFAULT_COMPLETION_RESERVE, estimate_tokens
from messages import Usage

Item = dict[str, Any]


def new_id(prefix: str) -> str:
    """OpenAI-style ids (``resp_...``, ``msg_...``, ``fc_...``): 192 random bits, so an id
    names one response in every project and cannot be guessed."""
    return f"{prefix}_{secrets.token_hex(24)}"


# --- the request's input, as items kept and as chat messages -------------------------------


def input_items(req: ResponsesRequest) -> list[Item]:
    """The request's input as the items ``GET .../input_items`` lists: each with an id (the
    caller's, or a new one), text parts spelled out, ``status`` completed."""
    items: list[Item] = []
    for item in req.items:
        if isinstance(item, MessageItem):
            content = item.content
            parts = ([{"type": "input_text", "text": content}] if isinstance(content, str)
                     else [part.model_dump(exclude_none=True) for part in content])
            items.append({"id": item.id or new_id("msg"), "type": "message", "role": item.role,
                          "content": parts, "status": "completed"})
        elif isinstance(item, FunctionCallItem):
            items.append({"id": item.id or new_id("fc"), "type": "function_call",
                          "call_id": item.call_id, "name": item.name,
                          "arguments": item.arguments, "status": "completed"})
        else:
            assert isinstance(item, FunctionCallOutputItem)
            output = item.output if isinstance(item.output, str) else [
                part.model_dump() for part in item.output]
            items.append({"id": item.id or new_id("fco"), "type": "function_call_output",
                          "call_id": item.call_id, "output": output, "status": "completed"})
    return items


def chat_messages(instructions: str | None, items: list[Item]) -> list[dict[str, Any]]:
    """The conversation as chat messages: ``instructions`` as the system message (OpenAI
    does not carry a previous response's instructions over, nor do we), then the items in
    order. Function calls join the assistant message before them, as chat spells a turn
    with tool calls; a function's output is a ``tool`` message."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _text(item["content"])})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _text(item["output"])})
    return messages


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", part.get("refusal", "")) for part in content)


def chat_request(req: ResponsesRequest, messages: list[dict[str, Any]]) -> ChatCompletionRequest:
    """The chat request that generates this response (validated as any chat request is)."""
    body: dict[str, Any] = {
        "model": req.model, "messages": messages, "temperature": req.temperature,
        "top_p": req.top_p, "parallel_tool_calls": req.parallel_tool_calls,
        "stream": req.stream,
    }
    if req.max_output_tokens is not None:
        body["max_tokens"] = req.max_output_tokens
    if req.user is not None:
        body["user"] = req.user
    if req.tools:
        body["tools"] = [{"type": "function", "function": tool.model_dump(
            exclude={"type"}, exclude_none=True)} for tool in req.tools]
    if isinstance(req.tool_choice, NamedFunctionChoice):
        body["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice.name}}
    elif req.tool_choice is not None:
        body["tool_choice"] = req.tool_choice
    text_format = req.text.format if req.text else None
    if text_format is not None and text_format.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif text_format is not None and text_format.type == "json_schema":
        schema = text_format.model_dump(by_alias=True, exclude={"type"}, exclude_none=True)
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    return ChatCompletionRequest.model_validate(body)


def reservation(chat: ChatCompletionRequest) -> int:
    """Tokens reserved against a tokens-per-minute quota, as for chat."""
    prompt = sum(len(str(m.content or "")) for m in chat.messages)
    return estimate_tokens(prompt) + (chat.max_tokens or DEFAULT_COMPLETION_RESERVE)


# --- the reply, as a response object ----------------------------------------------------


def output_items(message: dict[str, Any], finish_reason: str | None) -> list[Item]:
    """A chat choice's message as output items: its text as one message item, then each
    tool call as a ``function_call`` item."""
    status = status_of(finish_reason)
    items: list[Item] = []
    if message.get("content"):
        items.append(message_item(new_id("msg"), message["content"], status))
    for call in message.get("tool_calls") or []:
        function = call["function"]
        items.append(function_call_item(new_id("fc"), call["id"], function["name"],
                                        function["arguments"], status))
    return items


def message_item(item_id: str, text: str, status: str) -> Item:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [output_text(text)]}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str,
                       status: str) -> Item:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def response_object(response_id: str, created_at: int, req: ResponsesRequest, *,
                    status: str, output: list[Item], usage: Usage | None) -> dict[str, Any]:
    """OpenAI's ``response`` object; ``status`` ``in_progress`` while a stream runs."""
    tool_choice: Any = req.tool_choice or ("auto" if req.tools else "none")
    if isinstance(tool_choice, NamedFunctionChoice):
        tool_choice = tool_choice.model_dump()
    text = req.text.format if req.text else TextFormat(type="text")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete"
                               else None),
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": req.model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls,
        "previous_response_id": req.previous_response_id,
        "reasoning": None,
        "store": req.store,
        "temperature": req.temperature,
        "text": {"format": text.model_dump(by_alias=True, exclude_none=True)},
        "tool_choice": tool_choice,
        "tools": [tool.model_dump(exclude_none=True) for tool in req.tools or []],
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": None if usage is None else usage_object(usage),
        "user": req.user,
        "metadata": req.metadata or {},
    }


def usage_object(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens}


def status_of(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason == "length" else "completed"


def now() -> int:
    return int(time.time())
