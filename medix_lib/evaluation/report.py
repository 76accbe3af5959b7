"""The report, recomputed from the results store alone: per task n, judge accuracy with a bootstrap 95% CI, the
judge's failure rate, rule-based metrics beside it (exact match, token F1, option-letter accuracy for MCQ-origin
items), accuracy by question type (open, closed, report) and by modality, the macro average over tasks, and paired
comparisons of two models; the judge and its prompt hash on every table. Every stored response, with its verdict,
is exported beside the report as JSON lines, and in the MediX-R1 release's own results layout.

Report tasks (metric ``judge_rubric``) are graded with the rubric prompt, so their verdicts are stored, and read
here, under its hash (:func:`task_prompt_hash`): every function below takes the judges' own prompt hash."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from medix_lib.evaluation.runner import grading_template
from medix_lib.evaluation.stats import bootstrap_ci, chosen_option, exact_match, paired_bootstrap, token_f1
from medix_lib.evaluation.store import ResultsStore

# question type -> its family in the open/closed breakdown; a stored response without a type reads "unknown"
QUESTION_FAMILIES = {"open": "open", "yes_no": "closed", "mcq": "closed", "report": "report"}
UNKNOWN = "unknown"


def task_prompt_hash(task: str, prompt_hash: str) -> str:
    """The prompt hash ``task``'s verdicts are stored under: the rubric template's for report tasks (the template
    :func:`~medix_lib.evaluation.runner.grading_template` names), else ``prompt_hash``, the judges' own.

    >>> from medix_lib.judge import TEMPLATES
    >>> task_prompt_hash("mimic_cxr_report", "abc") == TEMPLATES["rubric-v1"].hash, task_prompt_hash("medqa", "abc")
    (True, 'abc')
    """
    from medix_lib.judge import TEMPLATES

    template = grading_template(task)
    return TEMPLATES[template].hash if template else prompt_hash


def question_family(task_type: str | None) -> str:
    """open, closed (yes_no and mcq) or report; ``unknown`` for a response stored without its type.

    >>> [question_family(t) for t in ("open", "yes_no", "mcq", "report", None)]
    ['open', 'closed', 'closed', 'report', 'unknown']
    """
    return QUESTION_FAMILIES.get(task_type, UNKNOWN)


def item_scores(store: ResultsStore, model: str, task: str, judge: str, prompt_hash: str) -> dict[str, dict]:
    """item -> its judged correctness (majority of rounds; a rubric's mean score), the verdict (YES, NO; None without
    a successful round) and its mean P(YES), rule metrics and verdict notes: ``rule``, any rule that decided without
    the judge model, and ``refused``, that rule when it said NO (an exact match is decided by a rule too, but it is
    no refusal); the row's ``task_type`` and ``modality`` (None when stored without them). Items whose every round
    failed have ``correct`` None: reported, never scored. ``prompt_hash``: the judges' own (a report task's verdicts
    are read under the rubric's, :func:`task_prompt_hash`)."""
    verdicts = store.verdicts(model, task, judge, task_prompt_hash(task, prompt_hash))
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
            float(chosen is not None and r["choices"][chosen].strip() == r["reference"].strip()),
            "task_type": r["task_type"], "modality": r["modality"]}
    return out


def _accuracy(scores: list[dict], n_boot: int, seed: int) -> dict:
    """n (every item), scored (items with a verdict), accuracy (mean score) and its bootstrap 95% interval."""
    correct = [s["correct"] for s in scores if s["correct"] is not None]
    low, high = bootstrap_ci(correct, n_boot, seed)
    return {"n": len(scores), "scored": len(correct),
            "accuracy": float(np.mean(correct)) if correct else float("nan"), "ci_low": low, "ci_high": high}


def breakdown(scores: list[dict], n_boot: int, seed: int) -> dict[str, dict[str, dict]]:
    """Accuracy of ``scores`` (item_scores' values) by question family (``by_type``: open, closed, report, unknown)
    and by the rows' modality tag (``by_modality``; ``unknown`` when stored without one), each family with n, scored,
    accuracy and its bootstrap interval. Every item is in one family of each split, so a split's n sum to
    ``len(scores)``. Families in a fixed order: open, closed, report; modalities by name; ``unknown`` last."""
    by_type: dict[str, list[dict]] = {}
    by_modality: dict[str, list[dict]] = {}
    for s in scores:
        by_type.setdefault(question_family(s["task_type"]), []).append(s)
        by_modality.setdefault(s["modality"] or UNKNOWN, []).append(s)
    type_order = [*dict.fromkeys(QUESTION_FAMILIES.values()), UNKNOWN]
    return {"by_type": {k: _accuracy(by_type[k], n_boot, seed) for k in type_order if k in by_type},
            "by_modality": {k: _accuracy(by_modality[k], n_boot, seed)
                            for k in sorted(by_modality, key=lambda name: (name == UNKNOWN, name))}}


