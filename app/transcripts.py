"""A transcript in the response format the client asked for, in OpenAI's shapes: ``json``
(text and usage), ``text``, ``srt``, ``vtt`` and ``verbose_json`` (language, duration,
segments and/or words, usage). The replica sends the whole transcript once; only its shape
depends on the request."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from app.audio_form import TranscriptionForm


def usage_of(seconds: float) -> dict[str, Any]:
    """OpenAI's usage of a transcription billed by duration."""
    return {"type": "duration", "seconds": seconds}


def shaped(form: TranscriptionForm, transcript: dict[str, Any], seconds: float) -> Response:
    text: str = transcript["text"]
    segments: list[dict[str, Any]] = transcript["segments"]
    if form.response_format == "json":
        return JSONResponse({"text": text, "usage": usage_of(seconds)})
    if form.response_format == "text":
        return PlainTextResponse(text + "\n")
    if form.response_format == "srt":
        return PlainTextResponse(srt(segments))
    if form.response_format == "vtt":
        return Response(vtt(segments), media_type="text/vtt")
    body: dict[str, Any] = {"task": "transcribe", "language": transcript["language"],
                            "duration": transcript["duration"], "text": text}
    if not form.granularities or "segment" in form.granularities:
        body["segments"] = segments
    if "word" in form.granularities:
        body["words"] = transcript.get("words", [])
    body["usage"] = usage_of(seconds)
    return JSONResponse(body)


def timestamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS,mmm`` (SubRip) or ``HH:MM:SS.mmm`` (WebVTT)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def srt(segments: list[dict[str, Any]]) -> str:
    return "".join(
        f"{i}\n{timestamp(s['start'], ',')} --> {timestamp(s['end'], ',')}\n"
        f"{s['text'].strip()}\n\n"
        for i, s in enumerate(segments, start=1))


def vtt(segments: list[dict[str, Any]]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(s['start'], '.')} --> {timestamp(s['end'], '.')}\n{s['text'].strip()}\n\n"
        for s in segments)
