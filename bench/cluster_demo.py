"""``make cluster-demo``: the app on a simulated multi-node GPU cluster, driven by Ray's own
autoscaler, under load and under faults.

Ray's ``fake_multinode`` node provider starts worker "nodes" (each a raylet of its own) on
this machine. Their node type advertises one GPU, and the chat model's replicas each need
one (``config/cluster-demo.yaml``), so every replica Serve adds under load makes the
autoscaler start a node, and every replica removed after the load lets it stop one. The
engine is the real vLLM engine on the built-in model.

The run, with a timeline sampled every couple of seconds (nodes, replicas per node,
requests in flight):

1. deploy: one replica on one GPU node;
2. load: clients send chat requests without pause until the replicas (and nodes) reach the
   configured maximum;
3. faults under that load, one at a time, each waiting for capacity to come back:
   the process of a chat replica is killed; the vLLM engine process inside a replica is
   killed (the replica's health check must report it, so Serve replaces it); a whole worker
   node is killed;
4. load stops: replicas and nodes scale back down;
5. the usage ledger is checked against what the clients saw succeed.

Writes ``<out>/cluster-demo.json``, ``<out>/cluster-demo.md`` (tables) and
``<out>/cluster-demo.png`` (replicas and nodes over time), and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bench.run import free_port
from deployments.app import deployment_name
from deployments.config import AppConfig, app_args_from_serve_config
from launch.serve_env import serve_env

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "cluster-demo.yaml"
APP = "inference"
WORKER_TYPE = "gpu_worker"


def autoscaler_config(gcs_address: str, max_workers: int, idle_minutes: float) -> dict[str, Any]:
    """The cluster launcher config of the simulated cluster (Ray's ``fake_multinode``
    provider). Worker nodes advertise one GPU labelled as an L4, like cluster.yaml's
    ``gpu_24gb`` node type."""
    return {
        "cluster_name": "inference-demo",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_minutes,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "head_node_type": "ray.head.default",
        "available_node_types": {
            # The head holds Serve's controller and proxy, the ingress and the control
            # plane; no GPU, so no chat replica lands there.
            "ray.head.default": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {
                "resources": {"CPU": 1, "GPU": 1, "accelerator_type:L4": 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "auth": {"ssh_user": "ubuntu"},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


class SimulatedCluster:
    """A Ray head with an autoscaler over fake worker nodes, private to this run: its own
    GCS port and temp dir, and stopped by killing exactly its own processes (``ray stop``
    would stop every Ray on the machine)."""

    def __init__(self, max_workers: int, idle_minutes: float) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="icd-", dir="/tmp"))
        self.port = free_port()
        self.ip = "127.0.0.1"
        self.address = f"{self.ip}:{self.port}"
        self.config = autoscaler_config(self.address, max_workers, idle_minutes)

    def start(self) -> None:
        from ray._private import services

        self.ip = services.get_node_ip_address()
        self.address = f"{self.ip}:{self.port}"
        self.config["provider"]["gcs_address"] = self.address
        config_path = self.workdir / "autoscaler.json"
        config_path.write_text(json.dumps(self.config))
        # Token authentication on (Ray makes ~/.ray/auth_token if there is none); the fake
        # nodes and this process then use the same token.
        env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
               "RAY_AUTH_MODE": "token"}
        # Serve's defaults whatever config/serve.env sets: the simulated nodes share this
        # host's ports, where a front per node (HAProxy) would collide.
        for name in serve_env():
            env.pop(name, None)
        env.pop("RAY_ADDRESS", None)
        ray_cli = str(Path(sys.executable).parent / "ray")
        subprocess.run(
            [ray_cli, "start", "--head", f"--port={self.port}", "--num-cpus=2", "--num-gpus=0",
             f"--autoscaling-config={config_path}", f"--temp-dir={self.workdir / 'ray'}",
             f"--dashboard-port={free_port()}", "--disable-usage-stats",
             f"--ray-client-server-port={free_port()}"],
            check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available()

    def stop(self) -> None:
        import psutil

        marks = (str(self.workdir), f":{self.port}", f"={self.port}")
        mine = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                line = " ".join(proc.info["cmdline"] or [])
                if proc.pid != os.getpid() and any(m in line for m in marks):
                    mine.append(proc)
        for proc in mine:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(mine, timeout=15)


@dataclass
class Sample:
    t: float
    worker_nodes: int
    replicas_running: int
    replicas_starting: int
    nodes_with_replicas: int
    in_flight: int
    ok: int
    failed: int


@dataclass
class Load:
    """Clients sending chat requests back to back (no retries: every failure is seen)."""

    base_url: str
    key: str
    model: str
    concurrency: int
    t0: float
    records: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        client = openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=self.key,
                                    max_retries=0, timeout=300)
        self._tasks = [asyncio.create_task(self._client(client, i))
                       for i in range(self.concurrency)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, client: openai.AsyncOpenAI, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            started = time.monotonic() - self.t0
            self.in_flight += 1
            record: dict[str, Any] = {"start": started, "client": worker}
            try:
                reply = await client.chat.completions.create(
                    model=self.model, max_tokens=24, temperature=0.7,
                    messages=[{"role": "user",
                               "content": f"Client {worker}, question {n}: name a sea."}],
                )
                record.update(ok=True, completion_tokens=reply.usage.completion_tokens
                              if reply.usage else None)
            except openai.APIStatusError as exc:
                body = exc.body if isinstance(exc.body, dict) else {}
                record.update(ok=False, status=exc.status_code, error_type=body.get("type"),
                              code=body.get("code"), message=body.get("message"))
            except openai.APIError as exc:  # no HTTP answer at all: connection or timeout
                record.update(ok=False, status=None, error_type=type(exc).__name__,
                              code=None, message=str(exc))
            finally:
                self.in_flight -= 1
            record["end"] = time.monotonic() - self.t0
            self.records.append(record)


class Observer:
    """Samples the cluster every ``period`` seconds from a thread: worker nodes alive,
    chat replicas by state and by node, and the load's counters."""

    def __init__(self, model: str, t0: float, period: float = 2.0) -> None:
        self.deployment = deployment_name(model)
        self.t0 = t0
        self.period = period
        self.samples: list[Sample] = []
        self.load: Load | None = None
        self.replica_nodes: dict[str, str] = {}  # replica actor id -> node id, latest
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def replicas(self) -> list[dict[str, Any]]:
        """The chat model's live replica actors: id, pid, node id (from the GCS)."""
        from ray._private import state

        name = f"ServeReplica:{APP}:{self.deployment}"
        actors = state.actors(actor_state_name="ALIVE").values()
        return [{"actor_id": a["ActorID"], "pid": a["Pid"], "node_id": a["Address"]["NodeID"]}
                for a in actors if a["ActorClassName"] == name]

    def _sample(self) -> Sample:
        import ray
        from ray import serve

        nodes = [n for n in ray.nodes() if n["Alive"]]
        workers = sum(1 for n in nodes if n["Resources"].get("GPU", 0) > 0)
        app = serve.status().applications.get(APP)
        status = app.deployments.get(self.deployment) if app else None
        states = ({str(getattr(k, "value", k)): v for k, v in status.replica_states.items()}
                  if status else {})  # not deployed yet
        placed = self.replicas()
        load = self.load
        ok = sum(1 for r in load.records if r["ok"]) if load else 0
        return Sample(
            t=round(time.monotonic() - self.t0, 1),
            worker_nodes=workers,
            replicas_running=int(states.get("RUNNING", 0)),
            replicas_starting=sum(int(states.get(k, 0))
                                  for k in ("STARTING", "UPDATING", "RECOVERING")),
            nodes_with_replicas=len({p["node_id"] for p in placed}),
            in_flight=load.in_flight if load else 0,
            ok=ok,
            failed=(len(load.records) - ok) if load else 0,
        )

    def _run(self) -> None:
        shown: tuple[int, ...] | None = None
        while not self._stop.is_set():
            try:
                sample = self._sample()
            except Exception as exc:  # noqa: BLE001 (a slow GCS or controller: next period)
                print(f"[{time.monotonic() - self.t0:7.1f}s] (sample skipped: {exc!r})",
                      flush=True)
            else:
                self.samples.append(sample)
                now = (sample.worker_nodes, sample.replicas_running, sample.replicas_starting,
                       sample.nodes_with_replicas)
                if now != shown:
                    print(f"[{sample.t:7.1f}s]   GPU nodes {now[0]}, replicas running "
                          f"{now[1]}, starting {now[2]}, on {now[3]} node(s); "
                          f"{sample.in_flight} requests in flight, {sample.ok} served, "
                          f"{sample.failed} failed", flush=True)
                    shown = now
            self._stop.wait(self.period)


