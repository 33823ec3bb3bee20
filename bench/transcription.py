"""``make bench``, speech to text: the real-time factor of ``POST /v1/audio/transcriptions``
through the whole stack against faster-whisper in-process, on the same recordings
(tests/e2e/audio) with the laptop config's settings, at 1 and 4 concurrent clients.

Real-time factor (RTF): wall time over seconds of audio transcribed; below 1 is faster than
real time. Each side runs alone on the machine (the stack is stopped while in-process runs),
and whole runs alternate stack, in-process, stack, in-process; medians are reported. Also
measured in-process: one long file with faster-whisper's batched pipeline against the plain
one, the measurement behind the laptop config's ``batch_size`` (docs/performance.md).

Writes ``bench/results/transcription.json`` and the "Speech to text" section of
``bench/REPORT.md``. ``--smoke`` runs at a tiny size.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.report import replace_section
from bench.run import ROOT, Stack, machine, process, wait_until
from deployments.builtin_models import resolve
from deployments.config import AppConfig, ModelSpec, app_args_from_serve_config

LAPTOP = ROOT / "config" / "laptop.yaml"
AUDIO = ROOT / "tests" / "e2e" / "audio"
# The short recordings (about 2.7 s each) and the long one (about 40 s of distinct sentences).
LONG = AUDIO / "paragraph.ogg"
RECORDINGS = sorted(p for p in AUDIO.iterdir()
                    if p.suffix in {".wav", ".mp3", ".ogg", ".flac"} and p != LONG)
SECTION = "## Speech to text"


def speech_spec() -> ModelSpec:
    config = AppConfig.model_validate(app_args_from_serve_config(LAPTOP))
    return next(m for m in config.models if m.task == "transcription")


def requests_for(concurrency: int, smoke: bool) -> list[Path]:
    """The files sent at a concurrency: the short recordings in turn, ``10 * c`` requests
    (each client sends ten)."""
    count = len(RECORDINGS) if smoke else 4 * concurrency * len(RECORDINGS) // 2
    return [RECORDINGS[i % len(RECORDINGS)] for i in range(count)]


def durations() -> dict[Path, float]:
    from faster_whisper import decode_audio

    return {p: len(decode_audio(str(p))) / 16000 for p in RECORDINGS}


async def _stack_load(url: str, key: str, model: str, files: list[Path], concurrency: int
                      ) -> float:
    """Seconds of wall time for ``files`` sent by ``concurrency`` clients."""
    queue = list(files)
    async with httpx.AsyncClient(timeout=300, headers={"Authorization": f"Bearer {key}"}
                                 ) as client:
        async def worker() -> None:
            while queue:
                path = queue.pop()
                reply = await client.post(f"{url}/v1/audio/transcriptions",
                                          data={"model": model},
                                          files={"file": (path.name, path.read_bytes())})
                reply.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def in_process_model(spec: ModelSpec) -> Any:
    """faster-whisper as the replica builds it: the config's settings, every core (the
    replica's threads under the CPU layout)."""
    from faster_whisper import WhisperModel

    settings = spec.transcription
    assert settings is not None
    return WhisperModel(resolve(spec.source), device=settings.device,
                        compute_type=settings.compute_type,
                        cpu_threads=settings.cpu_threads or os.cpu_count() or 1,
                        num_workers=settings.num_workers)


def _in_process_load(model: Any, beam_size: int, files: list[Path], concurrency: int) -> float:
    from faster_whisper import decode_audio

    def one(path: Path) -> None:
        # Decoding is part of the work on both sides: the replica decodes the upload.
        audio = decode_audio(io.BytesIO(path.read_bytes()))
        list(model.transcribe(audio, language="en", beam_size=beam_size)[0])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - start


def batched_vs_plain(spec: ModelSpec, smoke: bool) -> dict[str, Any]:
    """The long recording through the plain pipeline and the batched one (batch 8): RTF of
    each, and what each heard (the batched pipeline decodes each window on its own)."""
    from faster_whisper import BatchedInferencePipeline, decode_audio

    audio = decode_audio(str(LONG))
    seconds = len(audio) / 16000
    model = in_process_model(spec)
    beam = spec.transcription.beam_size if spec.transcription else 5
    out: dict[str, Any] = {"audio_seconds": round(seconds, 1)}
    for name, run in (
            ("plain", lambda: list(model.transcribe(audio, language="en", beam_size=beam)[0])),
            ("batched_8", lambda: list(BatchedInferencePipeline(model).transcribe(
                audio, language="en", beam_size=beam, batch_size=8)[0]))):
        times = []
        for _ in range(1 if smoke else 3):
            start = time.perf_counter()
            segments = run()
            times.append(time.perf_counter() - start)
        out[f"{name}_rtf"] = statistics.median(times) / seconds
        out[f"{name}_text"] = "".join(s.text for s in segments).strip()
    return out


