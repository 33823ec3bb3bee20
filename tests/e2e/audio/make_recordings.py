"""Makes the speech recordings the transcription tests send, with Debian's espeak-ng
(``apt-get install espeak-ng``) and PyAV (for the compressed formats).

Run from the repository root: ``python -m tests.e2e.audio.make_recordings``. Each phrase is
spoken once into a WAV; the other formats are the same recording re-encoded, so every file
says the same words. The files are committed; this script makes them again.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import av

HERE = Path(__file__).resolve().parent
# (file stem, what is said): short, so the files stay small; words Whisper tiny.en hears well.
PHRASES = {
    "weather": "The weather today is sunny and warm.",
    "numbers": "Please call me back tomorrow morning.",
}
# A longer recording of distinct sentences (about 40 s, Opus at 24 kbit/s to stay small): the
# benchmark's long file (bench/transcription.py), more than one 30-second window of Whisper.
PARAGRAPH = (
    "Good morning everyone, and thank you for joining the weekly planning meeting. "
    "First, the new office opens on the fifth of March, near the central station. "
    "Second, the budget for the spring campaign was approved on Tuesday. "
    "Maria will send the final numbers to the finance team before Friday. "
    "The website moves to the new servers next month, so expect a short outage at night. "
    "Customer support answered more calls than ever in January, and waiting times fell. "
    "Please book your holidays for the summer before the end of April. "
    "Finally, the team lunch is on Thursday at noon, in the garden if the weather is good."
)
# Re-encodings of the "weather" recording: container -> (audio codec, suffix).
# Opus takes 48 kHz only.
ENCODINGS = {"mp3": ("mp3", "libmp3lame", 16000), "ogg": ("ogg", "libopus", 48000),
             "flac": ("flac", "flac", 16000)}


def speak(text: str, out: Path) -> None:
    # 16 kHz mono is what Whisper listens at; -s 150 words a minute, a plain voice.
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text],
                       check=True)
        reencode(raw, out, "wav", "pcm_s16le", rate=16000)


def reencode(source: Path, out: Path, container: str, codec: str, rate: int = 16000,
             bit_rate: int | None = None) -> None:
    with av.open(str(source)) as inp, av.open(str(out), "w", format=container) as dst:
        stream = dst.add_stream(codec, rate=rate, layout="mono")
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        resampler = av.AudioResampler(format=stream.codec_context.format or "s16",
                                      layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            for piece in resampler.resample(frame):
                for packet in stream.encode(piece):
                    dst.mux(packet)
        for piece in resampler.resample(None):
            for packet in stream.encode(piece):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)


def main() -> None:
    for stem, text in PHRASES.items():
        speak(text, HERE / f"{stem}.wav")
    for suffix, (container, codec, rate) in ENCODINGS.items():
        reencode(HERE / "weather.wav", HERE / f"weather.{suffix}", container, codec, rate)
    with tempfile.TemporaryDirectory() as tmp:
        spoken = Path(tmp) / "paragraph.wav"
        speak(PARAGRAPH, spoken)
        reencode(spoken, HERE / "paragraph.ogg", "ogg", "libopus", 48000, bit_rate=24000)


if __name__ == "__main__":
    main()