async def wait_for(check: Any, seconds: float, what: str) -> float:
    """Seconds until ``check()`` holds; raises if it does not within ``seconds``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise TimeoutError(f"{what}: not within {seconds:.0f} s")
        await asyncio.sleep(1)
    return time.monotonic() - started


def engine_pid(replica_pid: int) -> int:
    """The vLLM engine process inside a chat replica (vLLM names it ``EngineCore``)."""
    import psutil

    for child in psutil.Process(replica_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
                return int(child.pid)
    raise LookupError(f"no vLLM engine process under replica process {replica_pid}")


def raylet_pid(node_id: str) -> int:
    """The raylet process of a (fake) worker node: killing it takes the node down."""
    import psutil
    import ray

    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    socket_name = node["RayletSocketName"]
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.info["cmdline"] or [])
            if "raylet" in (proc.info["name"] or "") and socket_name in line:
                return int(proc.pid)
    raise LookupError(f"no raylet for node {node_id}")


async def fault(name: str, kill: Any, load: Load, observer: Observer, target: int,
                settle_s: float, recover_within_s: float) -> dict[str, Any]:
    """Kill something under steady load (``kill()`` returns what it killed and the replica
    actor that goes with it); measure how long until Serve has dropped that replica, how long
    until ``target`` chat replicas run again, and which requests failed."""
    before = len(load.records)
    in_flight = load.in_flight
    killed_at = time.monotonic() - load.t0
    what, victim = kill()
    print(f"[{killed_at:7.1f}s] fault: {name} ({what}); {in_flight} requests in flight",
          flush=True)
    gone = await wait_for(lambda: victim not in {r["actor_id"] for r in observer.replicas()},
                          recover_within_s, f"{name}: replica replaced")
    gone_at = killed_at + gone
    # The GCS reports the actor dead before Serve's status shows the replica missing; a
    # sample from that gap still says "all running". Wait until Serve has seen the loss
    # (a vLLM replica takes far longer to start than this wait).
    with contextlib.suppress(TimeoutError):
        await wait_for(
            lambda: (s := observer.latest) is not None and s.t > gone_at
            and (s.replicas_running < target or s.replicas_starting > 0),
            30, f"{name}: Serve sees the loss")
    recovered = await wait_for(
        lambda: (s := observer.latest) is not None and s.t > gone_at
        and s.replicas_running >= target and s.replicas_starting == 0,
        recover_within_s, f"recovery after {name}")
    recovered_at = gone_at + recovered
    await asyncio.sleep(settle_s)
    records = load.records[before:]
    failures = [r for r in records if not r["ok"]]
    print(f"[{recovered_at:7.1f}s] capacity back after {recovered_at - killed_at:.1f} s "
          f"(replica dropped after {gone:.1f} s); {len(failures)} failed of {len(records)} "
          "requests", flush=True)
    return {
        "fault": name,
        "killed": what,
        "at_s": round(killed_at, 1),
        "in_flight_at_kill": in_flight,
        "replica_dropped_after_s": round(gone, 1),
        "recovered_after_s": round(recovered_at - killed_at, 1),
        "requests_during": len(records),
        "failed": len(failures),
        "failures": [{k: r.get(k) for k in ("status", "error_type", "code", "message")}
                     for r in failures],
    }


def usage_requests(model: str) -> int:
    """Requests the usage ledger holds for ``model`` (read the way an operator would)."""
    out = subprocess.run(
        [sys.executable, "-m", "control.cli", "usage", "--json"], check=True,
        capture_output=True, text=True, env=os.environ.copy(),
    ).stdout
    rows = json.loads(out)
    rows = rows["usage"] if isinstance(rows, dict) else rows
    return sum(int(r["requests"]) for r in rows if r["model"] == model)


def first_key() -> str:
    """The full-access key ``inference init`` makes for a new store."""
    out = subprocess.run([sys.executable, "-m", "control.cli", "init", "--json"], check=True,
                         capture_output=True, text=True, env=os.environ.copy()).stdout
    return str(json.loads(out)["key"]["secret_key"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import serve

    from deployments.app import build_app

    app_args = app_args_from_serve_config(CONFIG)
    config = AppConfig.model_validate(app_args)
    chat = next(m for m in config.models if m.task == "chat")
    scaling = chat.deployment.autoscaling
    assert scaling is not None
    top = scaling.max_replicas
    state = Path(tempfile.mkdtemp(prefix="inference-demo-state-"))
    os.environ["INFERENCE_STATE_DIR"] = str(state)
    key = first_key()

    cluster = SimulatedCluster(max_workers=top + 1, idle_minutes=args.idle_minutes)
    result: dict[str, Any] = args.result
    result.update({"config": str(CONFIG.relative_to(ROOT)), "phases": [], "faults": []})
    t0 = time.monotonic()

    def phase(name: str) -> None:
        at = round(time.monotonic() - t0, 1)
        result["phases"].append({"phase": name, "at_s": at})
        print(f"[{at:7.1f}s] {name}", flush=True)

    observer = Observer(chat.id, t0)
    try:
        cluster.start()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
        phase("cluster up (head only), deploying")
        observer.start()
        serve.run(build_app(app_args), name=APP, route_prefix="/")
        base_url = f"http://127.0.0.1:{port}"
        phase("deployed: one chat replica")
        load = Load(base_url, key, chat.id, args.concurrency, t0)
        observer.load = load
        load.start()
        phase(f"load on: {args.concurrency} clients")
        scaled = await wait_for(
            lambda: (s := observer.latest) is not None and s.replicas_running >= top
            and s.nodes_with_replicas >= top, args.scale_within_s, "scale-up")
        result["scale_up_s"] = round(scaled, 1)
        phase(f"scaled up: {top} replicas on {top} GPU nodes after {scaled:.0f} s")
        await asyncio.sleep(args.settle_s)

        def kill_replica() -> tuple[str, str]:
            victim = observer.replicas()[0]
            os.kill(victim["pid"], signal.SIGKILL)
            return f"replica process {victim['pid']}", victim["actor_id"]

        def kill_engine() -> tuple[str, str]:
            # The replica process lives on; only its health check can tell Serve.
            # A replica whose engine runs: one started since the last fault may not have
            # spawned its engine process yet.
            for victim in observer.replicas():
                with contextlib.suppress(LookupError):
                    pid = engine_pid(victim["pid"])
                    break
            else:
                raise LookupError("no chat replica with a vLLM engine process")
            os.kill(pid, signal.SIGKILL)
            return (f"vLLM engine process {pid} of replica process {victim['pid']}",
                    victim["actor_id"])

        def kill_node() -> tuple[str, str]:
            victim = observer.replicas()[0]
            pid = raylet_pid(victim["node_id"])
            os.kill(pid, signal.SIGKILL)
            return f"worker node {victim['node_id'][-5:]} (raylet {pid})", victim["actor_id"]

        for name, kill in (("replica process killed", kill_replica),
                           ("engine process killed", kill_engine),
                           ("worker node killed", kill_node)):
            if name.split()[0] in args.skip_faults:
                continue
            result["faults"].append(await fault(
                name, kill, load, observer, top, args.settle_s, args.recover_within_s))

        await load.stop()
        phase("load off")
        down = await wait_for(
            lambda: (s := observer.latest) is not None and s.t > time.monotonic() - t0 - 1
            and s.replicas_running == scaling.min_replicas
            and s.worker_nodes == scaling.min_replicas,
            args.scale_within_s, "scale-down")
        result["scale_down_s"] = round(down, 1)
        phase(f"scaled down: {scaling.min_replicas} replica, {scaling.min_replicas} GPU node "
              f"after {down:.0f} s")
        await asyncio.sleep(3)  # the ingress flushes usage every second
        ok = sum(1 for r in load.records if r["ok"])
        result["requests"] = {"total": len(load.records), "ok": ok,
                              "failed": len(load.records) - ok}
        result["usage_ledger_requests"] = usage_requests(chat.id)
        result["max_ongoing_requests_per_replica"] = chat.deployment.max_ongoing_requests
    finally:
        observer.stop()
        result["timeline"] = [vars(s) for s in observer.samples]
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.stop()
    return result


def tables(result: dict[str, Any]) -> str:
    lines = ["| t (s) | phase |", "|---|---|"]
    lines += [f"| {p['at_s']} | {p['phase']} |" for p in result["phases"]]
    lines += ["", ("| fault | in flight at kill | requests until recovered | failed | "
                   "replica dropped after (s) | capacity back after (s) |"),
              "|---|---|---|---|---|---|"]
    lines += [f"| {f['fault']} | {f['in_flight_at_kill']} | {f['requests_during']} | "
              f"{f['failed']} | {f['replica_dropped_after_s']} | {f['recovered_after_s']} |"
              for f in result["faults"]]
    req = result.get("requests", {})
    lines += ["", (f"Requests: {req.get('total')} sent, {req.get('ok')} succeeded, "
                   f"{req.get('failed')} failed; usage ledger: "
                   f"{result.get('usage_ledger_requests')} requests recorded.")]
    lines += ["", ("| t (s) | GPU nodes | replicas running | starting | nodes with replicas "
                   "| in flight |"), "|---|---|---|---|---|---|"]
    last: tuple[int, ...] | None = None
    for s in result["timeline"]:
        row = (s["worker_nodes"], s["replicas_running"], s["replicas_starting"],
               s["nodes_with_replicas"])
        if row != last:  # only the changes
            lines.append(f"| {s['t']} | {row[0]} | {row[1]} | {row[2]} | {row[3]} | "
                         f"{s['in_flight']} |")
            last = row
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in result["timeline"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.step(t, [s["worker_nodes"] for s in result["timeline"]], where="post",
            label="GPU worker nodes", linewidth=2)
    ax.step(t, [s["replicas_running"] for s in result["timeline"]], where="post",
            label="chat replicas running", linewidth=2, linestyle="--")
    ax.step(t, [s["replicas_starting"] for s in result["timeline"]], where="post",
            label="chat replicas starting", linewidth=1, linestyle=":")
    for p in result["phases"]:
        ax.axvline(p["at_s"], color="grey", linewidth=0.5)
    for f in result["faults"]:
        ax.axvline(f["at_s"], color="red", linewidth=1)
        ax.annotate(f["fault"], (f["at_s"], 0.2), rotation=90, fontsize=7, color="red")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("count")
    ax.set_title("Simulated GPU cluster: replicas and nodes under load and faults")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--settle-s", type=float, default=10.0,
                        help="steady load before and after each fault")
    parser.add_argument("--scale-within-s", type=float, default=900.0)
    parser.add_argument("--recover-within-s", type=float, default=420.0)
    parser.add_argument("--idle-minutes", type=float, default=0.25,
                        help="autoscaler idle timeout before an empty node stops")
    parser.add_argument("--skip-faults", nargs="*", default=[],
                        choices=["replica", "engine", "worker"])
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.result = {}
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(run(args))
    except BaseException as exc:
        # What was seen until the failure, for whoever debugs it.
        args.result["error"] = repr(exc)
        (args.out / "cluster-demo.json").write_text(json.dumps(args.result, indent=2) + "\n")
        raise
    (args.out / "cluster-demo.json").write_text(json.dumps(result, indent=2) + "\n")
    text = tables(result)
    (args.out / "cluster-demo.md").write_text(
        "# Simulated GPU cluster run (`make cluster-demo`)\n\n" + text
        + "\n![replicas and nodes](cluster-demo.png)\n")
    plot(result, args.out / "cluster-demo.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
