"""The performance harness: ``python -m medix_lib bench [--quick]`` measures where time goes on the machine it runs
on and writes ``bench.json`` and figures under ``outputs/bench/<mode>/``. Every figure carries the machine's load
(1-minute load average before and after), because timings on a shared machine mean little without it. Ratios are
measured side by side in one run, so they hold up better than absolute times. Nothing here asserts a speed.

Sections:
- ``judge_local``: the MediX-R1 release's way of judging (serial: one greedy generation per item, "YES" anywhere)
  against this judge layer (rules, deduplication, cache, batched logits) on one GRPO-sized batch with the repetition
  sampled groups have, same model, same machine: as the process's first call, again with a fresh verdict cache (a
  later training step's call; the two show the spread of a cold measurement), and again with a warm cache;
- ``judge_http``: the OpenAI-compatible backend against a loopback server with added latency, at concurrency 1, 8 and
  64, and the GRPO batch the release's way (serial, every item) against this layer;
- ``reward``: the composite reward on a GRPO batch, time per component, and its share of a GRPO step of the
  committed smoke training run;
- ``scaling``: reward time and peak memory from 64 to 4,096 completions;
- ``evaluation_resume``: a finished evaluation run again: seconds, policy loads and judge calls (all 0 but seconds);
- ``grpo_step``: GRPO steps of the offline VLM with cpu_long's settings, TRL's default path against this project's
  (each group's prompt run once), generation and update apart, new tokens/s, ``speedup``, and how far the two runs
  ended apart (:mod:`medix_lib.training.bench`);
- ``pipeline``: wall time per notebook of the committed smoke reference run.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from pathlib import Path

from medix_lib import config, models
from medix_lib.judge import DEFAULT_MODEL, REWARD_TEMPLATE, TEMPLATES, Judge, JudgeItem
from medix_lib.judge.terms import term_index
from medix_lib.training import bench as training_bench


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    import torch

    return {"cpu": cpu, "cpu_count": os.cpu_count(), "native_bf16": models.cpu_has_native_bf16(),
            "torch_threads": torch.get_num_threads(), "load_1min": round(os.getloadavg()[0], 2)}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def peak_rss_mb() -> float:
    """The process's peak resident memory since the last :func:`reset_peak` (Linux ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def grpo_batch(n_prompts: int, n_completions: int, seed: int) -> list[JudgeItem]:
    """Each prompt's completions draw from a few short answers, skewed as sampled answers are: the reference (in
    varying case/punctuation), a real synonym, and two wrong answers (held-out gold pairs of the verifier)."""
    from medix_lib import verifier

    rng = random.Random(seed)
    pairs = verifier.heldout_pairs(12 * n_prompts, seed)
    yes = [p for p in pairs if p.label and p.kind in verifier.YES_TYPES]
    no = [p.prediction for p in pairs if not p.label]
    items = []
    for k in range(n_prompts):
        ref, synonym = yes[k % len(yes)].reference, yes[k % len(yes)].prediction
        pool = [ref, ref.lower(), ref.capitalize() + ".", synonym, rng.choice(no), rng.choice(no)]
        items += [JudgeItem(ref, p) for p in rng.choices(pool, [0.2, 0.1, 0.05, 0.25, 0.25, 0.15], k=n_completions)]
    return items


def release_serial(items: list[JudgeItem], model_name: str) -> tuple[float, list[bool]]:
    """The release's loop: for each item, exact string match or one greedy generation of 4 tokens, YES if "YES"
    appears in the reply."""
    import torch
    from tqdm.auto import tqdm

    tokenizer, model = models.load_tokenizer(model_name), models.load_causal_lm(model_name)
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


def _load_models(name: str) -> tuple[str, ...]:
    """Load a judge model, or each member of an ensemble judge (loading is not what is timed); returns them."""
    parts = models.ensemble_members(name) or (name,)
    for part in parts:
        models.load_causal_lm(part)
    return parts


