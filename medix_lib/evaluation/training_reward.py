"""The training reward on held-out responses: did RL raise what it was trained on, on rows it never saw?

The judge's accuracy (:mod:`~medix_lib.evaluation.report`) is the paper's headline; this puts beside it the
composite reward of notebook 03 and each of its components (format, modality, semantic, the judge's accuracy under
the reward prompt) on the same stored responses, with paired bootstrap intervals between candidates. On image rows
the modality component is the modality accuracy: the tag names the picture's imaging modality or it does not.
Nothing is generated here: every response comes from the results store.
"""

from __future__ import annotations

import numpy as np

from medix_lib.evaluation.stats import bootstrap_ci, paired_bootstrap
from medix_lib.evaluation.store import ResultsStore


def reward_scores(store: ResultsStore, model: str, task: str, rows: list[dict], funcs: list,
                  weights: list[float]) -> dict[str, dict]:
    """item -> every reward component and ``composite`` of ``model``'s stored response to it; ``rows`` give each
    item's reference modality. ``funcs, weights``: ``rewards.build(settings)``, the registry notebook 03 trains with."""
    from medix_lib.rewards import score_components

    modality = {r["id"]: r.get("modality") for r in rows}
    responses = [r for r in store.responses(model, task) if r["item"] in modality]
    if not responses:
        return {}
    table = score_components(funcs, weights, [r["response"] for r in responses],
                             answer=[r["reference"] for r in responses],
                             modality=[modality[r["item"]] for r in responses],
                             question=[r["prompt"] for r in responses])
    return {r["item"]: {name: values[i] for name, values in table.items()} for i, r in enumerate(responses)}


def reward_report(store: ResultsStore, models: list[str], rows_by_task: dict[str, list[dict]], settings,
                  compare: list[tuple[str, str]] = (), n_boot: int = 2000, seed: int = 0) -> dict:
    """Per task and model: the mean of each component with its bootstrap interval and n; per ``(baseline, model)``
    pair and task: the paired difference of each component over the items both answered.

    A component that abstains on an item (``None``: e.g. no modality tag asked for) leaves that item out of that
    component's mean and comparison only."""
    from medix_lib.rewards import build

    funcs, weights = build(settings)  # once: the judge and embedder serve every candidate and task
    scores = {m: {t: reward_scores(store, m, t, rows, funcs, weights) for t, rows in rows_by_task.items()}
              for m in models}
    out: dict = {"tasks": {}, "comparisons": {}}
    for task in rows_by_task:
        out["tasks"][task] = {}
        for m in models:
            if not scores[m][task]:
                continue
            names = next(iter(scores[m][task].values())).keys()
            summary = {}
            for name in names:
                values = [s[name] for s in scores[m][task].values() if s[name] is not None]
                low, high = bootstrap_ci(values, n_boot, seed)
                summary[name] = {"n": len(values), "mean": float(np.mean(values)) if values else float("nan"),
                                 "ci_low": low, "ci_high": high}
            out["tasks"][task][m] = summary
    for base, model in compare:
        entry = {}
        for task in rows_by_task:
            a, b = scores[base][task], scores[model][task]
            items = sorted(set(a) & set(b))
            if not items:
                continue
            entry[task] = {}
            for name in a[items[0]]:
                both = [i for i in items if a[i][name] is not None and b[i][name] is not None]
                entry[task][name] = paired_bootstrap([a[i][name] for i in both], [b[i][name] for i in both],
                                                     n_boot, seed)
        out["comparisons"][f"{model} - {base}"] = entry
    return out


def reward_table(result: dict):
    """One row per (task, model, component): n, mean [CI]; then the paired differences."""
    import pandas as pd

    rows = [{"task": t, "model": m, "component": c, "n": s["n"], "mean": s["mean"], "ci_low": s["ci_low"],
             "ci_high": s["ci_high"]}
            for t, by_model in result["tasks"].items() for m, comps in by_model.items() for c, s in comps.items()]
    rows += [{"task": t, "model": pair, "component": c, "n": s["n"], "mean": s["diff"], "ci_low": s["ci_low"],
              "ci_high": s["ci_high"]}
             for pair, by_task in result["comparisons"].items() for t, comps in by_task.items()
             for c, s in comps.items()]
    return pd.DataFrame(rows).set_index(["task", "model", "component"]).round(3)