def task_summary(scores: dict[str, dict], n_boot: int, seed: int) -> dict:
    overall = _accuracy(list(scores.values()), n_boot, seed)
    options = [s["option_correct"] for s in scores.values() if s["option_correct"] is not None]
    failures = sum(s["failed"] for s in scores.values())
    return {**overall, "judge_failures": failures,
            "judge_fail_rate": failures / max(1, len(scores)),
            "refused_by_rule": dict(Counter(s["refused"] for s in scores.values() if s["refused"])),
            "accepted_by_rule": dict(Counter(s["rule"] for s in scores.values() if s["rule"] and not s["refused"])),
            "exact_match": float(np.mean([s["exact_match"] for s in scores.values()])) if scores else float("nan"),
            "token_f1": float(np.mean([s["token_f1"] for s in scores.values()])) if scores else float("nan"),
            "option_accuracy": float(np.mean(options)) if options else None,
            **breakdown(list(scores.values()), n_boot, seed)}


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

    ``judge, prompt_hash``: the judge's key in the store and its prompt's hash; report tasks are read under the
    rubric prompt's hash (``prompt_hashes`` says each task's). Per task and model: n, accuracy and its interval, the
    judge's failures, rule metrics, and ``by_type`` / ``by_modality`` (:func:`breakdown`); ``families``: the same
    breakdown per model pooled over every item of every task (a micro average: a rubric task's items count with their
    grade / 5). ``compare``: (baseline, model) pairs; each gets the paired bootstrap CI of the accuracy difference per
    task (items both models were judged on)."""
    scores = {m: {t: item_scores(store, m, t, judge, prompt_hash) for t in tasks} for m in models}
    out = {"judge": judge, "prompt_hash": prompt_hash,
           "prompt_hashes": {t: task_prompt_hash(t, prompt_hash) for t in tasks}, "tasks": {}, "macro": {},
           "families": {}, "comparisons": {}, "skipped": {m: store.skipped(m) for m in models}}
    for t in tasks:
        out["tasks"][t] = {m: task_summary(scores[m][t], n_boot, seed) for m in models if scores[m][t]}
    for m in models:
        pooled = [s for t in tasks for s in scores[m][t].values()]
        if pooled:
            out["families"][m] = breakdown(pooled, n_boot, seed)
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
    averages: 1 or 0, a rubric's grade / 5), refused_by (the rule that said NO without the judge model: an answer
    guard, ``restates_prompt`` or one of the judge's own rules; else None), task_type and modality (the row's; None
    when stored without them). Returns the number of lines."""
    lines = []
    for model in sorted(models):
        for task in sorted(tasks):
            scores = item_scores(store, model, task, judge, prompt_hash)
            for r in store.responses(model, task):
                s = scores[r["item"]]
                lines.append(json.dumps({
                    "candidate": model, "task": task, "item": r["item"], "prompt": r["prompt"],
                    "reference": r["reference"], "response": r["response"], "final_answer": r["answer"],
                    "verdict": s["verdict"], "p_yes": s["p_yes"], "score": s["correct"], "refused_by": s["refused"],
                    "task_type": r["task_type"], "modality": r["modality"]}, ensure_ascii=False))
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
    frame.attrs["caption"] = _caption(result)
    return frame


def _caption(result: dict) -> str:
    """The judge and its prompt hash, and any other hash a task was judged under (report tasks: the rubric's)."""
    others = {}
    for task, digest in result.get("prompt_hashes", {}).items():
        if digest != result["prompt_hash"]:
            others.setdefault(digest, []).append(task)
    return f"judge {result['judge']}, prompt {result['prompt_hash']}" + "".join(
        f"; {', '.join(tasks)}: prompt {digest}" for digest, tasks in others.items())


BREAKDOWNS = {"type": "by_type", "modality": "by_modality"}
ALL_TASKS = "all tasks"