def judge_local(model: str, n_prompts: int, n_completions: int, release_sample: int, seed: int = 0) -> dict:
    items = grpo_batch(n_prompts, n_completions, seed)
    parts = _load_models(model)
    sample = random.Random(seed).sample(items, min(release_sample, len(items))) if release_sample else items
    load_before = _load()
    # the release's loop generates with one model: for an ensemble judge, its first member (a lower bound of what the
    # serial way would cost the ensemble)
    sample_s, release_labels = release_serial(sample, parts[0])
    release_s = sample_s * len(items) / len(sample)
    with tempfile.TemporaryDirectory() as tmp:
        judge = Judge(model=model, cache_path=f"{tmp}/cache.sqlite")
        cold = judge(items, progress=True)
        cold_stats = judge.last_stats
        judge(items)
        warm_stats = judge.last_stats
        # The same items as a later GRPO step meets them: a fresh verdict cache in a process that has run the model's
        # shapes before. Beside the first call it shows the spread of one cold measurement (2.21 s vs 2.47 s once).
        later = Judge(model=model, cache_path=f"{tmp}/later.sqlite")
        later(items)
        later_stats = later.last_stats
    return {"model": model, "items": len(items), "distinct": len({(i.reference, i.prediction) for i in items}),
            "release_seconds": release_s, "release_timed_items": len(sample),
            "release_model_calls": sum(i.prediction != i.reference for i in items),
            "layer_cold": cold_stats.to_dict(), "layer_later_step": later_stats.to_dict(),
            "layer_warm": warm_stats.to_dict(), "speedup_cold": release_s / cold_stats.seconds,
            "speedup_later_step": release_s / later_stats.seconds,
            "speedup_warm": release_s / max(warm_stats.seconds, 1e-9),
            "release_yes_rate": sum(release_labels) / len(sample),
            "layer_yes_rate": sum(bool(v.label) for v in cold) / len(items),
            "load_before": load_before, "load_after": _load()}


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

        ports = multiprocessing.get_context("spawn").Queue()
        self.process = multiprocessing.get_context("spawn").Process(target=_serve, args=(latency, ports),
                                                                      daemon=True)
        self.process.start()
        self.url = f"http://127.0.0.1:{ports.get(timeout=60)}/v1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.join(10)


def _release_http_serial(items: list[JudgeItem], url: str) -> float:
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


def judge_http(latency: float, n_items: int, batch: list[JudgeItem]) -> dict:
    load_before = _load()
    items = [JudgeItem("asthma", f"candidate answer {i}") for i in range(n_items)]
    result = {"latency_s": latency, "throughput": {}}
    with LatencyServer(latency) as server:
        for concurrency in (1, 8, 64):
            judge = Judge(backend="openai", model="stub", base_url=server.url, concurrency=concurrency, timeout=30)
            n = min(n_items, 64) if concurrency == 1 else n_items  # concurrency 1 is slow and linear
            judge(items[:n])
            s = judge.last_stats
            result["throughput"][concurrency] = {"items": n, "seconds": s.seconds,
                                                 "items_per_s": s.model_calls / s.seconds, "failures": s.failures}
        release = _release_http_serial(batch, server.url)
        layer = Judge(backend="openai", model="stub", base_url=server.url, concurrency=64, timeout=30)
        layer(batch)
    result["concurrency_64_over_1"] = result["throughput"][64]["items_per_s"] / result["throughput"][1]["items_per_s"]
    result["grpo_batch"] = {"items": len(batch), "release_seconds": release, "layer": layer.last_stats.to_dict(),
                            "speedup": release / layer.last_stats.seconds}
    result.update(load_before=load_before, load_after=_load())
    return result


def _completions(batch: list[JudgeItem]) -> list[str]:
    return [f"<OTHER>\n<thinking>Reviewing.</thinking>\n<answer>{item.prediction}</answer>" for item in batch]


def reward_timing(batch: list[JudgeItem], repeats: int = 2) -> dict:
    """The composite reward on one GRPO batch, per component, with a cold verdict cache each time (as the first
    epoch is): seconds per component, the fastest of ``repeats`` runs."""
    from medix_lib import params, rewards

    settings = params.RewardSettings()
    _load_models(settings.judge_model)  # loading is not what a training step pays for
    models.load_embedder(settings.semantic_model)
    columns = {"answer": [i.reference for i in batch], "modality": ["OTHER"] * len(batch),
               "question": [""] * len(batch)}
    completions = _completions(batch)
    seconds: dict[str, float] = {}
    load_before = _load()
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["MEDIX_JUDGE_CACHE"] = f"{tmp}/cache.sqlite"
            try:
                funcs, _ = rewards.build(settings)
                for func in funcs:
                    start = time.perf_counter()
                    func(completions, **columns)
                    seconds[func.__name__] = min(seconds.get(func.__name__, float("inf")),
                                                 time.perf_counter() - start)
            finally:
                os.environ.pop("MEDIX_JUDGE_CACHE")
    total = sum(seconds.values())
    return {"completions": len(batch), "seconds_per_component": seconds, "seconds_total": total,
            "smoke_grpo_step_seconds": _smoke_training_step_seconds(),
            "share_of_grpo_step": _smoke_training_reward_share(), "load_before": load_before, "load_after": _load()}


