"""A streamed response: the chat stream's chunks as OpenAI's typed Responses events, in
OpenAI's order, each numbered (``sequence_number``):

``response.created``, ``response.in_progress``; per output item ``response.output_item.added``
then, for text, ``response.content_part.added``, ``response.output_text.delta``...,
``response.output_text.done``, ``response.content_part.done``, or, for a function call,
``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``;
then ``response.output_item.done``; last ``response.completed`` (or ``response.incomplete``
when ``max_output_tokens`` cut it), with the usage.
"""

from __future__ import annotations

import json
from typing import Any

from app.responses import (
    Item,
    function_call_item,
    message_item,
    new_id,
    output_text,
    status_of,
)

Event = dict[str, Any]


def frame(event: Event) -> str:
    """One server-sent event, named as OpenAI names it."""
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


class ResponseEvents:
    """Turns a chat stream's chunks into events. ``response`` is the response object in
    progress: its ``output`` fills as items finish."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self._sequence = 0
        self._text: Item | None = None  # the message item being written, with its index
        self._text_index = -1
        self._calls: dict[int, tuple[int, Item]] = {}  # chat tool-call index -> item
        self._open: list[int] = []  # output indices not yet done, in order
        self._items: dict[int, Item] = {}
        self.finish_reason: str | None = None

    def _event(self, kind: str, **fields: Any) -> str:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return frame(event)

    def start(self) -> str:
        snapshot = {**self.response, "output": []}
        return (self._event("response.created", response=snapshot)
                + self._event("response.in_progress", response=snapshot))

    def chunk(self, data: dict[str, Any]) -> str:
        """The events of one chat chunk (its JSON), possibly none."""
        out = ""
        for choice in data.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text_delta(delta["content"])
            for call in delta.get("tool_calls") or []:
                out += self._call_delta(call)
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
        return out

    def _text_delta(self, text: str) -> str:
        out = ""
        if self._text is None:
            self._text_index = self._add_index()
            self._text = message_item(new_id("msg"), "", "in_progress")
            self._text["content"] = []
            self._items[self._text_index] = self._text
            out += self._event("response.output_item.added", output_index=self._text_index,
                               item=self._text)
            out += self._event("response.content_part.added", item_id=self._text["id"],
                               output_index=self._text_index, content_index=0,
                               part=output_text(""))
            self._text["content"] = [output_text("")]
        part = self._text["content"][0]
        part["text"] += text
        return out + self._event("response.output_text.delta", item_id=self._text["id"],
                                 output_index=self._text_index, content_index=0, delta=text,
                                 logprobs=[])

    def _call_delta(self, call: dict[str, Any]) -> str:
        out = ""
        index = call.get("index", 0)
        function = call.get("function") or {}
        if index not in self._calls:
            output_index = self._add_index()
            item = function_call_item(new_id("fc"), call.get("id") or new_id("call"),
                                      function.get("name") or "", "", "in_progress")
            self._calls[index] = (output_index, item)
            self._items[output_index] = item
            out += self._event("response.output_item.added", output_index=output_index,
                               item=dict(item))
        output_index, item = self._calls[index]
        if function.get("name") and not item["name"]:
            item["name"] = function["name"]
        arguments = function.get("arguments") or ""
        if arguments:
            item["arguments"] += arguments
            out += self._event("response.function_call_arguments.delta", item_id=item["id"],
                               output_index=output_index, delta=arguments)
        return out

    def _add_index(self) -> int:
        index = len(self._items)
        self._open.append(index)
        return index

    def finish(self) -> str:
        """The ``.done`` events of every item, in order; the response's ``output`` is then
        final (``complete`` adds the closing event)."""
        status = status_of(self.finish_reason)
        out = ""
        for index in self._open:
            item = self._items[index]
            item["status"] = status
            if item["type"] == "message":
                part = item["content"][0]
                out += self._event("response.output_text.done", item_id=item["id"],
                                   output_index=index, content_index=0, text=part["text"],
                                   logprobs=[])
                out += self._event("response.content_part.done", item_id=item["id"],
                                   output_index=index, content_index=0, part=part)
            else:
                out += self._event("response.function_call_arguments.done",
                                   item_id=item["id"], output_index=index, name=item["name"],
                                   arguments=item["arguments"])
            out += self._event("response.output_item.done", output_index=index, item=item)
        self._open = []
        self.response["output"] = [self._items[i] for i in sorted(self._items)]
        self.response["status"] = status
        if status == "incomplete":
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
        return out

    def complete(self) -> str:
        kind = ("response.incomplete" if self.response["status"] == "incomplete"
                else "response.completed")
        return self._event(kind, response=self.response)
