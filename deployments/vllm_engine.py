"""The one seam to vLLM: every touch of its internals lives in this module (docs/architecture.md, "The vLLM seam").

vLLM's own OpenAI serving layer does the chat templating, tool-call parsing, constrained
decoding and logprobs; we build it in-process the way vLLM's API server does
(``make_arg_parser`` -> ``build_async_engine_client`` -> ``init_app_state``) and call
``OpenAIServingChat.create_chat_completion(request, None)``. Pinned: vllm(-cpu) 0.32.0.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from deployments import forced_calls, openai_shape
from deployments.config import ChatEngine
from messages import APIError, Chunk, StreamUsage, Usage

# vLLM's error types are HTTP-status names; the contract's envelope wants its own table.
_CONTEXT_MARKERS = ("maximum context length", "context length", "max_model_len")
# xgrammar's refusal of a schema: "Failed to transform json schema into a grammar: [hh:mm:ss]
# <source>:<line>: <what>"; only <what> is the client's business.
_GRAMMAR_FAILURE = re.compile(
    r"Failed to transform json schema into a grammar:\s*(?:\[[^\]]*\]\s*)?(?:\S+:\d+:\s*)?(.*)",
    re.DOTALL)


def engine_cli_args(model_path: str, served_name: str, settings: ChatEngine) -> list[str]:
    """The vLLM CLI flags for one chat model: the same flags ``vllm serve`` would take."""
    args = [
        "--model", model_path,
        "--served-model-name", served_name,
        "--max-model-len", str(settings.max_model_len),
        "--dtype", settings.dtype,
        "--tensor-parallel-size", str(settings.tensor_parallel_size),
        "--max-num-seqs", str(settings.max_num_seqs),
        "--gpu-memory-utilization", str(settings.gpu_memory_utilization),
        # docs/api.md's defaults (temperature 0.7, top_p 1) are ours, not the checkpoint's
        # generation_config; the ingress always sends them explicitly.
        "--generation-config", "vllm",
        # Structured output for tool_choice required/named and json_schema: no free
        # whitespace, so a small model cannot spend its token budget on blanks.
        "--structured-outputs-config",
        '{"backend": "xgrammar", "disable_any_whitespace": true}',
        "--disable-log-stats",
    ]
    if settings.tensor_parallel_size > 1:
        # Workers on the GPUs of the replica's placement group (one bundle per GPU).
        args += ["--distributed-executor-backend", "ray"]
    if settings.enforce_eager:
        args.append("--enforce-eager")
    if settings.tool_call_parser:
        args += ["--tool-call-parser", settings.tool_call_parser, "--enable-auto-tool-choice"]
    if settings.chat_template:
        args += ["--chat-template", settings.chat_template]
    return args + list(settings.extra_args)


def engine_env(settings: ChatEngine) -> dict[str, str]:
    """Environment every engine of ours runs with (see :meth:`VLLMChatEngine.start`)."""
    return {
        # Sized explicitly so every replica on a machine gets its own KV cache instead of a
        # share of the NUMA node's RAM (vLLM's CPU default), which a second engine would lack.
        "VLLM_CPU_KVCACHE_SPACE": str(settings.kv_cache_gib),
        # tool_choice required / named: with strict tool calling on, the hermes parser wraps
        # the call in a structural tag and SmolLM2-class models run out of tokens inside the
        # arguments; off, vLLM constrains the output to the JSON schema of the call itself
        # (the same path as response_format json_schema), which is compact and always valid.
        # Read when vLLM's tool parsers are imported, so it is set before those imports.
        "VLLM_ENFORCE_STRICT_TOOL_CALLING": "0",
    }


def standalone_server_command(model_path: str, served_name: str, settings: ChatEngine,
                              host: str, port: int) -> list[str]:
    """vLLM's own OpenAI server with the same engine flags (benchmarks compare against it).
    The ``vllm`` console script of vllm-cpu fails, so its module is run instead."""
    return [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry",
            *engine_cli_args(model_path, served_name, settings),
            "--host", host, "--port", str(port)]


class VLLMChatEngine:
    """A vLLM engine plus its OpenAI chat serving object, in this process."""

    def __init__(self, model_path: str, served_name: str, settings: ChatEngine) -> None:
        self.model_path = model_path
        self.served_name = served_name
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._engine: Any = None
        self._chat: Any = None
        self._completion: Any = None

    async def start(self) -> None:
        os.environ.update(engine_env(self.settings))  # before vLLM's imports below
        from starlette.datastructures import State
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
        from vllm.entrypoints.launchers.cli_args import (
            make_arg_parser,
            validate_parsed_serve_args,
        )
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        _refuse_what_does_not_fit()
        parser = make_arg_parser(FlexibleArgumentParser())
        args = parser.parse_args(engine_cli_args(self.model_path, self.served_name, self.settings))
        validate_parsed_serve_args(args)
        self._engine = await self._stack.enter_async_context(build_async_engine_client(args))
        state = State()
        tasks = await self._engine.get_supported_tasks()
        await init_app_state(self._engine, state, args, tasks)
        self._chat = state.openai_serving_chat
        self._completion = state.openai_serving_completion
        if self._chat is None or self._completion is None:
            raise RuntimeError(f"{self.served_name}: the engine does not support chat and "
                               "completions")
        for serving in (self._chat, self._completion):
            serving.engine_client = _EngineReportingProgress(serving.engine_client)

    async def stop(self) -> None:
        await self._stack.aclose()

    @property
    def context_length(self) -> int:
        return int(self._engine.model_config.max_model_len)

    async def check_health(self) -> None:
        """Raises if the engine process has died, so Serve replaces the replica."""
        await self._engine.check_health()

    @property
    def dead(self) -> bool:
        """The engine process has died (vLLM noticed); nothing more can run on it."""
        return self._engine is not None and bool(self._engine.errored)

    async def running_requests(self) -> int:
        """Requests the engine is working on now (for disconnect checks)."""
        processor = getattr(self._engine, "output_processor", None)
        return 0 if processor is None else int(processor.get_num_unfinished_requests())

    async def chat(self, body: dict[str, Any], shown: StreamUsage | None = None,
                   progress: Callable[[Usage], None] | None = None
                   ) -> dict[str, Any] | AsyncIterator[Chunk | APIError] | APIError:
        """Run one chat completion; ``body`` is an already-validated OpenAI request.

        Returns the reply, the stream's chunks (with their usage shown as ``shown`` says),
        both in OpenAI's shape (deployments/openai_shape.py), or the error vLLM's serving
        layer answered with. A whole reply's usage so far goes to ``progress`` at every
        engine step, so what it generated is known however the request ends.
        """
        choosing = forced_calls.choosing_request(body)
        chosen = None
        if choosing is not None:
            hidden = self._count_tokens(forced_calls.NAME_OPENING)
            choice = await self._chat_serving(choosing, progress and (
                lambda usage: progress(Usage(usage.prompt_tokens - hidden,
                                             usage.completion_tokens))))
            if isinstance(choice, APIError):
                return choice
            assert isinstance(choice, dict)
            chosen = forced_calls.chosen_tool(choice, body)
        body, framing = forced_calls.plan(body, self._count_tokens, chosen)
        result = await self._chat_serving(body, progress and (
            lambda usage: progress(framing.usage(usage))))
        if isinstance(result, dict):
            return openai_shape.reply(result, framing)
        if isinstance(result, APIError):
            return result
        return _shaped(result, openai_shape.StreamShaper(shown or StreamUsage(), framing))

    async def complete(self, body: dict[str, Any], shown: StreamUsage | None = None,
                       progress: Callable[[Usage], None] | None = None
                       ) -> dict[str, Any] | AsyncIterator[Chunk | APIError] | APIError:
        """Run one legacy completion, as :meth:`chat` runs a chat completion (vLLM's
        completion serving; several prompts are one request, their choices numbered on)."""
        from vllm.entrypoints.openai.completion.protocol import (
            CompletionRequest,
            CompletionResponse,
        )

        result = await self._run_serving(
            self._completion.create_completion, CompletionRequest, CompletionResponse, body,
            "prompt", progress)
        if isinstance(result, dict):
            return openai_shape.reply(result)
        if isinstance(result, APIError):
            return result
        choices = int(body.get("n", 1))  # a stream's choices per prompt
        return _shaped(result, openai_shape.StreamShaper(shown or StreamUsage(),
                                                         choices_per_prompt=choices))

    async def _chat_serving(self, body: dict[str, Any],
                        progress: Callable[[Usage], None] | None = None
                        ) -> dict[str, Any] | AsyncIterator[str] | APIError:
        """vLLM's chat serving on one request: its reply (``model_dump()``), its stream's SSE
        frames, or the error it answered with, in the contract's terms."""
        from vllm.entrypoints.openai.chat_completion.protocol import (
            ChatCompletionRequest,
            ChatCompletionResponse,
        )

        return await self._run_serving(
            self._chat.create_chat_completion, ChatCompletionRequest, ChatCompletionResponse,
            body, "messages", progress)

    async def _run_serving(self, serve: Callable[[Any, None], Awaitable[Any]],
                           request_type: type[Any], whole: type[Any], body: dict[str, Any],
                           prompt_field: str, progress: Callable[[Usage], None] | None
                           ) -> dict[str, Any] | AsyncIterator[str] | APIError:
        """One call of a vLLM serving layer (``serve``, on ``body`` as its ``request_type``):
        its reply (``model_dump()`` of a ``whole``), its stream's SSE frames, or the error
        it answered with, in the contract's terms (a prompt that does not fit names
        ``prompt_field``). A whole reply's progress goes to ``progress`` as the engine
        generates."""
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
        from vllm.entrypoints.serve.exception_handling.error_response import (
            create_error_response,
        )

        try:
            request = request_type.model_validate(body)
        except ValueError as exc:
            return APIError(400, str(exc))
        reporting = _progress_of_whole_reply.set(
            None if progress is None else _ProgressOfReply(progress))
        try:
            result = await serve(request, None)
        except Exception as exc:
            # vLLM's API server maps these in its exception handlers; do the same here. A
            # server-side failure stays an exception: the ingress answers it with a 500.
            result = create_error_response(exc)
            if result.error.code >= 500:
                raise
        finally:
            _progress_of_whole_reply.reset(reporting)
        if isinstance(result, ErrorResponse):
            return _failure(result.error.code, result.error.message, result.error.param, body,
                            prompt_field)
        if isinstance(result, whole):
            return dict(result.model_dump())
        return result  # type: ignore[no-any-return]

    def _count_tokens(self, text: str) -> int:
        return len(self._engine.get_tokenizer().encode(text, add_special_tokens=False))


