"""Server throughput and latency vs concurrency, with and without dynamic batching (SPEC §8, §9).

A text classifier (the bundled MiniLM with a random 3-class head, written as `hybridformer finetune`
writes a folder) is served by `hybridformer serve` in a subprocess on 127.0.0.1; an asyncio load
generator (httpx, closed loop: each of C clients sends its next request when the last one is
answered) runs here, bounded in request count and time. Cases `c<C>` for C in 1, 8, 32, 64:

- ``batching``: the server with --max-batch-size 32 --max-wait-ms 5;
- ``no-batching``: the same server with --max-batch-size 1 (one forward per request);
- ``offline``: the model's own batched forward on the same texts, no HTTP, at batch size
  min(C, 32) (throughput = batch / median time of a padded batch forward).

Fields: throughput (requests/s), p50_ms (= median_ms), p95_ms, p99_ms, errors (non-200 answers and
transport failures), requests, and cpu_ms_per_request: CPU time of the server process (all its
threads) per answered request, or of the offline forward per input. On a machine shared with other
jobs, throughput measures the share of CPU we got; CPU per request does not, so its ratios are the
load-independent view of batching's gain and of the server's overhead over the bare model.

``--soak SECONDS``: one batching server at concurrency 64 with 10% malformed requests (bad JSON,
wrong types, unknown model, too many tokens), sampling the server's resident memory every second:
reports failed good requests, the malformed ones' statuses, restarts and RSS start / end / max.

    python benchmarks/serving.py --quick --out results/serving_quick.json
    python benchmarks/serving.py --soak 300 --out results/serving_soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, time_median, write_results  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
HOST = "127.0.0.1"  # traffic goes to this machine only
CONCURRENCY = (1, 8, 32, 64)
MAX_BATCH, MAX_WAIT_MS = 32, 5.0
WORDS = ("the film was a quiet and moving portrait of a family that slowly learns to speak again after years "
         "of silence while the city around them changes beyond recognition and nobody notices").split()


def texts(n: int, seed: int = 0) -> list[str]:
    """`n` short texts of 4-12 words (6-14 tokens: one length bucket), as reviews or queries are."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(n)]


