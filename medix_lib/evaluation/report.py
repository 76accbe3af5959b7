"""The report, recomputed from the results store alone: per task n, judge accuracy with a bootstrap 95% CI, the
judge's failure rate, rule-based metrics beside it (exact match, token F1, option-letter accuracy for MCQ-origin
items), the macro average over tasks, and paired comparisons of two models; the judge and its prompt hash on every
table. Every stored response, with its verdict, is exported beside the report as JSON lines."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from medix_lib.evaluation.stats import bootstrap_ci, chosen_option, exact_match, paired_bootstrap, token_f1
from medix_lib.evaluation.store import ResultsStore


def item_scores(store: ResultsStore, model: str, task: str, judge: str, prompt_hash: str) -> dict[str, dict]:
    """item -> its judged correctness (majority of rounds; a rubric's mean score), the verdict (YES, NO; None without
    a successful round) and its mean P(YES), rule metrics and verdict notes: ``rule``, any rule that decided without
    the judge model, and ``refused``, that rule when it said NO (an exact match is decided by a rule too, but it is
    no refusal). Items whose every round failed have ``correct`` None: reported, never scored."""
    verdicts = store.verdicts(model, task, judge, prompt_hash)
    out = {}
    for r in store.responses(model, task):
        rounds = [v for v in verdicts.get(r["item"], []) if v["error"] is None]
        yes = sum(bool(v["label"]) for v in rounds)  # majority of rounds; a tie is not a majority
        if not rounds:
            correct = None
        elif rounds[0]["score"] is not None:  # rubric: mean grade / 5
            correct = float(np.mean([v["score"] for v in rounds]))
        else:
            correct = float(yes * 2 > len(rounds))
        chosen = chosen_option(r["answer"], r["choices"]) if r["choices"] else None
        ruled = next((v for v in rounds if v["rule"]), None)
        p_yes = [v["p_yes"] for v in rounds if v["p_yes"] is not None]
        out[r["item"]] = {
            "correct": correct, "failed": not rounds and bool(verdicts.get(r["item"])),
            "verdict": ("YES" if yes * 2 > len(rounds) else "NO") if rounds else None,
            "p_yes": float(np.mean(p_yes)) if p_yes else None,
            "rule": ruled["rule"] if ruled else None,
            "refused": ruled["rule"] if ruled and not ruled["label"] else None,
            "exact_match": exact_match(r["answer"], r["reference"]), "token_f1": token_f1(r["answer"], r["reference"]),
            "option_correct": None if not r["choices"] else
            float(chosen is not None and r["choices"][chosen].strip() == r["reference"].strip())}
    return out


def task_summary(scores: dict[str, dict], n_boot: int, seed: int) -> dict:
    correct = [s["correct"] for s in scores.values() if s["correct"] is not None]
    low, high = bootstrap_ci(correct, n_boot, seed)
    options = [s["option_correct"] for s in scores.values() if s["option_correct"] is not None]
    failures = sum(s["failed"] for s in scores.values())
    return {"n": len(scores), "scored": len(correct), "accuracy": float(np.mean(correct)) if correct else float("nan"),
            "ci_low": low, "ci_high": high, "judge_failures": failures,
            "judge_fail_rate": failures / max(1, len(scores)),
            "refused_by_rule": dict(Counter(s["refused"] for s in scores.values() if s["refused"])),
            "accepted_by_rule": dict(Counter(s["rule"] for s in scores.values() if s["rule"] and not s["refused"])),
            "exact_match": float(np.mean([s["exact_match"] for s in scores.values()])) if scores else float("nan"),
            "token_f1": float(np.mean([s["token_f1"] for s in scores.values()])) if scores else float("nan"),
            "option_accuracy": float(np.mean(options)) if options else None}


def _macro_bootstrap(per_task: dict[str, list[float]], n_boot: int, seed: int) -> tuple[float, float]:
    """Macro average's interval: items resampled within each task (tasks keep their weight of 1/#tasks)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(v, dtype=float) for v in per_task.values() if len(v)]
    if not arrays:
        return (float("nan"), float("nan"))
    draws = np.mean([a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1) for a in arrays], axis=0)
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def report(store: ResultsStore, models: list[str], tasks: list[str], judge: str, prompt_hash: str,
           n_boot: int = 2000, seed: int = 0, compare: list[tuple[str, str]] = ()) -> dict:
    """Everything notebook 04 and ``python -m medix_lib evaluate`` print and plot, from the store alone.

    ``compare``: (baseline, model) pairs; each gets the paired bootstrap CI of the accuracy difference per task
    (items both models were judged on) and of the macro average."""
    scores = {m: {t: item_scores(store, m, t, judge, prompt_hash) for t in tasks} for m in models}
    out = {"judge": judge, "prompt_hash": prompt_hash, "tasks": {}, "macro": {}, "comparisons": {},
           "skipped": {m: store.skipped(m) for m in models}}
    for t in tasks:
        out["tasks"][t] = {m: task_summary(scores[m][t], n_boot, seed) for m in models if scores[m][t]}
    for m in models:
        per_task = {t: [s["correct"] for s in scores[m][t].values() if s["correct"] is not None] for t in tasks}
        per_task = {t: v for t, v in per_task.items() if v}
        low, high = _macro_bootstrap(per_task, n_boot, seed)
        out["macro"][m] = {"tasks": len(per_task), "accuracy": float(np.mean([np.mean(v) for v in per_task.values()]))
                           if per_task else float("nan"), "ci_low": low, "ci_high": high}
    for base, model in compare:
        entry = {}
        for t in tasks:
            both = [i for i in scores[base][t] if i in scores[model][t]
                    and scores[base][t][i]["correct"] is not None and scores[model][t][i]["correct"] is not None]
            if both:
                entry[t] = paired_bootstrap([scores[base][t][i]["correct"] for i in both],
                                            [scores[model][t][i]["correct"] for i in both], n_boot, seed)
        out["comparisons"][f"{model} - {base}"] = entry
    return out


