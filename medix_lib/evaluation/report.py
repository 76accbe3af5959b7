"""The report, recomputed from the results store alone: per task n, judge accuracy with a bootstrap 95% CI, the
judge's failure rate, rule-based metrics beside it (exact match, token F1, option-letter accuracy for MCQ-origin
items), accuracy by question type (open, closed, report), by modality and by the rows' question family, the macro
average over tasks, paired comparisons of two models, and each model's accuracy on image tasks with and without the
picture (``picture_reliance``); the judge and its prompt hash on every table. Every stored response, with its
verdict, is exported beside the report as JSON lines, and in the MediX-R1 release's own results layout.

Report tasks (metric ``judge_rubric``) are graded with the rubric prompt, so their verdicts are stored, and read
here, under its hash (:func:`task_prompt_hash`): every function below takes the judges' own prompt hash."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from medix_lib.evaluation.image_control import IMAGE_CONTROLS, control_task
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
    no refusal); the row's ``task_type``, ``modality`` and ``family`` (None when stored without them). Items whose
    every round failed have ``correct`` None: reported, never scored. ``prompt_hash``: the judges' own (a report
    task's verdicts are read under the rubric's, :func:`task_prompt_hash`)."""
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
            "task_type": r["task_type"], "modality": r["modality"], "family": r["family"]}
    return out


def _accuracy(scores: list[dict], n_boot: int, seed: int) -> dict:
    """n (every item), scored (items with a verdict), accuracy (mean score) and its bootstrap 95% interval."""
    correct = [s["correct"] for s in scores if s["correct"] is not None]
    low, high = bootstrap_ci(correct, n_boot, seed)
    return {"n": len(scores), "scored": len(correct),
            "accuracy": float(np.mean(correct)) if correct else float("nan"), "ci_low": low, "ci_high": high}


def breakdown(scores: list[dict], n_boot: int, seed: int) -> dict[str, dict[str, dict]]:
    """Accuracy of ``scores`` (item_scores' values) three ways: by question type (``by_type``: open, closed, report,
    unknown), by the rows' modality tag (``by_modality``) and by the rows' question family as their dataset names it
    (``by_family``: the synthetic set's templates, image_plane, hpo_lay_term, ...), each group with n, scored,
    accuracy and its bootstrap interval; a response stored without the value is ``unknown``. Every item is in one
    group of each split, so a split's n sum to ``len(scores)``. Types in a fixed order: open, closed, report;
    modalities and families by name; ``unknown`` last."""
    type_order = {t: i for i, t in enumerate(dict.fromkeys(QUESTION_FAMILIES.values()))}
    splits = {"by_type": lambda s: question_family(s["task_type"]), "by_modality": lambda s: s["modality"] or UNKNOWN,
              "by_family": lambda s: s["family"] or UNKNOWN}
    out = {}
    for key, group_of in splits.items():
        groups: dict[str, list[dict]] = {}
        for s in scores:
            groups.setdefault(group_of(s), []).append(s)
        # question types in their fixed order, the other splits' groups by name; unknown last everywhere
        order = sorted(groups, key=lambda g: (g == UNKNOWN, type_order.get(g, 0) if key == "by_type" else 0, g))
        out[key] = {g: _accuracy(groups[g], n_boot, seed) for g in order}
    return out


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


def _scored_in_both(a: dict[str, dict], b: dict[str, dict]) -> tuple[list[float], list[float]]:
    """The scores of the items both ``a`` and ``b`` (item_scores) scored, paired, in item order."""
    both = sorted(i for i in a if i in b and a[i]["correct"] is not None and b[i]["correct"] is not None)
    return [a[i]["correct"] for i in both], [b[i]["correct"] for i in both]


def _reliance(with_picture: list[float], without: list[float], n_boot: int, seed: int) -> dict:
    """Accuracy with and without the picture on the same items, and their paired difference (with minus without)."""
    return {"n": len(with_picture), "with": float(np.mean(with_picture)), "without": float(np.mean(without)),
            **{k: v for k, v in paired_bootstrap(without, with_picture, n_boot, seed).items() if k != "n"}}


POOLED_IMAGE_TASKS = "all image tasks"


def picture_reliance(store: ResultsStore, scores: dict[str, dict[str, dict]], tasks: list[str], judge: str,
                     prompt_hash: str, n_boot: int, seed: int) -> dict:
    """Per image control the store holds (``blank``, ``shuffled``): per task and model, and per model pooled over
    its image tasks (``pooled``, a micro average), n (items scored with and without the picture), accuracy ``with``
    and ``without`` the picture on those items, and their paired difference ``diff`` (with minus without) with its
    bootstrap interval. ``scores``: model -> task -> item_scores of the normal run. A control with no item scored
    both ways is left out."""
    out = {}
    for control in IMAGE_CONTROLS[1:]:
        entry: dict = {"tasks": {}, "pooled": {}}
        for m, by_task in scores.items():
            pooled_with, pooled_without = [], []
            for t in tasks:
                with_picture, without = _scored_in_both(
                    by_task[t], item_scores(store, m, control_task(t, control), judge, prompt_hash))
                if with_picture:
                    entry["tasks"].setdefault(t, {})[m] = _reliance(with_picture, without, n_boot, seed)
                    pooled_with += with_picture
                    pooled_without += without
            if pooled_with:
                entry["pooled"][m] = _reliance(pooled_with, pooled_without, n_boot, seed)
        if entry["pooled"]:
            out[control] = entry
    return out