def _smoke_training_step_seconds() -> float | None:
    path = config.OUTPUTS_DIR / "03_train_grpo" / "smoke" / "metrics.json"
    return json.loads(path.read_text()).get("seconds_per_step") if path.is_file() else None


def _smoke_training_reward_share() -> float | None:
    """The reward's share of a GRPO step as the committed smoke run measured it (its own time split)."""
    path = config.OUTPUTS_DIR / "03_train_grpo" / "smoke" / "metrics.json"
    return json.loads(path.read_text()).get("reward_share_of_step") if path.is_file() else None


def evaluation_resume(rows: int, max_new_tokens: int) -> dict:
    """A small evaluation (the shipped verifier judging SmolLM2's answers to synthetic MedQA-layout rows), then the
    same command again: the second run must load no policy and ask no judge."""
    from medix_lib import evaluation, params

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "medqa" / "US" / "4_options"
        source.mkdir(parents=True)
        with open(source / "phrases_no_exclude_test.jsonl", "w") as fh:
            for i in range(rows):
                fh.write(json.dumps({"question": f"Which organ is affected in case {i}?", "answer": "liver",
                                     "options": {"A": "liver", "B": "lung", "C": "kidney", "D": "heart"},
                                     "answer_idx": "A", "meta_info": "step1"}) + "\n")
        cfg = params.build("04", {"tasks": ["medqa"], "task_sources": {"medqa": str(Path(tmp) / "medqa")},
                                  "candidates": {"base": ""}, "compare": [], "max_new_tokens": max_new_tokens,
                                  "variant": "bench", "output_dir": str(Path(tmp) / "04_evaluate_with_judge" / "b")})
        store = evaluation.ResultsStore(Path(tmp) / "results.sqlite")
        timings = []
        for _ in range(2):
            start = time.perf_counter()
            summary = evaluation.evaluate(cfg.candidate_list()[0], cfg.task_rows(), cfg.judges(), store,
                                          cfg.protocol(), progress=False)
            timings.append({"seconds": time.perf_counter() - start, "policy_loaded": summary["policy_loaded"],
                            "generated": summary["medqa"]["generated"],
                            "judge_model_calls": summary["medqa"]["judge_model_calls"]})
    return {"rows": rows, "first": timings[0], "rerun": timings[1]}


