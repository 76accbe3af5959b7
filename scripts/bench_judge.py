"""Benchmark the judge layer against the MediX-R1 release's way of judging. Prints figures; asserts nothing.

1. One GRPO-sized batch (``--prompts`` x ``--completions``, default 64 x 8) of real HPO answers with the repetition
   GRPO groups have, judged by the same local model on the same machine:
   - release: serial, one greedy generation (4 tokens) per item, exact string match short-circuit, "YES" anywhere;
   - this layer, cold cache: normalised match + deduplication + length-bucketed batched logits (one forward pass);
   - this layer, warm cache: the same batch again (a second epoch / a resumed run).
   The headline is release seconds / layer seconds (cold).
2. HTTP: the OpenAI backend against a loopback server with ``--latency`` seconds per request: unique items per second
   at concurrency 1, 8, 64; and the GRPO batch sent the release's way (serially, every item) vs this layer.

    python scripts/bench_judge.py [--prompts 64 --completions 8 --latency 0.05 --json bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a checkout without `make install`

from medix_lib import data, models  # noqa: E402
from medix_lib.judge import REWARD_TEMPLATE, TEMPLATES, Judge, JudgeItem  # noqa: E402


def grpo_batch(n_prompts: int, n_completions: int, seed: int) -> list[JudgeItem]:
    """Each prompt's completions draw from a few short answers, skewed as sampled answers are: the reference (in
    varying case/punctuation), a real synonym, and two wrong answers (ontology siblings or unrelated terms)."""
    rng = random.Random(seed)
    pairs = data.paraphrase_pairs(seed, 6 * n_prompts)
    yes = [p for p in pairs if p["label"]]
    no = [p["b"] for p in pairs if not p["label"]]
    items = []
    for k in range(n_prompts):
        ref, synonym = yes[k % len(yes)]["a"], yes[k % len(yes)]["b"]
        pool = [ref, ref.lower(), ref.capitalize() + ".", synonym, rng.choice(no), rng.choice(no)]
        weights = [0.2, 0.1, 0.05, 0.25, 0.25, 0.15]
        items += [JudgeItem(ref, p) for p in rng.choices(pool, weights, k=n_completions)]
    return items


def release_serial(items: list[JudgeItem], model_name: str) -> tuple[float, list[bool]]:
    """The release's loop: for each item, exact string match or one greedy generation; YES if 'YES' appears."""
    import torch
    from tqdm.auto import tqdm

    tokenizer, model = models.load_tokenizer(model_name), models.load_causal_lm(model_name, "cpu")
    template = TEMPLATES[REWARD_TEMPLATE]
    labels = []
    start = time.perf_counter()
    for item in tqdm(items, desc="release (serial)", leave=False):
        if item.prediction == item.reference:
            labels.append(True)
            continue
        ids = tokenizer.apply_chat_template(template.messages(item, False), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        labels.append("YES" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:]).upper())
    return time.perf_counter() - start, labels


def release_http_serial(items: list[JudgeItem], url: str) -> float:
    """The release over HTTP: one blocking request per item (keep-alive connection), one at a time."""
    import httpx

    template = TEMPLATES[REWARD_TEMPLATE]
    start = time.perf_counter()
    with httpx.Client(base_url=url + "/") as client:
        for item in items:
            if item.prediction != item.reference:
                client.post("chat/completions", json={"model": "stub", "temperature": 0, "max_tokens": 4,
                                                      "messages": template.messages(item, False)})
    return time.perf_counter() - start


def _serve(latency: float, ports) -> None:
    """A minimal asyncio HTTP/1.1 keep-alive server: a thread per connection would cost more CPU than the client."""
    import asyncio

    body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "NO"}}]}).encode()
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                await asyncio.sleep(latency)
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(serve())