def export_responses(store: ResultsStore, models: list[str], tasks: list[str], judge: str, prompt_hash: str,
                     path: str | Path) -> int:
    """Every stored response of ``models`` on ``tasks`` to ``path`` (JSON lines, sorted by candidate, task and item),
    so a reader can check any number of the report against the answers behind it: candidate, task, item, prompt,
    reference, response (in full), final_answer (what the judge saw), verdict (YES, NO; None when no round
    succeeded), p_yes (mean over rounds; None when an answer guard refused before the judge), score (what the report
    averages: 1 or 0, a rubric's grade / 5) and refused_by (the rule that said NO without the judge model: an answer
    guard, ``restates_prompt`` or one of the judge's own rules; else None). Returns the number of lines."""
    lines = []
    for model in sorted(models):
        for task in sorted(tasks):
            scores = item_scores(store, model, task, judge, prompt_hash)
            for r in store.responses(model, task):
                s = scores[r["item"]]
                lines.append(json.dumps({
                    "candidate": model, "task": task, "item": r["item"], "prompt": r["prompt"],
                    "reference": r["reference"], "response": r["response"], "final_answer": r["answer"],
                    "verdict": s["verdict"], "p_yes": s["p_yes"], "score": s["correct"], "refused_by": s["refused"]},
                    ensure_ascii=False))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(line + "\n" for line in lines))
    return len(lines)


def table(result: dict):
    """One row per (task, model): n, accuracy [CI], judge failure rate, exact match, token F1, option accuracy; the
    macro average last. The judge and prompt hash are in the table's caption (``attrs``)."""
    import pandas as pd

    rows = [{"task": t, "model": m, "n": s["n"], "accuracy": s["accuracy"], "ci_low": s["ci_low"],
             "ci_high": s["ci_high"], "judge_fail_rate": s["judge_fail_rate"], "exact_match": s["exact_match"],
             "token_f1": s["token_f1"], "option_accuracy": s["option_accuracy"]}
            for t, by_model in result["tasks"].items() for m, s in by_model.items()]
    rows += [{"task": "macro average", "model": m, "n": s["tasks"], "accuracy": s["accuracy"], "ci_low": s["ci_low"],
              "ci_high": s["ci_high"]} for m, s in result["macro"].items()]
    frame = pd.DataFrame(rows).set_index(["task", "model"]).round(3)
    frame.attrs["caption"] = f"judge {result['judge']}, prompt {result['prompt_hash']}"
    return frame