class _ProgressOfReply:
    """A whole reply's counts so far, over every engine request it is made of (a legacy
    completion with several prompts runs one per prompt), reported whole at every step."""

    def __init__(self, report: Callable[[Usage], None]) -> None:
        self._report = report
        self._parts: list[Usage] = []

    def part(self) -> Callable[[Usage], None]:
        """Where one engine request's cumulative counts go."""
        index = len(self._parts)
        self._parts.append(Usage(0))

        def report(usage: Usage) -> None:
            self._parts[index] = usage
            self._report(Usage(sum(p.prompt_tokens for p in self._parts),
                               sum(p.completion_tokens for p in self._parts)))
        return report


# Where a whole reply's progress goes, for the request this task is running (set around the
# serving layer's call, read by _EngineReportingProgress.generate beneath it).
_progress_of_whole_reply: ContextVar[_ProgressOfReply | None] = ContextVar(
    "progress_of_whole_reply", default=None)


class _EngineReportingProgress:
    """vLLM's engine client as the serving layers see it. A whole (non-streamed) reply's
    outputs come from the engine step by step (cumulative) rather than only at the end, each
    step's counts going to the request's progress callback; the serving layer still gets one
    output holding every choice at the end. Everything else is the engine client's own."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def generate(self, prompt: Any, sampling_params: Any, *args: Any, **kwargs: Any) -> Any:
        from vllm.sampling_params import RequestOutputKind

        progress = _progress_of_whole_reply.get()
        if progress is None or getattr(sampling_params, "output_kind",
                                       None) != RequestOutputKind.FINAL_ONLY:
            return self._client.generate(prompt, sampling_params, *args, **kwargs)
        sampling_params.output_kind = RequestOutputKind.CUMULATIVE
        return _reporting(self._client.generate(prompt, sampling_params, *args, **kwargs),
                          progress.part())


async def _reporting(outputs: AsyncIterator[Any], report: Callable[[Usage], None]
                     ) -> AsyncIterator[Any]:
    """The engine's cumulative outputs, reported as they come. With ``n`` > 1 each output
    carries one choice; the latest of every choice is put together in each, as the serving
    layer reads only the last."""
    latest: dict[int, Any] = {}
    async for output in outputs:
        for choice in output.outputs:
            latest[choice.index] = choice
        output.outputs = [latest[i] for i in sorted(latest)]
        report(Usage(len(output.prompt_token_ids or ()),
                     sum(len(choice.token_ids) for choice in output.outputs)))
        yield output


async def _shaped(frames: AsyncIterator[str], shaper: openai_shape.StreamShaper
                  ) -> AsyncIterator[Chunk | APIError]:
    """The stream in OpenAI's shape. An error vLLM writes into it is the client's HTTP error
    if nothing was sent yet; later, a failure of the stream (the ingress sends its own error
    event, without the engine's words)."""
    started = False
    async for frame in frames:
        error = openai_shape.engine_error(frame)
        if error is None:
            started = True
            yield shaper.chunk(frame)
        elif not started:
            yield _failure(*error)
            return
        else:
            raise RuntimeError(f"the engine failed during the stream: {error[1]}")


def _failure(status: int, message: str, param: str | None,
             body: dict[str, Any] | None = None, prompt_field: str = "messages") -> APIError:
    grammar = _GRAMMAR_FAILURE.match(message)
    if status == 400 and grammar is not None:
        # The constrained-decoding library's words, without its log prefix and source line,
        # and the field they concern (only a json_schema format or tools give it a schema).
        answer_format = (body or {}).get("response_format") or {}
        field = "response_format" if answer_format.get("type") == "json_schema" else "tools"
        return APIError(400, f"The JSON schema in '{field}' cannot be used for constrained "
                        f"decoding: {grammar.group(1).rstrip('.')}.", param=field)
    if status == 400 and any(m in message for m in _CONTEXT_MARKERS):
        # The prompt alone, or the prompt with the completion asked for, does not fit.
        if param not in ("max_tokens", "max_completion_tokens"):
            param = prompt_field
        return APIError(status, message, param=param, code="context_length_exceeded")
    return APIError(status, message, param=param)


def _refuse_what_does_not_fit() -> None:
    """vLLM clamps a completion that would run past the context to what fits; docs/api.md
    promises a 400 instead ("Context length"). Its chat and completion serving ask
    ``get_max_tokens`` once they know the prompt's length: the check goes there. Idempotent."""
    from vllm.entrypoints.openai.chat_completion import serving as chat_serving
    from vllm.entrypoints.openai.completion import serving as completion_serving

    for serving, prompt in ((chat_serving, "the messages take"),
                            (completion_serving, "the prompt takes")):
        clamping = serving.get_max_tokens  # type: ignore[attr-defined]
        if not getattr(clamping, "refuses_overflow", False):
            serving.get_max_tokens = _refusing_overflow(  # type: ignore[attr-defined]
                clamping, prompt)


def _refusing_overflow(clamping: Callable[..., int], prompt: str) -> Callable[..., int]:
    def strict(max_model_len: int, max_tokens: int | None, input_length: int,
               *args: Any, **kwargs: Any) -> int:
        from vllm.exceptions import VLLMValidationError

        if max_tokens is not None and input_length + max_tokens > max_model_len:
            raise VLLMValidationError(
                f"This model's maximum context length is {max_model_len} tokens; {prompt} "
                f"{input_length} and the completion asks for {max_tokens} more. Ask for "
                "fewer tokens, or send a shorter prompt.",
                # max_tokens alone leaves no room for any prompt: that is the field to fix.
                parameter="max_tokens" if max_tokens >= max_model_len else None)
        return int(clamping(max_model_len, max_tokens, input_length, *args, **kwargs))

    strict.refuses_overflow = True  # type: ignore[attr-defined]
    return strict