def build_classifier(folder: Path) -> Path:
    from hybridformer.data import minilm_path, minilm_tokenizer
    from hybridformer.encoders import TextEncoder
    from hybridformer.models import TextClassifier

    torch.manual_seed(0)
    TextClassifier(TextEncoder.from_pretrained(minilm_path()), 3).save_pretrained(folder)
    minilm_tokenizer().save_pretrained(str(folder))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`hybridformer serve` in a subprocess (the benchmark's client does not share its GIL)."""

    def __init__(self, model_dir: Path, max_batch: int, threads: int) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hybridformer", "serve", "--model", f"clf={model_dir}", "--host", HOST,
             "--port", str(self.port), "--max-batch-size", str(max_batch), "--max-wait-ms", str(MAX_WAIT_MS),
             "--max-queue", "1024", "--torch-threads", str(threads)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def __enter__(self) -> Server:
        return self.wait()

    def wait(self) -> Server:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 120 s")

    def cpu_s(self) -> float:
        """CPU seconds (user + system, every thread) the server process has used."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


MALFORMED: list[tuple[bytes, str]] = [
    (b'{"model": "clf", "input": ', "bad JSON"),
    (b'{"model": "clf", "input": 17}', "wrong type"),
    (b'{"model": "nope", "input": "x"}', "unknown model"),
    (('{"model": "clf", "input": "' + "word " * 700 + '"}').encode(), "too many tokens"),
]


async def load(url: str, concurrency: int, bodies: list[str], max_requests: int, max_seconds: float,
               malformed_every: int = 0) -> dict[str, Any]:
    """Closed-loop load: `concurrency` clients until `max_requests` answers or `max_seconds`."""
    import httpx

    latencies: list[float] = []
    errors = 0
    error_kinds: dict[str, int] = {}
    bad_statuses: dict[int, int] = {}
    sent = 0
    stop_at = time.monotonic() + max_seconds

    async def client(c: httpx.AsyncClient, worker: int) -> None:
        nonlocal errors, sent
        rng = random.Random(worker)
        while sent < max_requests and time.monotonic() < stop_at:
            sent += 1
            bad = malformed_every and sent % malformed_every == 0
            content = MALFORMED[(sent // malformed_every) % len(MALFORMED)][0] if bad else bodies[rng.randrange(len(bodies))].encode()
            start = time.perf_counter()
            try:
                r = await c.post("/v1/classify", content=content, headers={"content-type": "application/json"})
                status, kind = r.status_code, str(r.status_code)
            except httpx.HTTPError as err:
                status, kind = -1, type(err).__name__
            if bad:
                bad_statuses[status] = bad_statuses.get(status, 0) + 1
            elif status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
                error_kinds[kind] = error_kinds.get(kind, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c, w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"throughput": len(latencies) / elapsed, "latencies_ms": [x * 1e3 for x in latencies], "errors": errors,
            "error_kinds": error_kinds, "malformed_statuses": bad_statuses}


def measure(model_dir: Path, bodies: list[str], sample: list[str], count: int, seconds: float, rounds: int,
            threads: int) -> list[dict]:
    """Every case's variants in alternation, `rounds` windows each, so load changes hit them alike.

    Per (case, variant): throughput = median over the windows, percentiles over all latencies.
    """
    model, tok = _offline_model(model_dir)
    ids = tok(sample)["input_ids"]
    batching, plain = Server(model_dir, MAX_BATCH, threads), Server(model_dir, 1, threads)
    rows = []
    try:
        servers = {"batching": batching.wait(), "no-batching": plain.wait()}
        for server in servers.values():
            asyncio.run(load(server.url, 8, bodies, 64, 10.0))  # warm-up
        for c in CONCURRENCY:
            runs: dict[str, list[dict]] = {"batching": [], "no-batching": [], "offline": []}
            for _ in range(rounds):
                for variant, server in servers.items():
                    cpu = server.cpu_s()
                    window = asyncio.run(load(server.url, c, bodies, count // rounds, seconds / rounds))
                    window["cpu_ms_per_request"] = (server.cpu_s() - cpu) * 1e3 / max(len(window["latencies_ms"]), 1)
                    runs[variant].append(window)
                runs["offline"].append(_offline(model, tok, ids, min(c, MAX_BATCH)))
            for variant, windows in runs.items():
                rows.append(_row(c, variant, windows))
                print(f"  c{c} {variant}: {rows[-1]['throughput']:.1f} req/s, p99 {rows[-1]['p99_ms']} ms", flush=True)
    finally:
        batching.__exit__()
        plain.__exit__()
    return rows


def _row(c: int, variant: str, windows: list[dict]) -> dict:
    row: dict[str, Any] = {"case": f"c{c}", "variant": variant, "concurrency": c,
                           "throughput": statistics.median(w["throughput"] for w in windows),
                           "cpu_ms_per_request": statistics.median(w["cpu_ms_per_request"] for w in windows)}
    if variant == "offline":
        row.update(batch_size=windows[0]["batch_size"], median_ms=statistics.median(w["ms"] for w in windows),
                   p50_ms=None, p95_ms=None, p99_ms=None, errors=0)
        return row
    ms = sorted(x for w in windows for x in w["latencies_ms"]) or [float("nan")]

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, int(q * len(ms)))]

    row.update(median_ms=statistics.median(ms), p50_ms=pct(0.5), p95_ms=pct(0.95), p99_ms=pct(0.99),
               errors=sum(w["errors"] for w in windows), requests=len(ms))
    return row


def _offline_model(model_dir: Path):
    from hybridformer.models import TextClassifier
    from hybridformer.recipes.model import resolve_tokenizer

    return TextClassifier.from_pretrained(model_dir).eval(), resolve_tokenizer(None, model_dir)


def _offline(model, tok, ids: list[list[int]], batch: int) -> dict[str, float]:
    """The classifier's padded batch forward in this process, at the batch size the server reaches."""
    from hybridformer.deploy.serve.engine import pad_right

    x, mask = pad_right(ids[:batch], tok.pad_token_id)  # (B, N)
    cpu = time.process_time()
    with torch.inference_mode():
        ms = time_median(lambda: model(x, attention_mask=mask), repeats=3, warmup=1)
    cpu_ms = (time.process_time() - cpu) * 1e3 / (4 * batch)  # 4 calls (1 warm-up + 3 timed)
    return {"throughput": batch / (ms / 1e3), "ms": ms, "batch_size": batch, "cpu_ms_per_request": cpu_ms}


def targets(rows: list[dict]) -> dict[str, Any]:
    get = {(r["case"], r["variant"]): r for r in rows}
    b, nb, off = get[("c32", "batching")], get[("c32", "no-batching")], get[("c32", "offline")]
    single = get[("c1", "no-batching")]["p50_ms"]
    bound = 2 * (single + MAX_WAIT_MS)
    # What the design promises: a request waits at most for the batch running when it arrives, then
    # its own batch, so p99 <= 2 x (a full batch's forward + max wait).
    batch_bound = 2 * (off["median_ms"] + MAX_WAIT_MS)
    return {
        "c32_batching_over_no_batching": b["throughput"] / nb["throughput"],
        "c32_batching_over_offline": b["throughput"] / off["throughput"],
        "c32_p99_ms": b["p99_ms"],
        # CPU per request does not depend on how much of the machine other jobs take:
        "c32_cpu_no_batching_over_batching": nb["cpu_ms_per_request"] / b["cpu_ms_per_request"],
        "c32_cpu_offline_over_batching": off["cpu_ms_per_request"] / b["cpu_ms_per_request"],
        "p99_bound_ms": bound,
        "p99_batch_bound_ms": batch_bound,
        "met": {"speedup>=4": b["throughput"] >= 4 * nb["throughput"],
                "offline>=0.8": b["throughput"] >= 0.8 * off["throughput"],
                "p99<=2x(single+wait)": b["p99_ms"] <= bound,
                "p99<=2x(batch forward+wait)": b["p99_ms"] <= batch_bound},
    }


def soak(model_dir: Path, bodies: list[str], seconds: float, threads: int) -> list[dict]:
    """Concurrency 64, 10% malformed, `seconds` long; server RSS sampled every second."""
    with Server(model_dir, MAX_BATCH, threads) as server:
        asyncio.run(load(server.url, 8, bodies, 64, 10.0))
        pid = server.proc.pid
        rss: list[float] = [server.rss_mb()]

        async def run() -> dict[str, Any]:
            async def sample() -> None:
                while True:
                    await asyncio.sleep(1.0)
                    rss.append(server.rss_mb())

            sampler = asyncio.create_task(sample())
            result = await load(server.url, 64, bodies, 10**9, seconds, malformed_every=10)
            sampler.cancel()
            return result

        result = asyncio.run(run())
        alive = server.proc.poll() is None and server.proc.pid == pid
    third = max(1, len(rss) // 3)
    return [{
        "case": "soak-c64", "variant": "batching", "seconds": seconds, "throughput": result["throughput"],
        "median_ms": statistics.median(result["latencies_ms"] or [float("nan")]),
        "p99_ms": sorted(result["latencies_ms"])[int(0.99 * len(result["latencies_ms"]))] if result["latencies_ms"] else None,
        "requests": len(result["latencies_ms"]), "errors": result["errors"], "error_kinds": result["error_kinds"],
        "malformed_statuses": {str(k): v for k, v in result["malformed_statuses"].items()},
        "server_alive": alive, "rss_mb_start": rss[0], "rss_mb_end": rss[-1], "rss_mb_max": max(rss),
        "rss_mb_first_third_mean": statistics.mean(rss[:third]), "rss_mb_last_third_mean": statistics.mean(rss[-third:]),
    }]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2.5 s per case (the targets' cases, under a minute)")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="run the soak test instead")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the server's model and of the offline model (1: stable on a shared CPU)")
    parser.add_argument("--out", default="outputs/bench/serving.json")
    args = parser.parse_args()
    bodies = [f'{{"model": "clf", "input": "{t}"}}' for t in texts(256)]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_classifier(Path(tmp) / "clf")
        if args.soak:
            rows = soak(model_dir, bodies, args.soak, args.threads)
            print_table(rows, ["case", "variant", "requests", "errors", "throughput", "p99_ms", "server_alive",
                               "rss_mb_start", "rss_mb_end", "rss_mb_max"])
            print("malformed answered with:", rows[0]["malformed_statuses"], "; failed good requests:",
                  rows[0]["error_kinds"])
            write_results(args.out, rows)
            return
        torch.set_num_threads(args.threads)
        seconds, count, rounds = (2.4, 3000, 3) if args.quick else (15.0, 30000, 5)
        rows = measure(model_dir, bodies, texts(MAX_BATCH, seed=1), count, seconds, rounds, args.threads)
    print_table(rows, ["case", "variant", "throughput", "cpu_ms_per_request", "p50_ms", "p95_ms", "p99_ms", "errors",
                       "requests"])
    result = targets(rows)
    print("targets at c32:", result)
    write_results(args.out, rows, targets=result, max_batch_size=MAX_BATCH, max_wait_ms=MAX_WAIT_MS, threads=args.threads,
                  note="measured on a shared, loaded machine (see machine.load_average); client and server "
                       "share its cores")


if __name__ == "__main__":
    main()
