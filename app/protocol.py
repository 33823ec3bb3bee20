"""The wire protocol: every request and response model of the public API, in one place.

Bounds live on the fields, so a bad value is refused before any engine work
(docs/architecture.md). Requests forbid unknown fields: docs/api.md says a field that is not
supported is a 400 naming it, never silently dropped. Fields marked "extension" are beyond
OpenAI's API (docs/api.md lists them).
"""

from __future__ import annotations

import datetime
import functools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from app.errors import ParamError
from messages import ModelCard, StreamUsage

# Documented limits (docs/api.md, from OpenAI's own bounds).
MAX_STOP_SEQUENCES = 4
MAX_N = 16
MAX_TOP_LOGPROBS = 20
MAX_EMBEDDING_INPUTS = 2048
MAX_COMPLETION_PROMPTS = 2048
MAX_COMPLETION_LOGPROBS = 5
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for the legacy route
MAX_RERANK_DOCUMENTS = 1000
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


MAX_USER_CHARS = 256


class Strict(BaseModel):
    # strict: "yes" is not a boolean and "64" is not a number; JSON types are taken as sent.
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """``null`` for an optional field means "absent": its default applies (the SDKs send
        null whenever a caller passes None). A required field stays required, and an
        unknown field is still refused, null or not."""
        if not isinstance(data, dict) or None not in data.values():
            return data
        optional = _optional_fields(cls)
        return {k: v for k, v in data.items() if v is not None or k not in optional}


@functools.cache
def _optional_fields(model: type[BaseModel]) -> frozenset[str]:
    # A field with an alias is spelled by its alias only (no populate_by_name).
    return frozenset(field.alias or name for name, field in model.model_fields.items()
                     if not field.is_required())


# --- administration (extension: docs/api.md, "Administration") -----------------------------

MAX_NAME_CHARS = 200
Quota = Annotated[int, Field(ge=0)]  # 0 = unlimited
PermissionSet = Literal["GenerativeApisModelAccess", "GenerativeApisFullAccess",
                        "AllProductsFullAccess"]


class ProjectCreateRequest(Strict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    rpm: Quota = 0
    tpm: Quota = 0
    max_concurrent: Quota = 0


class ProjectUpdateRequest(Strict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)] | None = None
    rpm: Quota | None = None
    tpm: Quota | None = None
    max_concurrent: Quota | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> ProjectUpdateRequest:
        if not self.model_fields_set:
            raise ValueError("Give at least one of name, rpm, tpm, max_concurrent")
        return self


class KeyCreateRequest(Strict):
    name: Annotated[str, Field(max_length=MAX_NAME_CHARS)] | None = None
    permission_sets: Annotated[list[PermissionSet], Field(min_length=1)]
    projects: Annotated[list[Annotated[str, Field(min_length=1)]],
                        Field(min_length=1, max_length=100)] | None = None
    organization: bool = False
    expires_at: str | None = None  # ISO 8601; without a time zone, UTC

    @model_validator(mode="after")
    def _one_scope_and_a_time(self) -> KeyCreateRequest:
        if self.organization == (self.projects is not None):
            raise ParamError("projects", "give either 'projects' or 'organization': true")
        if self.expires_at is not None:
            self.expires_at_unix()
        return self

    def expires_at_unix(self) -> int | None:
        if self.expires_at is None:
            return None
        try:
            when = datetime.datetime.fromisoformat(self.expires_at)
        except ValueError:
            raise ParamError("expires_at", "must be a date and time in ISO 8601, e.g. "
                                           "2030-01-31T12:00:00Z") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return int(when.timestamp())


# --- chat messages -------------------------------------------------------------------------


class TextPart(Strict):
    type: Literal["text"]
    text: str


Content = str | Annotated[list[TextPart], Field(min_length=1)]


class FunctionCall(Strict):
    name: str
    arguments: str