def measure(smoke: bool, workdir: Path) -> dict[str, Any]:
    spec = speech_spec()
    assert spec.transcription is not None
    lengths = durations()
    concurrencies = [1, 4]
    ours: list[dict[int, float]] = []
    theirs: list[dict[int, float]] = []
    stack = Stack(workdir)
    probe = RECORDINGS[0]
    chat = next(m.id for m in AppConfig.model_validate(
        app_args_from_serve_config(LAPTOP)).models if m.task == "chat")
    chat_probe = {"model": chat, "messages": [{"role": "user", "content": "Hi"}],
                  "max_tokens": 1}
    for run in range(1 if smoke else 2):
        with process(stack.command(), workdir / f"speech-stack-{run}.log", stack.env):
            wait_until(lambda: httpx.post(
                f"{stack.url}/v1/audio/transcriptions", data={"model": spec.id},
                files={"file": (probe.name, probe.read_bytes())}, timeout=60,
                headers={"Authorization": f"Bearer {stack.key}"}).status_code == 200,
                900, "the stack")
            # The whole app, not only this model: the chat engine's start takes the CPU for
            # a minute after the speech model answers, and would be measured with it.
            wait_until(lambda: httpx.post(
                f"{stack.url}/v1/chat/completions", timeout=30, json=chat_probe,
                headers={"Authorization": f"Bearer {stack.key}"}).status_code == 200,
                900, "the chat model")
            ours.append({c: _rtf(asyncio.run(_stack_load(
                stack.url, stack.key, spec.id, requests_for(c, smoke), c)),
                requests_for(c, smoke), lengths) for c in concurrencies})
        model = in_process_model(spec)
        _in_process_load(model, spec.transcription.beam_size, RECORDINGS[:1], 1)  # warm-up
        theirs.append({c: _rtf(_in_process_load(model, spec.transcription.beam_size,
                                                requests_for(c, smoke), c),
                               requests_for(c, smoke), lengths) for c in concurrencies})
        del model
    rows = [{"concurrency": c, "requests": len(requests_for(c, smoke)),
             "stack_rtf": statistics.median(r[c] for r in ours),
             "in_process_rtf": statistics.median(r[c] for r in theirs)} for c in concurrencies]
    for row in rows:
        row["ratio"] = row["stack_rtf"] / row["in_process_rtf"]
    return {"machine": machine(), "smoke": smoke, "model": spec.id,
            "beam_size": spec.transcription.beam_size, "runs": rows,
            "batched_vs_plain": batched_vs_plain(spec, smoke)}


def _rtf(wall_s: float, files: list[Path], lengths: dict[Path, float]) -> float:
    return wall_s / sum(lengths[p] for p in files)


def report_section(results: dict[str, Any]) -> str:
    b = results["batched_vs_plain"]
    lines = [
        SECTION, "",
        f"`{results['model']}` (beam {results['beam_size']}), the recordings of "
        "tests/e2e/audio (about 2.7 s each), through `POST /v1/audio/transcriptions` "
        "against faster-whisper in-process with the same settings, decoding included; each "
        "side alone, runs alternating, medians. Real-time factor (RTF) = wall time / audio "
        "seconds: lower is faster. Written by bench/transcription.py"
        + (" (**smoke run: not a measurement**)." if results["smoke"] else "."), "",
        "| clients | requests | stack RTF | in-process RTF | stack / in-process |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['concurrency']} | {r['requests']} | {r['stack_rtf']:.3f} | "
              f"{r['in_process_rtf']:.3f} | {r['ratio']:.2f} |" for r in results["runs"]]
    lines += ["", (f"One {b['audio_seconds']} s file in-process: plain pipeline RTF "
                   f"{b['plain_rtf']:.3f}, batched pipeline (batch 8, with its voice-activity "
                   f"filter) RTF {b['batched_8_rtf']:.3f}."), ""]
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> None:
    """Replaces the section in REPORT.md (bench/run.py writes the rest), or appends it."""
    replace_section(out, SECTION, report_section(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--out", type=Path, default=ROOT / "bench",
                        help="where results/transcription.json and REPORT.md go")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        results = measure(args.smoke, Path(tmp))
    out: Path = args.out
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "transcription.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, out)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
