"""Forced tool calls: ``tool_choice`` naming a function, or ``required``. Exactly one call,
and the client is billed for the call it gets (docs/api.md, "Chat completions").

The service writes the call's opening, ``[{"name":"<name>","parameters":``, as the start of
the assistant's turn, and the engine decodes only the arguments under their JSON schema (vLLM's
named-function path). On a small model the opening is what makes the arguments close reliably
(docs/performance.md, "Tool calls on a small model"); written by the service, it is neither
generated nor billed: its tokens are taken out of the prompt's count. A call cut by
``max_tokens`` comes back as the arguments decoded so far.

``required`` with several tools: the model first chooses the tool, its name decoded after the
opening ``[{"name":"`` under a choice of the tools' names; then that tool's call is decoded as
above. The name's tokens are billed as completion tokens; the prompt once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from deployments.openai_shape import AS_ASKED, Framing

NAME_OPENING = '[{"name":"'
# The sampling fields that carry over to choosing the tool; the rest shape the answer.
_CHOOSING_FIELDS = ("model", "messages", "tools", "temperature", "top_p", "seed",
                    "frequency_penalty", "presence_penalty")


def choosing_request(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request that lets the model choose the tool, when ``body`` needs one: ``required``
    over several tools, one choice (with ``n`` > 1 each choice chooses in its own decoding,
    see :func:`plan`)."""
    tools = body.get("tools") or []
    if body.get("tool_choice") != "required" or len(tools) < 2 or (body.get("n") or 1) > 1:
        return None
    names = [t["function"]["name"] for t in tools]
    return {
        **{k: body[k] for k in _CHOOSING_FIELDS if k in body},
        "messages": [*body["messages"], {"role": "assistant", "content": NAME_OPENING}],
        "continue_final_message": True, "add_generation_prompt": False,
        "tool_choice": "none", "structured_outputs": {"choice": names},
        "max_tokens": max(len(n) for n in names) + 1, "stream": False,
    }


def chosen_tool(reply: dict[str, Any], body: dict[str, Any]) -> tuple[str, int] | None:
    """The name the model chose and the completion tokens it took, from the choosing reply."""
    name = reply["choices"][0]["message"].get("content") or ""
    if name not in {t["function"]["name"] for t in body["tools"]}:
        return None
    return name, int(reply["usage"]["completion_tokens"])


def plan(body: dict[str, Any], count_tokens: Callable[[str], int],
         chosen: tuple[str, int] | None = None) -> tuple[dict[str, Any], Framing]:
    """The request the engine runs for ``body``, and how its answer is framed for the client.
    ``chosen``: the tool the model chose for ``required`` and the tokens that took."""
    choice = body.get("tool_choice")
    tools = body.get("tools") or []
    earlier = 0
    if isinstance(choice, dict):
        name = choice["function"]["name"]
    elif choice == "required" and len(tools) == 1:
        name = tools[0]["function"]["name"]
    elif choice == "required" and chosen is not None:
        name, earlier = chosen
    elif choice == "required":
        # Several choices (n > 1), each choosing its tool: one call under the schema of a
        # one-item array [{"name": ..., "parameters": {...}}], its framing generated.
        return {**body, "parallel_tool_calls": False}, AS_ASKED
    else:
        return body, AS_ASKED
    opening = '[{"name":' + json.dumps(name, ensure_ascii=False) + ',"parameters":'
    named = {
        **body,
        "tool_choice": {"type": "function", "function": {"name": name}},
        "parallel_tool_calls": False,
        "messages": [*body["messages"], {"role": "assistant", "content": opening}],
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    # OpenAI finishes a forced named call with "stop" and a required one with "tool_calls".
    finish = "tool_calls" if choice == "required" else "stop"
    return named, Framing(count_tokens(opening), finish, earlier)
