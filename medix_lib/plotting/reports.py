"""Figures of the evaluation report (04): judge accuracy per task, by question type and modality, paired
differences between candidates, and accuracy with and without the picture."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from medix_lib.plotting import DIFFERENCE_COLORS, PALETTE


def task_accuracy(result: dict, title: str):
    """Judge accuracy per task and model with 95% bootstrap intervals, the macro average last; n, judge failures and
    each model's rule refusals (NO without the judge model: exact matches are no refusals) under each task's name;
    the judge and its prompt hash in the title."""
    tasks = [t for t in result["tasks"] if result["tasks"][t]]
    models = list(result["macro"])
    groups = tasks + ["macro average"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(groups) + 1.5), 4.0))
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        stats = [result["tasks"][t].get(model) for t in tasks] + [result["macro"][model]]
        acc = np.array([s["accuracy"] if s else np.nan for s in stats])
        low = np.array([s["ci_low"] if s else np.nan for s in stats])
        high = np.array([s["ci_high"] if s else np.nan for s in stats])
        x = np.arange(len(groups)) + (j - (len(models) - 1) / 2) * width
        ax.bar(x, np.nan_to_num(acc), width, color=PALETTE[j % len(PALETTE)], label=model, edgecolor="white")
        ax.errorbar(x, acc, yerr=[np.nan_to_num(acc - low), np.nan_to_num(high - acc)], fmt="none", ecolor="0.25",
                    capsize=3, lw=1)
    labels = []
    for t in tasks:
        s = next(iter(result["tasks"][t].values()))
        failed = sum(v["judge_failures"] for v in result["tasks"][t].values())
        # per candidate: a sum over candidates reads as refusals of n items; a report without the field says nothing
        refused = [f"{m}\u00a0{sum(v['refused_by_rule'].values())}" for m, v in result["tasks"][t].items()
                   if "refused_by_rule" in v]  # a no-break space: a line may end after a count, never inside one
        labels.append(f"{t}\nn={s['n']}, judge failed {failed}"
                      + ("\n" + textwrap.fill(f"refused: {', '.join(refused)}", 26) if refused else ""))
    ax.set_xticks(np.arange(len(groups)), labels + ["macro average"], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("judge accuracy (95% bootstrap CI)")
    ax.set_title(f"{title}\njudge {result['judge']}, prompt {result['prompt_hash']}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


FAMILY_LABELS = {"open": "open", "closed": "closed\n(yes/no, MCQ)", "report": "report\n(grade / 5)"}
_FAMILY_ORDER = ["open", "closed", "report"]


def accuracy_by_family(result: dict, title: str):
    """``evaluation.report``'s ``families``: each candidate's accuracy pooled over every task, by question type
    (open; closed: yes/no and MCQ; report: rubric grade / 5) on the left and by the rows' modality tag on the right,
    with 95% bootstrap intervals and n under each group (``n=a/b``: the candidates answered different numbers, in
    legend order of those with any). A gain only on closed questions is a gain in picking one of a few given
    answers."""
    models = list(result["families"])
    panels = [("by_type", "question type"), ("by_modality", "modality")]
    order = {f: i for i, f in enumerate(_FAMILY_ORDER)}  # question types in this order, modalities by name
    groups = {key: sorted({f for m in models for f in result["families"][m][key]},
                          key=lambda f: (f == "unknown", order.get(f, len(order)), f)) for key, _ in panels}
    ratios = [max(1, len(groups[key])) for key, _ in panels]
    fig, axes = plt.subplots(1, 2, figsize=(min(18.0, max(7.0, 0.5 * max(1, len(models)) * sum(ratios) + 3.0)), 4.2),
                             sharey=True, gridspec_kw={"width_ratios": ratios})
    width = 0.8 / max(1, len(models))
    for ax, (key, heading) in zip(axes, panels):
        families = groups[key]
        for j, model in enumerate(models):
            stats = [result["families"][model][key].get(f) for f in families]
            acc = np.array([s["accuracy"] if s else np.nan for s in stats])
            low = np.array([s["ci_low"] if s else np.nan for s in stats])
            high = np.array([s["ci_high"] if s else np.nan for s in stats])
            x = np.arange(len(families)) + (j - (len(models) - 1) / 2) * width
            ax.bar(x, np.nan_to_num(acc), width, color=PALETTE[j % len(PALETTE)], label=model, edgecolor="white")
            ax.errorbar(x, acc, yerr=[np.nan_to_num(acc - low), np.nan_to_num(high - acc)], fmt="none",
                        ecolor="0.25", capsize=3, lw=1)
        labels = []
        for f in families:
            ns = [result["families"][m][key][f]["n"] for m in models if f in result["families"][m][key]]
            count = str(ns[0]) if len(set(ns)) == 1 else "/".join(map(str, ns))
            labels.append(f"{FAMILY_LABELS.get(f, f) if key == 'by_type' else f}\nn={count}")
        ax.set_xticks(np.arange(len(families)), labels, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(heading, fontsize=10)
    axes[0].set_ylabel("judge accuracy (95% bootstrap CI)")
    if models:
        axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: no bar hidden
    fig.suptitle(f"{title}\njudge {result['judge']}, prompt {result['prompt_hash']}", fontsize=10)
    fig.tight_layout()
    return fig


def _intervals(ax, rows: list[tuple[str, dict]], xlabel: str) -> None:
    """One labelled row per (label, {diff, ci_low, ci_high, n}): the difference with its interval, coloured by the
    interval's side of 0 (a resolved drop must not look like a gain), its figures written beside it."""
    for k, (_, d) in enumerate(rows):
        side = "above" if d["ci_low"] > 0 else "below" if d["ci_high"] < 0 else "spans"
        ax.errorbar(d["diff"], k, xerr=[[d["diff"] - d["ci_low"]], [d["ci_high"] - d["diff"]]], fmt="o",
                    color=DIFFERENCE_COLORS[side], capsize=4)
        ax.text(d["ci_high"] + 0.02, k, f"{d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}], n={d['n']}",
                va="center", fontsize=8)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.set_xlim(-1, 1.6)
    ax.set_xlabel(xlabel)
    ax.legend(handles=[Patch(color=DIFFERENCE_COLORS[side], label=f"interval {side} 0") for side in DIFFERENCE_COLORS],
              fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: no interval's label hidden


def paired_differences(comparisons: dict[str, dict], title: str, metric: str = "accuracy"):
    """Each comparison's paired difference per task with its 95% bootstrap interval; an interval clear of 0 is a
    difference the sample resolves, coloured by its sign (a resolved drop must not look like a gain)."""
    rows = [(f"{name}\n{task}", d) for name, per_task in comparisons.items() for task, d in per_task.items()]
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * max(3, len(rows)) + 1.2))
    _intervals(ax, rows, f"paired difference in {metric} (95% bootstrap CI)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def reward_differences(comparisons: dict[str, dict], components: list[str], title: str):
    """:func:`paired_differences` of ``evaluation.reward_report``'s comparisons, a row per task and component."""
    flat = {name: {f"{task} · {c}": comps[c] for task, comps in per_task.items() for c in components
                   if c in comps and comps[c]["n"]}
            for name, per_task in comparisons.items()}
    return paired_differences(flat, title, metric="reward (modality: modality accuracy)")


def picture_reliance(reliance: dict, title: str):
    """``evaluation.report``'s ``picture_reliance``: per image control and candidate, judge accuracy with the picture
    and without it (the same items, pooled over the image tasks) on the left, and their paired difference (with
    minus without) with its 95% bootstrap interval on the right, pooled and per task, coloured by the interval's side
    of 0: an interval above 0 says the picture measurably helps, one spanning 0 that this sample cannot tell."""
    groups = [(control, model) for control, entry in reliance.items() for model in entry["pooled"]]
    rows = []  # (control, model, task or None for the pooled, entry): per task only where a candidate has several
    for control, model in groups:
        tasks = [t for t, by_model in reliance[control]["tasks"].items() if model in by_model]
        rows.append((control, model, None if len(tasks) > 1 else tasks[0], reliance[control]["pooled"][model]))
        rows += [(control, model, t, reliance[control]["tasks"][t][model]) for t in tasks if len(tasks) > 1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 0.55 * max(3, len(rows)) + 1.6),
                                      gridspec_kw={"width_ratios": [1, 1.6]})
    x = np.arange(len(groups))
    for k, (label, key) in enumerate((("with the picture", "with"), ("without (control)", "without"))):
        values = [reliance[c]["pooled"][m][key] for c, m in groups]
        left.bar(x + (k - 0.5) * 0.38, values, 0.38, color=PALETTE[k], label=label, edgecolor="white")
    left.set_xticks(x, [f"{m}\n{c}, n={reliance[c]['pooled'][m]['n']}" for c, m in groups], fontsize=8)
    left.set_ylim(0, 1)
    left.set_ylabel("judge accuracy, image tasks pooled")
    left.legend(fontsize=8, loc="upper left")
    _intervals(right, [(f"{model} · {control}\n{task or 'all image tasks'}", d) for control, model, task, d in rows],
               "accuracy with minus without the picture (95% bootstrap CI)")
    right.invert_yaxis()  # the first candidate on top, as on the left
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