def breakdown_table(result: dict, by: str = "type"):
    """Accuracy by question family (``by="type"``: open, closed = yes_no + mcq, report) or by modality
    (``by="modality"``): one row per (task, model, family) with n, scored, accuracy [CI], then per model the same
    pooled over every task (task ``all tasks``). A family's n sum to its task's n."""
    import pandas as pd

    if by not in BREAKDOWNS:
        raise ValueError(f"breakdown by {by!r}; valid: {', '.join(BREAKDOWNS)}")
    key = BREAKDOWNS[by]
    columns = ("n", "scored", "accuracy", "ci_low", "ci_high")
    rows = [{"task": t, "model": m, by: family, **{c: s[c] for c in columns}}
            for t, by_model in result["tasks"].items() for m, summary in by_model.items()
            for family, s in summary[key].items()]
    rows += [{"task": ALL_TASKS, "model": m, by: family, **{c: s[c] for c in columns}}
             for m, families in result["families"].items() for family, s in families[key].items()]
    frame = pd.DataFrame(rows, columns=["task", "model", by, *columns]).set_index(["task", "model", by]).round(3)
    frame.attrs["caption"] = _caption(result)
    return frame


def _underscored(name: str) -> str:
    """The release's ``convert_to_underscored``: the last part of a hub id, every other character than a letter or
    digit an underscore ("MBZUAI/MediX-R1-8B" -> "MediX_R1_8B")."""
    parts = name.split("/")
    return re.sub(r"[^a-zA-Z0-9]", "_", parts[-2] if parts[-1].strip() == "" and len(parts) > 1 else parts[-1])


# tasks the release names otherwise (eval/tasks.yaml); the rest share its names
RELEASE_TASK_NAMES = {"slake": "slake_vqa", "vqa_rad": "rad_vqa", "pathvqa": "path_vqa",
                      "mimic_cxr_summarization": "mimic_cxr_report_summarization",
                      "mimic_cxr_report": "mimic_cxr_report_generation"}


def export_submissions(store: ResultsStore, models: list[str], tasks: list[str], judge: str, prompt_hash: str,
                       folder: str | Path) -> dict[str, dict[str, Path]]:
    """Every stored response of ``models`` on ``tasks`` in the layout of the MediX-R1 release's ``eval/eval.py``
    (its ``--output_dir``), so its own scoring phase (``eval.py --score``) and any tool made for its files read them:

    - ``<folder>/<model>/<model>.jsonl``, the generation phase's file: a line per response with ``id``
      (``<task>_<k>``, the task under the release's name, ``k`` the item's place in item order), ``question`` (as
      asked), ``answer`` (the reference), ``response`` (in full) and ``answer_idx`` (the reference's option letter
      for MCQ-origin items, else None), then this project's ``item`` id, ``task`` and ``final_answer`` (what the
      judge saw);
    - ``<folder>/<model>/<model>_eval.jsonl``, the judging phase's: the same lines plus ``evaluation``:
      ``{"score": s}``, 1 or 0 (majority of rounds), or for report tasks the mean grade 0-5 (the release divides it by
      5 when scoring); a response without a successful verdict has no line here, as in the release before it is
      judged.

    ``<model>`` is the candidate's name as the release writes a model's ("grpo-1" -> "grpo_1"). Returns per
    candidate the two paths."""
    folder = Path(folder)
    names = {m: _underscored(m) for m in models}
    if len(set(names.values())) < len(names):
        raise ValueError(f"candidate names that the release's layout cannot tell apart: {names}")
    written = {}
    for model in models:
        generated, judged = [], []
        for task in tasks:
            release = RELEASE_TASK_NAMES.get(task, task)
            scale = 5.0 if grading_template(task) else 1.0
            scores = item_scores(store, model, task, judge, prompt_hash)
            for k, r in enumerate(store.responses(model, task)):
                index = r["choices"].index(r["reference"]) if r["reference"] in (r["choices"] or []) else None
                letter = "ABCDEFGHIJ"[index] if index is not None and index < 10 else None
                line = {"id": f"{release}_{k}", "question": r["prompt"], "answer": r["reference"],
                        "response": r["response"], "answer_idx": letter, "item": r["item"], "task": task,
                        "final_answer": r["answer"]}
                generated.append(line)
                correct = scores[r["item"]]["correct"]
                if correct is not None:
                    score = correct * scale if scale != 1.0 else int(correct)
                    judged.append({**line, "evaluation": {"score": score}})
        base = folder / names[model]
        base.mkdir(parents=True, exist_ok=True)
        paths = {"responses": base / f"{names[model]}.jsonl", "eval": base / f"{names[model]}_eval.jsonl"}
        for key, lines in (("responses", generated), ("eval", judged)):
            paths[key].write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        written[model] = paths
    return written