def reward_scaling(sizes: list[int], seed: int = 0) -> list[dict]:
    """Composite reward time and peak memory against the number of completions (each distinct: the slowest case)."""
    from medix_lib import params, rewards

    out = []
    for n in sizes:
        batch = grpo_batch(max(1, n // 8), 8, seed + n)[:n]
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["MEDIX_JUDGE_CACHE"] = f"{tmp}/cache.sqlite"
            try:
                funcs, weights = rewards.build(params.RewardSettings())
                reset_peak()
                start = time.perf_counter()
                rewards.score_components(funcs, weights, _completions(batch), answer=[i.reference for i in batch],
                                         modality=["OTHER"] * len(batch))
                out.append({"completions": n, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
                            "load": _load()})
            finally:
                os.environ.pop("MEDIX_JUDGE_CACHE")
    return out


def pipeline_times() -> dict:
    """Wall seconds per notebook of the committed smoke reference run (from each stage's run.json)."""
    times = {}
    for stage in config.STAGES.values():
        path = config.OUTPUTS_DIR / stage / "smoke" / "run.json"
        if path.is_file():
            times[stage] = json.loads(path.read_text()).get("seconds")
    return times


SECTIONS = ("judge_local", "judge_http", "reward", "scaling", "evaluation_resume", "grpo_step", "pipeline")


def run(quick: bool = False, output: Path | None = None, model: str = DEFAULT_MODEL,
        only: list[str] | None = None) -> dict:
    """Every section, or ``only`` these (the others are kept from an earlier ``bench.json`` in ``output``, each with
    its own load figures); ``quick`` shrinks them to seconds each (CI runs it so the harness cannot rot)."""
    from medix_lib import plotting

    unknown = sorted(set(only or ()) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown bench section(s) {unknown}; valid: {', '.join(SECTIONS)}")
    output = Path(output or config.OUTPUTS_DIR / "bench" / ("quick" if quick else "full"))
    output.mkdir(parents=True, exist_ok=True)
    earlier = output / "bench.json"
    result = json.loads(earlier.read_text()) if only and earlier.is_file() else {}
    result.update(mode="quick" if quick else "full", machine=machine())
    wanted = set(only or SECTIONS)
    prompts, completions = (4, 8) if quick else (64, 8)
    term_index()  # the judge's vocabularies load once per process, like its model: neither is what is timed
    batch = grpo_batch(prompts, completions, 1)
    sections = {
        "judge_local": lambda: judge_local(model, prompts, completions, release_sample=16 if quick else 0),
        "judge_http": lambda: judge_http(0.05, 32 if quick else 256, batch),
        "reward": lambda: reward_timing(batch, repeats=1 if quick else 2),
        "scaling": lambda: reward_scaling([64, 128] if quick else [64, 256, 1024, 4096]),
        "evaluation_resume": lambda: evaluation_resume(4 if quick else 16, 8 if quick else 32),
        "grpo_step": lambda: training_bench.grpo_step(
            steps=2 if quick else 4, warmup_steps=6 if quick else 15,
            overrides={"per_device_train_batch_size": 8, "max_completion_length": 12} if quick else None),
        "pipeline": pipeline_times}
    for name in SECTIONS:
        if name in wanted:
            result[name] = sections[name]()
    result["machine"]["load_1min_after"] = _load()
    (output / "bench.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    plotting.save_figure(plotting.bench_summary(result), output / "figures", "bench_summary")
    return result


def summary_lines(result: dict) -> list[str]:
    """The headline figures, as printed by the command."""
    local, http, reward = result["judge_local"], result["judge_http"], result["reward"]
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['cpu_count']} cores, native bf16 {m['native_bf16']}, "
             f"load {m['load_1min']} -> {m['load_1min_after']}",
             f"judge, {local['items']} items ({local['distinct']} distinct): release {local['release_seconds']:.1f} s, "
             f"this layer {local['layer_cold']['seconds']:.2f} s cold ({local['speedup_cold']:.1f}x; first call), "
             f"{local['layer_later_step']['seconds']:.2f} s cold again ({local['speedup_later_step']:.1f}x), "
             f"{local['layer_warm']['seconds']:.3f} s warm ({local['speedup_warm']:.0f}x)",
             "HTTP judge at {:.0f} ms: ".format(http["latency_s"] * 1000)
             + ", ".join(f"c={c}: {v['items_per_s']:.0f} items/s" for c, v in http["throughput"].items())
             + f" ({http['concurrency_64_over_1']:.0f}x); GRPO batch {http['grpo_batch']['speedup']:.0f}x",
             f"reward per GRPO batch of {reward['completions']}: {reward['seconds_total']:.2f} s ("
             + ", ".join(f"{k} {v:.2f}" for k, v in reward["seconds_per_component"].items()) + ")"
             + (f"; {100 * reward['share_of_grpo_step']:.1f}% of a smoke GRPO step (its own time split)"
                if reward["share_of_grpo_step"] is not None else "")]
    lines += [f"scaling: {s['completions']} completions {s['seconds']:.2f} s, peak RSS {s['peak_rss_mb']:.0f} MB"
              for s in result["scaling"]]
    again = result["evaluation_resume"]
    lines.append(f"evaluation of {again['rows']} rows: {again['first']['seconds']:.1f} s; the same command again "
                 f"{again['rerun']['seconds']:.2f} s, policy loaded: {again['rerun']['policy_loaded']}, "
                 f"{again['rerun']['judge_model_calls']} judge calls")
    step = result.get("grpo_step")
    if step:
        def way(name: str) -> str:
            w = step[name]
            return (f"{w['step_s']:.1f} s (generation {w['generation_s'] / w['steps_timed']:.1f}, update "
                    f"{w['update_s'] / w['steps_timed']:.1f}; {w['new_tokens_per_s']:.0f} new tokens/s)")

        lines.append(f"GRPO step ({step['completions_per_step']} completions, {step['variant']}): TRL {way('trl')}; "
                     f"this project's {way('medix')}: {step['speedup']:.2f}x, apart from TRL's by "
                     f"{step['max_reward_difference']:.2g} in reward and {step['relative_adapter_difference']:.2g} "
                     f"(relative) in adapter weights; with bf16 autocast {way('medix_bf16')}: "
                     f"{step['speedup_bf16']:.2f}x")
    if result["pipeline"]:
        lines.append("smoke pipeline: " + ", ".join(f"{k[:2]} {v:.0f} s" for k, v in result["pipeline"].items()))
    return lines