class ToolCall(Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(Strict):
    role: Literal["system", "developer"]
    content: Content
    name: str | None = None


class UserMessage(Strict):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantMessage(Strict):
    role: Literal["assistant"]
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _has_content_or_calls(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class ToolMessage(Strict):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


# --- tools and output formats --------------------------------------------------------------


class FunctionDefinition(Strict):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(Strict):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class TextFormat(Strict):
    type: Literal["text"]


class JSONObjectFormat(Strict):
    type: Literal["json_object"]


class JSONSchemaResponseFormat(Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaResponseFormat, Field(discriminator="type")
]


class StreamOptions(Strict):
    # OpenAI's: usage on a trailing chunk of its own, null on every other chunk.
    include_usage: bool = False
    # extension (vLLM's spelling): cumulative usage on every chunk, on or off explicitly;
    # absent, it is on unless include_usage asks for OpenAI's protocol.
    continuous_usage_stats: bool | None = None


# --- requests ------------------------------------------------------------------------------


class ChatCompletionRequest(Strict):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # docs/api.md defaults: temperature 0.7, top_p 1 when the caller omits them.
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)  # extension
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)  # extension
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    n: int = Field(1, ge=1, le=MAX_N)  # extension
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None  # extension
    user: str | None = Field(None, max_length=MAX_USER_CHARS)  # extension: on the usage record
    # extension: false keeps the reply to at most one tool call (true, the default, any number)
    parallel_tool_calls: bool = True
    # false only: this service keeps no chat completions
    store: bool = False
    # extension (vLLM's spelling): generate exactly max_tokens, ignoring end of sequence;
    # benchmark clients (vLLM's among them) send it to fix output lengths.
    ignore_eos: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and self.top_logprobs > 0 and not self.logprobs:
            raise ParamError("top_logprobs", "'top_logprobs' requires 'logprobs' to be true")
        if self.stream_options is not None and not self.stream:
            raise ParamError("stream_options",
                             "'stream_options' is only allowed when 'stream' is true")
        if self.stop is not None and any(s == "" for s in _as_list(self.stop)):
            raise ParamError("stop", "'stop' sequences must not be empty")
        if self.logit_bias is not None:
            for token in self.logit_bias:
                if not token.isdigit():
                    raise ParamError("logit_bias",
                                     f"'logit_bias' keys must be token ids, got {token!r}")
        if self.tools is not None and not self.tools:
            raise ParamError("tools", "'tools' must not be empty; omit it instead")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ParamError(
                    "tool_choice",
                    f"'tool_choice' names function {self.tool_choice.function.name!r}, "
                    "which is not in 'tools'",
                )
        if self.tool_choice in ("auto", "required") and not self.tools:
            raise ParamError("tool_choice", f"'tool_choice' {self.tool_choice!r} requires 'tools'")
        if self.store:
            raise ParamError("store", "'store' must be false: this service keeps no chat "
                             "completions")
        if self.max_tokens is not None and self.max_completion_tokens is not None and (
                self.max_tokens != self.max_completion_tokens):
            raise ParamError("max_completion_tokens",
                             "'max_tokens' and 'max_completion_tokens' disagree; send one")
        return self

    @property
    def stream_usage(self) -> StreamUsage:
        return _stream_usage(self.stream_options)


def _stream_usage(options: StreamOptions | None) -> StreamUsage:
    """Where a stream shows its usage (docs/api.md, "Streaming and usage")."""
    options = options or StreamOptions()
    every_chunk = options.continuous_usage_stats
    if every_chunk is None:
        every_chunk = not options.include_usage
    return StreamUsage(every_chunk=every_chunk, trailing=options.include_usage)


TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class CompletionRequest(Strict):
    """``POST /v1/completions``, the legacy text-completion route on chat models: OpenAI's
    field list (docs/api.md, "Completions"); ``suffix``, ``best_of`` and the rest are a 400."""

    model: str = Field(min_length=1)
    # A string, several, or this model's own token ids (one prompt's, or several prompts').
    prompt: (str | Annotated[list[str], Field(min_length=1, max_length=MAX_COMPLETION_PROMPTS)]
             | TokenIds
             | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_COMPLETION_PROMPTS)])
    max_tokens: int = Field(DEFAULT_COMPLETION_MAX_TOKENS, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    echo: bool = False
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = Field(None, max_length=MAX_USER_CHARS)

    @model_validator(mode="after")
    def _consistent(self) -> CompletionRequest:
        if (isinstance(self.prompt, str) and not self.prompt) or (
                isinstance(self.prompt, list) and "" in self.prompt):
            raise ParamError("prompt", "a prompt must not be an empty string")
        if self.stream_options is not None and not self.stream:
            raise ParamError("stream_options",
                             "'stream_options' is only allowed when 'stream' is true")
        if self.stop is not None and any(s == "" for s in _as_list(self.stop)):
            raise ParamError("stop", "'stop' sequences must not be empty")
        for token in self.logit_bias or {}:
            if not token.isdigit():
                raise ParamError("logit_bias",
                                 f"'logit_bias' keys must be token ids, got {token!r}")
        return self

    @property
    def prompts(self) -> int:
        """How many prompts the request holds (each gets ``n`` choices)."""
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return 1
        return len(self.prompt)

    @property
    def stream_usage(self) -> StreamUsage:
        return _stream_usage(self.stream_options)


def _token_ids(value: Any) -> bool:
    """A list of integers, or a list of such lists: OpenAI's token-id input."""
    def ints(items: Any) -> bool:
        return isinstance(items, list) and bool(items) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in items)
    return ints(value) or (isinstance(value, list) and bool(value)
                           and all(ints(item) for item in value))


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


