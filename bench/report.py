"""bench/REPORT.md and its PNG plots, from the results of bench/run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chat = results["details"]["chat"]
    c = [r["concurrency"] for r in chat]
    names = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, title in zip(axes, ("output_throughput", "median_ttft_ms", "median_itl_ms"),
                              ("output tokens/s", "TTFT p50 (ms)", "ITL p50 (ms)"),
                              strict=True):
        ax.plot(c, [r[f"stack_{key}"] for r in chat], "o-", label="full stack")
        ax.plot(c, [r[f"vllm_{key}"] for r in chat], "s--", label="vLLM's own server")
        ax.set_xscale("log", base=2)
        ax.set_xticks(c, [str(x) for x in c])
        ax.set_xlabel("concurrency")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "chat.png", dpi=100)
    names.append("chat.png")
    plt.close(fig)

    emb = results["details"]["embeddings"]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    labels = [f"in-process\nbatch {b}" for b in emb["in_process_sentences_per_s"]]
    values = list(emb["in_process_sentences_per_s"].values())
    for r in emb["runs"]:
        labels += [f"endpoint\n{r['concurrency']} cl.", f"bare HTTP\n{r['concurrency']} cl."]
        values += [r["stack_sentences_per_s"], r["floor_sentences_per_s"]]
    ax.bar(labels, values, color=["#999"] * len(emb["in_process_sentences_per_s"])
           + ["#1f77b4", "#ff7f0e"] * len(emb["runs"]))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel("sentences/s")
    ax.set_title("Embeddings")
    fig.tight_layout()
    fig.savefig(out / "embeddings.png", dpi=100)
    names.append("embeddings.png")
    plt.close(fig)
    return names


def _alternation(runs_a_side: int) -> str:
    """How whole runs took turns: "A, B, A, B" for two runs a side."""
    return ", ".join(["A, B"] * runs_a_side) + f" ({runs_a_side} runs a side)"


def write_report(results: dict[str, Any], out: Path) -> None:
    plots = _plots(results, out)
    d = results["details"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {results['machine']}. Written by `make bench` (bench/run.py); "
        + ("**smoke run (tiny sizes): not a measurement**." if results["smoke"] else
           "each side runs alone on the machine (the stack is stopped while a baseline "
           "runs, and the other way round); whole runs alternate "
           f"{_alternation(d['runs_a_side'])}; medians shown."),
        "",
        "| key | value | measured at |",
        "|---|---|---|",
    ]
    for key in ("chat_throughput_ratio", "chat_ttft_p50_ratio", "chat_itl_p50_ratio",
                "embed_throughput_ratio_vs_best_batch", "embed_http_floor_ratio_vs_best_batch",
                "embed_batch_ceiling_ratio_vs_best_batch", "ingress_overhead_ms_p50",
                "cold_start_s"):
        item = results[key]
        where = ", ".join(f"{k} {v}" for k, v in item.items() if k != "value")
        lines.append(f"| `{key}` | {item['value']:.3f} | {where} |")
    lines += ["", "## Embeddings: the stack vs Infinity", "",
              ("Infinity (`infinity-emb`, bench/infinity-requirements.txt; torch engine, batches "
               "of up to 32) on the same model folder, the same closed-loop client "
               "(bench/infinity.py), each alone on the machine; stack / Infinity. Goals: "
               "throughput >= 1.0, p50 <= 1.2."), "",
              "| key | stack / Infinity | clients | sentences per request | stack | Infinity |",
              "|---|---|---|---|---|---|"]
    for key in ("embed_throughput_ratio_vs_infinity", "embed_p50_ratio_vs_infinity",
                "embed_batch16_throughput_ratio_vs_infinity",
                "embed_batch16_p50_ratio_vs_infinity"):
        item = results[key]
        unit = "p50_ms" if "p50" in key else "sentences_per_s"
        shown = "skipped: " + item["skipped"] if item["value"] is None else f"{item['value']:.3f}"
        peer = item.get(f"infinity_{unit}")
        lines.append(f"| `{key}` | {shown} | {item['concurrency']} "
                     f"| {item['sentences_per_request']} | {item[f'stack_{unit}']:.1f} "
                     f"{'ms' if unit == 'p50_ms' else 'sentences/s'} "
                     f"| {'-' if peer is None else f'{peer:.1f}'} |")
    lines += ["", "## Chat: full stack vs vLLM's own server", "",
              ("| concurrency | requests per run | stack tok/s | vLLM tok/s | ratio "
               "| TTFT p50 stack / vLLM (ms) | ITL p50 stack / vLLM (ms) "
               "| TTFT p99 stack / vLLM (ms) | ITL p99 stack / vLLM (ms) |"),
              "|---|---|---|---|---|---|---|---|---|"]
    for r in d["chat"]:
        lines.append(
            f"| {r['concurrency']} | {r['prompts']} | {r['stack_output_throughput']:.1f} "
            f"| {r['vllm_output_throughput']:.1f} | {r['output_throughput_ratio']:.3f} "
            f"| {r['stack_median_ttft_ms']:.1f} / {r['vllm_median_ttft_ms']:.1f} "
            f"| {r['stack_median_itl_ms']:.1f} / {r['vllm_median_itl_ms']:.1f} "
            f"| {r['stack_p99_ttft_ms']:.1f} / {r['vllm_p99_ttft_ms']:.1f} "
            f"| {r['stack_p99_itl_ms']:.1f} / {r['vllm_p99_itl_ms']:.1f} |")
    e = d["embeddings"]
    lines += ["", "## Embeddings: endpoint vs in-process `SentenceTransformer.encode`", "",
              "| in-process batch | sentences/s |", "|---|---|"]
    lines += [f"| {b} | {v:.1f} |" for b, v in e["in_process_sentences_per_s"].items()]
    clients = e["ratio_concurrency"]
    lines += ["", (f"{clients} clients sending one sentence each can never form a batch larger "
                   f"than {clients}: in-process encode at that batch, with no HTTP at all, is "
                   f"{e['ceiling_ratio_vs_best_batch']:.3f} of the best batch "
                   f"({e['best_batch']}), the most any server reaches at that client count, up "
                   "to measurement noise (`embed_batch_ceiling_ratio_vs_best_batch`).")]
    lines += ["", ("The same client and sentences against the endpoint and against a bare "
                   "starlette server holding the model with a batcher (bench/embedding_floor.py): "
                   "what HTTP and the client cost on this machine before any of the stack."), "",
              "| clients | endpoint sentences/s | bare HTTP server sentences/s |",
              "|---|---|---|"]
    lines += [f"| {r['concurrency']} | {r['stack_sentences_per_s']:.1f} "
              f"| {r['floor_sentences_per_s']:.1f} |" for r in e["runs"]]
    i = d["ingress"]
    lines += ["", "## Ingress overhead", "",
              (f"{i['route']} at concurrency {i['concurrency']}: stack {i['stack_rps']:.0f} "
              f"req/s, p50 {i['stack_p50_ms']:.1f} ms; bare starlette {i['bare_rps']:.0f} "
              f"req/s, p50 {i['bare_p50_ms']:.1f} ms."), ""]
    lines += [f"![{p}]({p})" for p in plots]
    report = out / "REPORT.md"
    own = {line for line in lines if line.startswith("## ")}
    kept = "".join(f"\n{section}\n" for section in _sections_of_others(report, own))
    report.write_text("\n".join(lines) + "\n" + kept)


def _sections_of_others(report: Path, own: set[str]) -> list[str]:
    """The sections the other benchmarks put in the report (bench/transcription.py,
    bench/rerank.py, bench/responses_state.py: each replaces its own), kept when bench/run.py
    rewrites the rest: a run of bench/run.py alone must not drop them."""
    if not report.exists():
        return []
    sections = ["## " + part.rstrip("\n") for part in report.read_text().split("\n## ")[1:]]
    return [s for s in sections if s.split("\n", 1)[0] not in own]


def replace_section(out: Path, title: str, section: str) -> None:
    """Puts ``section`` (which starts with the heading ``title``) into out/REPORT.md in place
    of the section of that title, or appends it: bench/run.py writes the rest of the report,
    the other benchmarks one section each."""
    report = out / "REPORT.md"
    text = report.read_text() if report.exists() else "# Benchmarks\n"
    head, found, tail = text.partition(title)
    rest = tail[tail.find("\n## "):] if found and "\n## " in tail else ""
    report.write_text(head.rstrip("\n") + "\n\n" + section + rest.lstrip("\n"))
