"""``POST /v1/audio/transcriptions``: an audio upload, transcribed by a transcription model
and answered in the response format asked for; metered in seconds of audio."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.audio_form import TranscriptionForm, read_transcription_form
from app.services import services_of
from app.transcripts import shaped
from messages import TranscriptionJob


def transcription_job(form: TranscriptionForm) -> TranscriptionJob:
    return TranscriptionJob(audio=form.audio, filename=form.filename, language=form.language,
                            prompt=form.prompt, temperature=form.temperature,
                            word_timestamps="word" in form.granularities)


async def transcriptions(request: Request) -> Response:
    services = services_of(request)
    # Who calls, before the body is read: a caller without a key learns nothing of it.
    who = await services.caller(request, "model")
    limits = services.limits
    form = await read_transcription_form(request, limits.max_audio_bytes, limits.body_timeout_s)
    model = await services.check_task(request, form.model, "transcription")
    async with services.books(request, who, model, None) as books:
        await books.admit(lambda: 0)  # the request quota; a transcription spends no tokens
        reply = await books.within_deadline(
            services.models.transcribe(model, transcription_job(form)))
        return books.respond(reply.usage,
                             shaped(form, reply.body, reply.usage.audio_seconds))


ROUTES = [Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])]