class EmbeddingRequest(Strict):
    model: str = Field(min_length=1)
    input: str | Annotated[list[str], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"  # extension
    dimensions: int | None = Field(None, ge=1)  # extension
    user: str | None = Field(None, max_length=MAX_USER_CHARS)
    # extension (vLLM's spelling): the client asks for truncation explicitly; -1 = to the
    # model's maximum sequence length, N = to at most N tokens. Absent: too long is a 400.
    truncate_prompt_tokens: int | None = Field(None, ge=-1)

    @model_validator(mode="before")
    @classmethod
    def _no_token_ids(cls, data: Any) -> Any:
        if isinstance(data, dict) and _token_ids(data.get("input")):
            raise ParamError(
                "input", "'input' holds token ids; this service takes text only: token ids "
                "are another tokenizer's and mean nothing to this model. Send the strings "
                "themselves (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)")
        return data

    @model_validator(mode="after")
    def _no_empty_strings(self) -> EmbeddingRequest:
        if any(text == "" for text in self.texts):
            raise ParamError("input", "an input must not be an empty string")
        if self.truncate_prompt_tokens == 0:
            raise ParamError("truncate_prompt_tokens",
                             "'truncate_prompt_tokens' must be -1 or at least 1")
        return self

    @property
    def texts(self) -> list[str]:
        return _as_list(self.input)


class RerankDocument(Strict):
    text: str


class RerankRequest(Strict):
    """``POST /v1/rerank`` (Scaleway's and Cohere's v1 shape)."""

    model: str = Field(min_length=1)
    query: str
    documents: list[str | RerankDocument] = Field(min_length=1,
                                                  max_length=MAX_RERANK_DOCUMENTS)
    # More than there are documents returns them all (as Cohere does).
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True
    user: str | None = Field(None, max_length=MAX_USER_CHARS)  # extension: on the usage record

    @model_validator(mode="after")
    def _no_empty_text(self) -> RerankRequest:
        _check_texts(self.query, self.texts)
        return self

    @property
    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RelevantSpans(Strict):
    mode: Literal["enabled", "disabled"]
    threshold: float | None = None
    max_spans: int | None = Field(None, ge=1)


class CohereRerankRequest(Strict):
    """``POST /v2/rerank``: exactly the fields Cohere's v2 client sends."""

    model: str = Field(min_length=1)
    query: str
    documents: list[str] = Field(min_length=1, max_length=MAX_RERANK_DOCUMENTS)
    top_n: int | None = Field(None, ge=1)
    # Cohere's: each document cut to at most this many tokens, asked for explicitly. Absent,
    # an over-long document is a 400 (Cohere's own default cuts at 4096 silently).
    max_tokens_per_doc: int | None = Field(None, ge=1)
    # Accepted only off: no model here finds spans.
    relevant_spans: RelevantSpans | None = None
    # Accepted; every request is served with the same (the highest) priority.
    priority: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _supported(self) -> CohereRerankRequest:
        _check_texts(self.query, self.documents)
        if self.relevant_spans is not None and self.relevant_spans.mode == "enabled":
            raise ParamError("relevant_spans", "'relevant_spans' cannot be enabled: no model "
                             "of this service returns relevant spans")
        return self

    @property
    def texts(self) -> list[str]:
        return self.documents


def _check_texts(query: str, documents: list[str]) -> None:
    if not query.strip():
        raise ParamError("query", "'query' must not be empty")
    for index, text in enumerate(documents):
        if not text.strip():
            raise ParamError("documents", f"documents[{index}] must not be empty")


# --- the Responses API (docs/api.md, "Responses") -----------------------------------------

MAX_METADATA_KEYS = 16  # OpenAI's bounds on ``metadata``
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


class InputText(Strict):
    type: Literal["input_text"]
    text: str


class OutputText(Strict):
    """An assistant's text sent back as input (the SDKs replay earlier output items so)."""

    type: Literal["output_text"]
    text: str
    annotations: Annotated[list[Any], Field(max_length=0)] = []
    logprobs: list[Any] | None = None


class Refusal(Strict):
    type: Literal["refusal"]
    refusal: str


PART_TYPES = ("input_text", "output_text", "refusal")
ITEM_TYPES = ("message", "function_call", "function_call_output")


def _kind(value: Any, default: str | None = None) -> str | None:
    return value.get("type", default) if isinstance(value, dict) else getattr(
        value, "type", default)


def _part_kind(value: Any) -> str | None:
    return _kind(value)


ContentPart = Annotated[
    Annotated[InputText, Tag("input_text")] | Annotated[OutputText, Tag("output_text")]
    | Annotated[Refusal, Tag("refusal")],
    Discriminator(_part_kind),
]


class MessageItem(Strict):
    """A message: ``type`` may be left out (OpenAI's "easy" input message)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallItem(Strict):
    """A call the model made earlier, replayed as input."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(Strict):
    """What the caller's function returned for ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | Annotated[list[InputText], Field(min_length=1)]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


def _item_kind(value: Any) -> str | None:
    return _kind(value, "message")


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_kind),
]


class FunctionTool(Strict):
    type: Literal["function"]
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


def _tool_kind(value: Any) -> str | None:
    return _kind(value)


ResponsesTool = Annotated[Annotated[FunctionTool, Tag("function")], Discriminator(_tool_kind)]


class NamedFunctionChoice(Strict):
    type: Literal["function"]
    name: str


class JSONSchemaTextFormat(Strict):
    type: Literal["json_schema"]
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


TextFormatConfig = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaTextFormat, Field(discriminator="type")
]


class TextConfig(Strict):
    format: TextFormatConfig = TextFormat(type="text")


class ResponsesRequest(Strict):
    """``POST /v1/responses``. Fields of OpenAI's that would change what is generated and
    that this service does not do (``reasoning``, ``truncation`` ``auto``, ``include`` of
    anything, built-in tools, ...) are a 400 naming them; their defaults are accepted."""

    model: str = Field(min_length=1)
    input: str | Annotated[list[InputItem], Field(min_length=1)]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    # The defaults of chat (docs/api.md): temperature 0.7, top_p 1.
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    parallel_tool_calls: bool = True
    text: TextConfig | None = None
    metadata: dict[str, Annotated[str, Field(max_length=MAX_METADATA_VALUE_CHARS)]] | None = (
        Field(None, max_length=MAX_METADATA_KEYS))
    user: str | None = Field(None, max_length=MAX_USER_CHARS)
    store: bool = True
    previous_response_id: str | None = Field(None, min_length=1)
    stream: bool = False
    # Accepted with the values that mean the default only (the OpenAI Agents SDK always
    # sends ``include``, an empty list when it wants nothing extra).
    include: list[str] | None = None
    truncation: Literal["disabled"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _supported_types(cls, data: Any) -> Any:
        """A tool, input item or content part of a type this service does not take is a 400
        that names it (pydantic's own message for an unknown union tag names no value)."""
        if not isinstance(data, dict):
            return data
        tools = data.get("tools")
        for i, tool in enumerate(tools if isinstance(tools, list) else []):
            if isinstance(tool, dict) and tool.get("type") != "function":
                raise ParamError(f"tools[{i}].type", f"tool type {tool.get('type')!r} is not "
                                 "supported: this service runs 'function' tools only")
        items = data.get("input")
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            if item.get("type", "message") not in ITEM_TYPES:
                raise ParamError(f"input[{i}].type", f"input item type {item.get('type')!r} "
                                 "is not supported: this service takes 'message', "
                                 "'function_call' and 'function_call_output' items")
            parts = item.get("content") if item.get("type", "message") == "message" else (
                item.get("output"))
            for j, part in enumerate(parts if isinstance(parts, list) else []):
                if isinstance(part, dict) and part.get("type") not in PART_TYPES:
                    field = "content" if item.get("type", "message") == "message" else "output"
                    raise ParamError(f"input[{i}].{field}[{j}].type",
                                     f"content type {part.get('type')!r} is not supported: "
                                     "this service takes text ('input_text', 'output_text')")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ResponsesRequest:
        if isinstance(self.input, str) and not self.input:
            raise ParamError("input", "'input' must not be an empty string")
        if self.include:
            raise ParamError("include", f"'include' {self.include!r} is not supported: this "
                             "service adds nothing to the output; send [] or omit it")
        for key in self.metadata or {}:
            if len(key) > MAX_METADATA_KEY_CHARS:
                raise ParamError("metadata", f"'metadata' keys are at most "
                                 f"{MAX_METADATA_KEY_CHARS} characters")
        # ``tools: []`` is no tools (the Agents SDK sends it for an agent without any).
        names = {t.name for t in self.tools or []}
        if isinstance(self.tool_choice, NamedFunctionChoice) and (
                self.tool_choice.name not in names):
            raise ParamError("tool_choice", f"'tool_choice' names function "
                             f"{self.tool_choice.name!r}, which is not in 'tools'")
        if self.tool_choice in ("auto", "required") and not self.tools:
            raise ParamError("tool_choice", f"'tool_choice' {self.tool_choice!r} requires 'tools'")
        return self

    @property
    def items(self) -> list[MessageItem | FunctionCallItem | FunctionCallOutputItem]:
        """The input as items (a string is one user message)."""
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=[InputText(type="input_text",
                                                                 text=self.input)])]
        return list(self.input)


class ResponseItemsQuery(Strict):
    """The query of ``GET /v1/responses/{id}/input_items``."""

    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


# --- models ------------------------------------------------------------------------------


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
