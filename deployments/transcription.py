"""Speech-to-text deployment: Whisper on faster-whisper (CTranslate2).

The replica gets the uploaded file as it was sent, decodes it with PyAV (through
faster-whisper's ``decode_audio``; PyAV's wheel bundles FFmpeg), and returns the whole
transcript: text, language, duration, segments and, if asked, words. The ingress shapes it
into the response format the client asked for (app/transcripts.py). A file that does not
decode, a language the model cannot transcribe or a prompt longer than Whisper's prompt
window is the client's 400, returned as an APIError.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from typing import Any

from ray import serve

from deployments.builtin_models import resolve
from deployments.config import ModelSpec
from launch.cpu_layout import use_all_cpus
from messages import APIError, ModelCard, Reply, TranscriptionJob, Usage

logger = logging.getLogger("ray.serve")

SAMPLE_RATE = 16000  # what Whisper listens at
# OpenAI's temperature 0: start greedy and raise the temperature when the decoded text looks
# wrong (too repetitive, too unlikely), as Whisper's own transcribe() does.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def transcribe_threads(configured: int | None, layout_cpus: set[int] | None) -> int:
    """CTranslate2's threads per transcription; 0 leaves CTranslate2's own choice (Ray's
    OMP_NUM_THREADS, 1 for a fractional num_cpus). Under the CPU layout the replica may use
    every core, as the embedding replicas do."""
    if configured is not None:
        return configured
    return len(layout_cpus) if layout_cpus else 0


@serve.deployment
class TranscriptionDeployment:
    def __init__(self, spec: dict[str, Any]) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        cpus = use_all_cpus()
        self.spec = ModelSpec.model_validate(spec)
        assert self.spec.transcription is not None
        self.settings = settings = self.spec.transcription
        self.model = WhisperModel(
            resolve(self.spec.source), device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=transcribe_threads(settings.cpu_threads, cpus),
            num_workers=settings.num_workers)
        self.batched = (BatchedInferencePipeline(self.model)
                        if settings.batch_size is not None else None)
        self.multilingual = bool(self.model.model.is_multilingual)
        self.languages = frozenset(self.model.supported_languages)
        # Whisper's prompt window: half its text context, less the start-of-prompt token.
        self.max_prompt_tokens = self.model.max_length // 2 - 1
        self.created = int(time.time())
        # At most num_workers transcriptions at once; the rest wait their turn here.
        self._slots = asyncio.Semaphore(settings.num_workers)

    async def describe(self) -> ModelCard:
        return ModelCard(id=self.spec.id, created=self.created, owned_by=self.spec.owned_by,
                         task="transcription", context_length=self.model.max_length)

    def _refusal(self, job: TranscriptionJob) -> APIError | None:
        if job.language is not None and job.language not in self.languages:
            which = ("English only ('en')" if not self.multilingual
                     else f"these languages: {', '.join(sorted(self.languages))}")
            return APIError(400, f"{self.spec.id} transcribes {which}; got language "
                            f"'{job.language}'.", param="language")
        if job.prompt:
            tokens = len(self.model.hf_tokenizer.encode(" " + job.prompt.strip(),
                                                        add_special_tokens=False).ids)
            if tokens > self.max_prompt_tokens:
                return APIError(400, f"'prompt' is {tokens} tokens long; {self.spec.id} takes "
                                f"at most {self.max_prompt_tokens}.", param="prompt")
        return None

    async def transcribe(self, job: TranscriptionJob) -> Reply | APIError:
        refusal = self._refusal(job)
        if refusal is not None:
            return refusal
        # A request cancelled (its deadline passed, its client left) stops at the next
        # 30-second window: the thread cannot be interrupted, but it looks between windows.
        cancelled = threading.Event()
        async with self._slots:
            try:
                # Decoding and the model hold the CPU; a thread keeps the replica answering.
                reply = await asyncio.to_thread(self._transcribe, job, cancelled)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        assert reply is not None  # None only once cancelled
        return reply

    def _decoded(self, job: TranscriptionJob) -> Any:
        from faster_whisper import decode_audio

        try:
            audio = decode_audio(io.BytesIO(job.audio), sampling_rate=SAMPLE_RATE)
        # PyAV's errors (av.FFmpegError is a ValueError) for bytes that are not audio it
        # knows; IndexError for a container without an audio stream.
        except (ValueError, IndexError) as exc:
            logger.info("undecodable upload %r: %r", job.filename, exc)
            return APIError(400, f"The file '{job.filename}' could not be decoded as audio "
                            "(supported: flac, mp3, mp4, mpeg, mpga, m4a, ogg, oga, wav, webm).",
                            param="file", code="invalid_file")
        if len(audio) == 0:
            return APIError(400, f"The file '{job.filename}' contains no audio.", param="file",
                            code="invalid_file")
        return audio

    def _transcribe(self, job: TranscriptionJob, cancelled: threading.Event
                    ) -> Reply | APIError | None:
        audio = self._decoded(job)
        if isinstance(audio, APIError):
            return audio
        options: dict[str, Any] = {
            "language": job.language or (None if self.multilingual else "en"),
            "initial_prompt": job.prompt or None,
            "temperature": FALLBACK_TEMPERATURES if job.temperature == 0 else job.temperature,
            "beam_size": self.settings.beam_size,
            "word_timestamps": job.word_timestamps,
        }
        if self.batched is not None:
            segments, info = self.batched.transcribe(
                audio, batch_size=self.settings.batch_size, **options)
        else:
            segments, info = self.model.transcribe(audio, **options)
        pieces = []
        for segment in segments:  # the generator decodes a window at a time, as it is read
            if cancelled.is_set():
                return None
            pieces.append(segment)
        duration = round(float(info.duration), 2)
        body: dict[str, Any] = {
            "text": "".join(s.text for s in pieces).strip(),
            "language": info.language,
            "duration": duration,
            "segments": [
                {"id": i, "seek": s.seek, "start": round(s.start, 2), "end": round(s.end, 2),
                 "text": s.text, "tokens": list(s.tokens), "temperature": s.temperature,
                 "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                 "no_speech_prob": s.no_speech_prob}
                for i, s in enumerate(pieces)
            ],
        }
        if job.word_timestamps:
            body["words"] = [{"word": w.word.strip(), "start": round(w.start, 2),
                              "end": round(w.end, 2)}
                             for s in pieces for w in (s.words or [])]
        return Reply(body, Usage(0, 0, audio_seconds=duration))
