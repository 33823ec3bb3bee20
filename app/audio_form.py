"""Reading ``POST /v1/audio/transcriptions``: OpenAI's ``multipart/form-data`` upload, the
whole body bounded in size and time, every field checked; the first problem is a 400 naming
the field (docs/api.md, "Audio transcriptions").

The size limit is counted on the bytes as they arrive, whatever ``Content-Length`` says, so an
oversized upload is refused without being read into memory. Starlette's parser (with
``python-multipart``) keeps the file part in a temporary file that spills to disk past 1 MB.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from typing import Literal, cast

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from app.errors import APIError, bad_request

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("segment", "word")
# The fields of OpenAI's form this service takes; the SDKs send the list field with "[]".
FIELDS = {"file", "model", "language", "prompt", "response_format", "temperature",
          "timestamp_granularities[]", "timestamp_granularities", "stream"}
MAX_PROMPT_CHARS = 4096  # the model counts the prompt's tokens; this bounds the work before
ISO_639_1 = re.compile(r"^[a-z]{2}$")


@dataclass(frozen=True)
class TranscriptionForm:
    audio: bytes
    filename: str
    model: str
    language: str | None = None
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = 0.0
    granularities: frozenset[str] = field(default_factory=frozenset)


async def read_transcription_form(request: Request, max_bytes: int, timeout_s: float
                                  ) -> TranscriptionForm:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise APIError(415, "Content-Type must be multipart/form-data (a file upload), got "
                       f"'{content_type}'.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    bounded = Request(request.scope, _bounded_receive(request, max_bytes))
    try:
        async with asyncio.timeout(timeout_s):
            # One file more than the form takes, so that a second is named in the 400.
            form = await bounded.form(max_files=2, max_fields=len(FIELDS) + 4)
            try:
                return await _validated(form)
            finally:
                await form.close()
    except TimeoutError:
        raise APIError(408, f"The request body did not arrive within {timeout_s:g} s.",
                       code="body_timeout") from None
    except HTTPException as exc:  # the multipart parser's own refusals
        raise bad_request(f"The multipart body is malformed: {exc.detail}") from None


def _bounded_receive(request: Request, max_bytes: int):  # type: ignore[no-untyped-def]
    received = 0
    receive = request.receive

    async def bounded() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise _too_large(max_bytes)
        return message

    return bounded


async def _validated(form: FormData) -> TranscriptionForm:
    values: dict[str, str] = {}
    granularities: list[str] = []
    upload: UploadFile | None = None
    for name, value in form.multi_items():
        if name not in FIELDS:
            raise bad_request(f"Unrecognized request argument supplied: {name}", param=name)
        if name == "file":
            if upload is not None:
                raise bad_request("'file' was given more than once.", param="file")
            if not isinstance(value, UploadFile):
                raise bad_request("'file' must be a file upload, not a text field.",
                                  param="file")
            upload = value
        elif isinstance(value, UploadFile):
            raise bad_request(f"'{name}' must be a text field, not a file.", param=name)
        elif name.startswith("timestamp_granularities"):
            granularities.append(value)
        elif name in values:
            raise bad_request(f"'{name}' was given more than once.", param=name)
        else:
            values[name] = value
    if upload is None:
        raise bad_request("'file' is required: the audio to transcribe.", param="file")
    model = values.get("model", "")
    if not model:
        raise bad_request("'model' is required.", param="model")
    audio = await upload.read()
    if not audio:
        raise bad_request(f"The file '{upload.filename or 'file'}' is empty.", param="file",
                          code="invalid_file")
    response_format = values.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise bad_request(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}; "
                          f"got '{response_format}'.", param="response_format")
    if values.get("stream", "false").lower() != "false":
        raise bad_request("'stream' is not supported for transcriptions; the whole "
                          "transcript comes in one reply.", param="stream")
    return TranscriptionForm(
        audio=audio, filename=upload.filename or "file", model=model,
        language=_language(values.get("language")), prompt=_prompt(values.get("prompt")),
        response_format=cast(ResponseFormat, response_format),
        temperature=_temperature(values.get("temperature")),
        granularities=_granularities(granularities, response_format))


def _language(value: str | None) -> str | None:
    if not value:
        return None
    if not ISO_639_1.match(value):
        raise bad_request(f"'language' must be an ISO-639-1 code such as 'en'; got '{value}'.",
                          param="language")
    return value


def _prompt(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_PROMPT_CHARS:
        raise bad_request(f"'prompt' is {len(value)} characters long; at most "
                          f"{MAX_PROMPT_CHARS}.", param="prompt")
    return value or None


def _temperature(value: str | None) -> float:
    if value is None or value == "":
        return 0.0
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= 1:  # NaN fails too
        raise bad_request(f"'temperature' must be a number from 0 to 1; got '{value}'.",
                          param="temperature")
    return number


def _granularities(given: list[str], response_format: str) -> frozenset[str]:
    for value in given:
        if value not in GRANULARITIES:
            raise bad_request(f"'timestamp_granularities[]' takes 'segment' and 'word'; got "
                              f"'{value}'.", param="timestamp_granularities")
    if given and response_format != "verbose_json":
        raise bad_request("'timestamp_granularities[]' needs response_format "
                          "'verbose_json'.", param="timestamp_granularities")
    return frozenset(given)


def _too_large(max_bytes: int) -> APIError:
    return APIError(413, f"The upload is larger than the limit of {max_bytes} bytes "
                    f"({max_bytes / 2**20:g} MB).")