def report(store: ResultsStore, models: list[str], tasks: list[str], judge: str, prompt_hash: str,
           n_boot: int = 2000, seed: int = 0, compare: list[tuple[str, str]] = ()) -> dict:
    """Everything notebook 04 and ``python -m medix_lib evaluate`` print and plot, from the store alone.

    ``judge, prompt_hash``: the judge's key in the store and its prompt's hash; report tasks are read under the
    rubric prompt's hash (``prompt_hashes`` says each task's). Per task and model: n, accuracy and its interval, the
    judge's failures, rule metrics, and ``by_type`` / ``by_modality`` / ``by_family`` (:func:`breakdown`);
    ``families``: the same breakdown per model pooled over every item of every task (a micro average: a rubric task's
    items count with their grade / 5). ``compare``: (baseline, model) pairs; each gets the paired bootstrap CI of the
    accuracy difference per task (items both models were judged on). ``picture_reliance``: accuracy with and without
    the picture where the store holds an image control (:func:`picture_reliance`); the controlled responses count
    nowhere else."""
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
            before, after = _scored_in_both(scores[base][t], scores[model][t])
            if before:
                entry[t] = paired_bootstrap(before, after, n_boot, seed)
        out["comparisons"][f"{model} - {base}"] = entry
    out["picture_reliance"] = picture_reliance(store, scores, tasks, judge, prompt_hash, n_boot, seed)
    return out


def export_responses(store: ResultsStore, models: list[str], tasks: list[str], judge: str, prompt_hash: str,
                     path: str | Path) -> int:
    """Every stored response of ``models`` on ``tasks`` to ``path`` (JSON lines, sorted by candidate, task and item),
    so a reader can check any number of the report against the answers behind it: candidate, task, item, prompt,
    reference, response (in full), final_answer (what the judge saw), verdict (YES, NO; None when no round
    succeeded), p_yes (mean over rounds; None when an answer guard refused before the judge), score (what the report
    averages: 1 or 0, a rubric's grade / 5), refused_by (the rule that said NO without the judge model: an answer
    guard, ``restates_prompt`` or one of the judge's own rules; else None), task_type, modality and family (the
    row's; None when stored without them). An image task's controlled responses follow it, under the task
    ``<task>@<control>`` (the picture replaced; see :mod:`~medix_lib.evaluation.image_control`). Returns the number of
    lines."""
    lines = []
    keys = sorted([*tasks, *(control_task(t, c) for t in tasks for c in IMAGE_CONTROLS[1:])])
    for model in sorted(models):
        for task in keys:
            scores = item_scores(store, model, task, judge, prompt_hash)
            for r in store.responses(model, task):
                s = scores[r["item"]]
                lines.append(json.dumps({
                    "candidate": model, "task": task, "item": r["item"], "prompt": r["prompt"],
                    "reference": r["reference"], "response": r["response"], "final_answer": r["answer"],
                    "verdict": s["verdict"], "p_yes": s["p_yes"], "score": s["correct"], "refused_by": s["refused"],
                    "task_type": r["task_type"], "modality": r["modality"], "family": r["family"]},
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


BREAKDOWNS = {"type": "by_type", "modality": "by_modality", "family": "by_family"}
ALL_TASKS = "all tasks"
_ACCURACY_COLUMNS = ("n", "scored", "accuracy", "ci_low", "ci_high")


def breakdown_table(result: dict, by: str = "type", tasks: list[str] | None = None):
    """Accuracy by question type (``by="type"``: open, closed = yes_no + mcq, report), by modality
    (``by="modality"``) or by the rows' question family (``by="family"``): one row per (task, model, group) with n,
    scored, accuracy [CI], then per model the same pooled over every task (task ``all tasks``). A group's n sum to its
    task's n. ``tasks``: only these tasks' rows, and no pooled rows (they pool every task)."""
    import pandas as pd

    if by not in BREAKDOWNS:
        raise ValueError(f"breakdown by {by!r}; valid: {', '.join(BREAKDOWNS)}")
    key = BREAKDOWNS[by]
    rows = [{"task": t, "model": m, by: group, **{c: s[c] for c in _ACCURACY_COLUMNS}}
            for t, by_model in result["tasks"].items() if tasks is None or t in tasks
            for m, summary in by_model.items() for group, s in summary[key].items()]
    if tasks is None:
        rows += [{"task": ALL_TASKS, "model": m, by: group, **{c: s[c] for c in _ACCURACY_COLUMNS}}
                 for m, groups in result["families"].items() for group, s in groups[key].items()]
    frame = pd.DataFrame(rows, columns=["task", "model", by, *_ACCURACY_COLUMNS]).set_index(["task", "model", by])
    frame = frame.round(3)
    frame.attrs["caption"] = _caption(result)
    return frame


def reliance_table(result: dict):
    """The report's ``picture_reliance`` as a table: one row per (control, task, model), each model's image tasks
    pooled last (task ``all image tasks``), with n (items scored with and without the picture), accuracy with and
    without it, and the paired difference (with minus without) [CI]."""
    import pandas as pd

    columns = ("n", "with", "without", "diff", "ci_low", "ci_high")
    rows = [{"control": control, "task": t, "model": m, **{c: s[c] for c in columns}}
            for control, entry in result.get("picture_reliance", {}).items()
            for t, by_model in [*entry["tasks"].items(), (POOLED_IMAGE_TASKS, entry["pooled"])]
            for m, s in by_model.items()]
    frame = pd.DataFrame(rows, columns=["control", "task", "model", *columns]).set_index(["control", "task", "model"])
    frame = frame.round(3)
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