class LatencyServer:
    """A loopback OpenAI-compatible server that waits ``latency`` seconds per request, then answers NO. It runs in
    its own process: in the client's process it would compete for the GIL and measure itself, not the client."""

    def __init__(self, latency: float):
        import multiprocessing

        ports = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_serve, args=(latency, ports), daemon=True)
        self.process.start()
        self.url = f"http://127.0.0.1:{ports.get(timeout=30)}/v1"

    def close(self):
        self.process.terminate()
        self.process.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="local judge model (alias, id or path)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--completions", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05, help="simulated server seconds per request")
    parser.add_argument("--http-items", type=int, default=256, help="unique items per HTTP throughput run")
    parser.add_argument("--release-sample", type=int, default=0,
                        help="time the release's serial loop on this many random items and extrapolate to the batch "
                             "(0: the whole batch); the release's cost is linear in items, so this only saves time")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads for both ways (0: torch's default); 1 is fairer on a shared machine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-local", action="store_true", help="only the HTTP part")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures: dict = {"machine": f"{os.cpu_count()} CPU cores", "model": args.model}

    items = grpo_batch(args.prompts, args.completions, args.seed)
    unique = len({(i.reference, i.prediction) for i in items})
    print(f"GRPO batch: {args.prompts} prompts x {args.completions} completions = {len(items)} items, "
          f"{unique} distinct strings")

    if not args.skip_local:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        models.load_causal_lm(args.model, "cpu")  # loading is not what either way is timed on
        sample = random.Random(args.seed).sample(items, args.release_sample) if args.release_sample else items
        sample_s, release_labels = release_serial(sample, args.model)
        release_s = sample_s * len(items) / len(sample)
        with tempfile.TemporaryDirectory() as tmp:
            judge = Judge(model=args.model, cache_path=f"{tmp}/cache.sqlite", backend_options={"device": "cpu"})
            cold = judge(items, progress=True)
            cold_stats = judge.last_stats
            judge(items)
            warm_stats = judge.last_stats
        calls = sum(i.prediction != i.reference for i in items)
        figures["local"] = {"items": len(items), "release_seconds": release_s, "release_model_calls": calls,
                            "release_timed_items": len(sample), "torch_threads": args.threads or "default",
                            "layer_cold": cold_stats.to_dict(), "layer_warm": warm_stats.to_dict(),
                            "speedup_cold": release_s / cold_stats.seconds,
                            "speedup_warm": release_s / max(warm_stats.seconds, 1e-9),
                            "release_yes_rate": sum(release_labels) / len(sample),
                            "layer_yes_rate": sum(bool(v.label) for v in cold) / len(items)}
        print(f"\nlocal judge {args.model}, same batch, same machine:")
        timed = "" if len(sample) == len(items) else f" (timed on {len(sample)} random items, scaled linearly)"
        print(f"  release (serial generate)   {release_s:8.2f} s  {calls} model calls{timed}")
        print(f"  this layer, cold cache      {cold_stats.seconds:8.2f} s  {cold_stats}")
        print(f"  this layer, warm cache      {warm_stats.seconds:8.2f} s  {warm_stats}")
        print(f"  speed-up (headline)         {figures['local']['speedup_cold']:8.1f}x cold, "
              f"{figures['local']['speedup_warm']:.0f}x warm")

    server = LatencyServer(args.latency)
    try:
        print(f"\nHTTP, loopback server with {args.latency * 1000:.0f} ms latency per request:")
        http_items = [JudgeItem("asthma", f"candidate answer {i}") for i in range(args.http_items)]
        figures["http"] = {"latency_s": args.latency, "throughput": {}}
        for concurrency in (1, 8, 64):
            judge = Judge(backend="openai", model="stub", base_url=server.url, concurrency=concurrency, timeout=30)
            n = min(len(http_items), 64) if concurrency == 1 else len(http_items)  # c=1 is slow and linear
            judge(http_items[:n])
            s = judge.last_stats
            rate = s.model_calls / s.seconds
            figures["http"]["throughput"][concurrency] = {"items": n, "seconds": s.seconds, "items_per_s": rate,
                                                          "failures": s.failures}
            print(f"  concurrency {concurrency:3d}: {rate:7.1f} items/s ({n} items in {s.seconds:.2f} s, "
                  f"{s.failures} failed)")
        release_http = release_http_serial(items, server.url)
        layer = Judge(backend="openai", model="stub", base_url=server.url, concurrency=64, timeout=30)
        layer(items)
        figures["http"]["grpo_batch"] = {"release_seconds": release_http, "layer": layer.last_stats.to_dict(),
                                         "speedup": release_http / layer.last_stats.seconds}
        print(f"  GRPO batch the release's way {release_http:7.2f} s; this layer {layer.last_stats.seconds:.2f} s "
              f"({layer.last_stats}); speed-up {release_http / layer.last_stats.seconds:.0f}x")
    finally:
        server.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
