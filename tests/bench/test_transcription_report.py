"""The speech-to-text section of bench/REPORT.md: added after what bench/run.py wrote, and
replaced, not repeated, by the next run."""

from __future__ import annotations

from pathlib import Path

from bench.transcription import SECTION, write_report


def results(rtf: float) -> dict[str, object]:
    return {"machine": "m", "smoke": False, "model": "openai/whisper-tiny.en:int8",
            "beam_size": 5,
            "runs": [{"concurrency": c, "requests": 10 * c, "stack_rtf": rtf,
                      "in_process_rtf": rtf / 2, "ratio": 2.0} for c in (1, 4)],
            "batched_vs_plain": {"audio_seconds": 60.0, "plain_rtf": 0.3, "batched_8_rtf": 0.1}}


def test_the_section_follows_the_report_and_is_replaced_by_the_next_run(tmp_path: Path) -> None:
    report = tmp_path / "REPORT.md"
    report.write_text("# Benchmarks\n\n## Chat\n\nrows\n")
    write_report(results(0.5), tmp_path)
    write_report(results(0.25), tmp_path)
    text = report.read_text()
    assert text.count(SECTION) == 1 and text.index("## Chat") < text.index(SECTION)
    assert "| 4 | 40 | 0.250 | 0.125 | 2.00 |" in text and "0.500" not in text
    assert "batched pipeline (batch 8, with its voice-activity filter) RTF 0.100" in text


def test_a_run_of_the_main_benchmark_keeps_the_section(tmp_path: Path) -> None:
    """bench/run.py rewrites the report whole: the other benchmarks' sections stay."""
    import json

    from bench.report import write_report as write_main_report

    latest = json.loads((Path(__file__).parents[2] / "bench" / "results" /
                         "latest.json").read_text())
    write_main_report(latest, tmp_path)
    write_report(results(0.5), tmp_path)
    write_main_report(latest, tmp_path)
    write_main_report(latest, tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    assert text.count(SECTION) == 1 and text.count("## Chat: full stack") == 1
    assert text.index("## Ingress overhead") < text.index(SECTION)
    assert "| 4 | 40 | 0.500 | 0.250 | 2.00 |" in text
