"""One style for every figure in outputs/: seaborn whitegrid, colour-blind palette, PNG + SVG side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless everywhere; save_figure shows each figure in a notebook explicitly
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

PALETTE = sns.color_palette("colorblind")
COMPONENT_COLORS = {"accuracy": PALETTE[0], "semantic": PALETTE[1], "modality": PALETTE[2], "format": PALETTE[3],
                    "composite": PALETTE[7]}
DIFFERENCE_COLORS = {"above": PALETTE[2], "below": PALETTE[3], "spans": PALETTE[7]}  # a paired CI against 0


def use_style() -> None:
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook",
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titleweight": "bold",
                      "svg.hashsalt": "medix"})  # fixed salt: SVG ids stay stable across runs, diffs stay small


use_style()


def save_figure(fig, figures_dir: str | Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` under ``figures_dir``, show the PNG under the cell that made it when a
    notebook kernel runs this (JupyterLab and papermill alike: the Agg backend above shows nothing by itself), close
    the figure, and return the paths."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = [figures_dir / f"{name}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    _show_in_notebook(paths[0])
    return paths


def _show_in_notebook(png: Path) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if getattr(get_ipython(), "kernel", None) is not None:
        display(Image(filename=str(png)))


def mechanics_note(ax, text: str = "mechanics-only: tiny offline models, not a quality result") -> None:
    """Stamp a figure whose numbers come from toy offline models, so nobody mistakes it for a finding.

    Written below the axes (the saved bounding box grows to fit it), where it cannot hide a curve or a bar.
    """
    ax.annotate(text, xy=(1.0, 0.0), xycoords="axes fraction", xytext=(0, -34), textcoords="offset points",
                ha="right", va="top", fontsize=8, color="0.4", style="italic")


def _roc_axes(ax, heading: str | None = None, **legend) -> None:
    """Common frame of every ROC panel: rates on both axes, the legend out of the curves' way (``legend`` are
    ``Axes.legend`` options, its ``title`` included)."""
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    if heading:
        ax.set_title(heading)
    ax.legend(loc="lower right", **{"fontsize": 7.5, **legend})


def reward_distributions(scores: dict[str, list[float | None]], title: str):
    """One histogram per reward component (None = judge failure, counted in the panel title)."""
    names = list(scores)
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names), 2.9), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        values = np.array([v for v in scores[name] if v is not None], dtype=float)
        missing = len(scores[name]) - len(values)
        ax.hist(values, bins=np.linspace(0, 1, 11), color=COMPONENT_COLORS.get(name, PALETTE[4]), edgecolor="white")
        ax.set_title(name + (f" ({missing} failed)" if missing else ""))
        ax.set_xlim(0, 1)
        ax.set_xlabel("reward")
    axes[0][0].set_ylabel("completions")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reward_curves(records: list[dict], components: list[str], title: str, effect: dict | None = None):
    """Mean reward per step over the completions generated at that step, per component and the composite, image and
    text prompts apart when both occur; the first and last quarter of steps shaded with the composite's change."""
    kinds = sorted({r["kind"] for r in records})
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.4 * len(kinds), 3.8), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        rows = [r for r in records if r["kind"] == kind]
        steps = sorted({r["step"] for r in rows})
        for name in [*components, "composite"]:
            means = [np.nanmean([r[name] for r in rows if r["step"] == s and r.get(name) is not None] or [np.nan])
                     for s in steps]
            ax.plot(steps, means, marker="o" if name != "composite" else "s", ms=3, lw=2.5 if name == "composite"
                    else 1.2, label=name, color=COMPONENT_COLORS.get(name))
        if effect and len(steps) > 1:
            for (lo, hi), shade in ((effect["first_steps"], "0.9"), (effect["last_steps"], "0.8")):
                ax.axvspan(lo - 0.5, hi + 0.5, color=shade, zorder=0)
        ax.set_xlabel("optimizer step")
        ax.set_title(f"{kind} prompts (n={len(rows)} completions)", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("mean reward of the step's completions")
    axes[0][-1].legend(loc="upper left", fontsize=8, ncols=3)
    if effect:
        title += (f"\ncomposite, last vs first quarter of steps: {effect['diff']:+.3f} "
                  f"[{effect['ci_low']:+.3f}, {effect['ci_high']:+.3f}] (n={effect['n_a']}, {effect['n_b']})")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def warmup_curve(warmup: dict, target: float, title: str):
    """The format warm-up: loss per step and the format reward on held-out prompts at each check, the target dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    if warmup["losses"]:
        ax.plot(range(1, len(warmup["losses"]) + 1), warmup["losses"], color=PALETTE[7], lw=1, label="SFT loss")
    ax.set_xlabel("warm-up step")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    steps, rates = zip(*warmup["format_curve"]) if warmup["format_curve"] else ((), ())
    twin.plot(steps, rates, "o-", color=COMPONENT_COLORS["format"], label="format reward (held-out prompts)")
    twin.axhline(target, ls="--", color="0.3", lw=1)
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("format reward")
    twin.grid(False)
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def alignment_curve(record: dict, title: str):
    """The projector alignment (image -> caption SFT): loss per step, and caption-fact F1 before and after on the
    training pictures and on held-out pictures, beside a blind baseline that writes the training split's most common
    caption without looking."""
    fig, (loss_ax, bar_ax) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.4, 1]})
    curve = record["loss_curve"]
    loss_ax.plot(range(1, len(curve) + 1), curve, color=PALETTE[7], lw=1)
    loss_ax.set_xlabel("alignment step")
    loss_ax.set_ylabel("caption loss")
    loss_ax.set_title(f"{record['n_train_views']} views of {len(record['train_pictures'])} training pictures",
                      fontsize=9)
    groups = [("train_pictures", "training pictures"), ("heldout", "held-out pictures")]
    x = np.arange(len(groups))
    for offset, (key, label, color) in zip((-0.2, 0.2), (("caption_accuracy_before", "before", PALETTE[7]),
                                                         ("caption_accuracy_after", "after", PALETTE[2]))):
        values = [record[key][g]["f1"] for g, _ in groups]
        bar_ax.bar(x + offset, values, width=0.4, color=color, label=label)
    bar_ax.axhline(record["heldout_blind_baseline"]["f1"], ls="--", color="0.3", lw=1,
                   label="blind baseline (held-out)")
    bar_ax.set_xticks(x, [f"{name}\n(n={record['caption_accuracy_after'][g]['n_images']} images)"
                          for g, name in groups])
    bar_ax.set_ylim(0, 1.05)
    bar_ax.set_ylabel("caption-fact F1")
    bar_ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def time_split(history: list[dict], title: str):
    """Seconds per optimizer step, split into generation, reward and update."""
    rows = [h for h in history if "time/update" in h]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    bottom = np.zeros(len(rows))
    for part, color in (("generation", PALETTE[0]), ("reward", PALETTE[1]), ("update", PALETTE[2])):
        values = np.array([h[f"time/{part}"] for h in rows])
        ax.bar([h["step"] for h in rows], values, bottom=bottom, color=color, label=part)
        bottom += values
    total = bottom.sum()
    share = sum(h["time/reward"] for h in rows) / total if total else float("nan")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("seconds")
    ax.set_title(f"{title}\nreward: {100 * share:.1f}% of step time", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def modality_probe(result: dict, title: str):
    """``vlm.modality_probe``: per picture, the share of its views whose nearest training picture in the tower's
    feature space has its modality (test pictures: the real split; training pictures: leave one out)."""
    rows = sorted(result["pictures"].items(), key=lambda kv: (kv[1]["split"] != "test", kv[1]["modality"], kv[0]))
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.8))
    colors = {"test": PALETTE[3], "train": PALETTE[0]}
    for k, (key, p) in enumerate(rows):
        ax.barh(k, max(p["accuracy"], 0.006), color=colors[p["split"]])  # a sliver marks a 0
        nearest = ", ".join(f"{m.lower()} {n}" for m, n in list(p["nearest"].items())[:2])
        ax.text(p["accuracy"] + 0.02, k, f"nearest: {nearest}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{key.split(':', 1)[-1]} ({p['modality'].lower()})" for key, p in rows],
                  fontsize=7.5)
    ax.invert_yaxis()
    handles = [Patch(color=colors["test"], label=f"test picture vs training pictures (mean {result['heldout']:.2f})"),
               Patch(color=colors["train"], label=f"training picture, left out (mean {result['leave_one_out']:.2f})")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=7.5, ncol=1)
    ax.set_xlim(0, 1.5)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel(f"share of its views ({result['views_per_picture']} per picture) whose nearest training picture has "
                  f"its modality", fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def semantic_calibration(similarities: list[float], labels: list[bool], thresholds: dict[str, float], title: str,
                         mechanics_only: bool):
    """Cosine of gold answer pairs by label (left) and its ROC (right), each named threshold marked on both."""
    from sklearn.metrics import roc_auc_score, roc_curve

    sims, gold = np.asarray(similarities, dtype=float), np.asarray(labels, dtype=bool)
    fig, (hist, roc) = plt.subplots(1, 2, figsize=(8.6, 3.3))
    bins = np.linspace(min(-0.1, sims.min()), 1, 23)
    hist.hist([sims[gold], sims[~gold]], bins=bins, label=["equivalent", "not equivalent"],
              color=[PALETTE[2], PALETTE[3]], edgecolor="white")
    fpr, tpr, _ = roc_curve(gold, sims)
    roc.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    roc.plot(fpr, tpr, lw=2, color=COMPONENT_COLORS["semantic"], label=f"cosine: AUC {roc_auc_score(gold, sims):.2f}")
    for i, (name, t) in enumerate(thresholds.items()):
        color = PALETTE[4 + i]
        hist.axvline(t, color=color, ls="--", lw=1.5, label=f"{name} ({t:.2f})")
        roc.plot([(sims[~gold] >= t).mean()], [(sims[gold] >= t).mean()], "o", ms=8, color=color, mec="black",
                 label=name)
    hist.set_xlabel("cosine(answer, reference)")
    hist.set_ylabel("pairs")
    hist.legend(fontsize=7.5)
    _roc_axes(roc)
    fig.suptitle(title)
    if mechanics_only:
        mechanics_note(roc)
    fig.tight_layout()
    return fig


def reward_vs_gold(rows: list[dict], components: list[str], title: str, mechanics_only: bool):
    """Mean reward per gold group, one bar group per (``pair_type``, ``label``) in ``rows`` (plus one key per
    component): a pair type holding both YES and NO pairs (verbose, cross-negation) gets one group for each, so its
    YES pairs should sit near 1 and its NO pairs near 0. YES groups come first. Judge failures (None, NaN) are left
    out of the means."""
    groups = sorted({(r["pair_type"], bool(r["label"])) for r in rows}, key=lambda g: (not g[1], g[0]))
    members = {g: [r for r in rows if (r["pair_type"], bool(r["label"])) == g] for g in groups}
    fig, ax = plt.subplots(figsize=(max(5.6, 1.1 * len(groups) * max(1, len(components)) / 2), 3.4))
    width = 0.8 / max(1, len(components))
    for j, name in enumerate(components):
        means = [np.mean([r[name] for r in members[g] if r[name] is not None and not np.isnan(r[name])]
                         or [np.nan]) for g in groups]
        ax.bar(np.arange(len(groups)) + (j - (len(components) - 1) / 2) * width, means, width, label=name,
               color=COMPONENT_COLORS.get(name), edgecolor="white")
    ax.set_xticks(np.arange(len(groups)),
                  [f"{t}\n{'YES' if label else 'NO'}, n={len(members[(t, label)])}" for t, label in groups],
                  fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("mean reward")
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=len(components))
    if mechanics_only:
        mechanics_note(ax)
    fig.tight_layout()
    return fig


def judge_vs_embedding(similarities: list[float], verdicts: list[float | None], groups: list[str], title: str,
                       mechanics_only: bool):
    """Embedding cosine against the judge's verdict, one point per answer (jittered), coloured by ``groups``; the
    title carries their point-biserial correlation. Judge failures are left out."""
    keep = [i for i, v in enumerate(verdicts) if v is not None]
    sims = np.array([similarities[i] for i in keep], dtype=float)
    said = np.array([verdicts[i] for i in keep], dtype=float)
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for i, group in enumerate(sorted(set(groups))):
        mask = np.array([groups[k] == group for k in keep])
        ax.scatter(sims[mask], said[mask] + rng.uniform(-0.12, 0.12, mask.sum()), s=18, alpha=0.7,
                   color=PALETTE[i], label=group)
    r = np.corrcoef(sims, said)[0, 1] if len(set(said)) > 1 and len(set(sims)) > 1 else float("nan")
    ax.set_yticks([0, 1], ["judge NO", "judge YES"])
    ax.set_xlabel("cosine(answer, reference)")
    ax.set_title(f"{title}\npoint-biserial r = {r:.2f} (n={len(keep)})")
    ax.legend(fontsize=8, loc="center left")
    if mechanics_only:
        mechanics_note(ax)
    fig.tight_layout()
    return fig


def probe_scores(rows: list[dict], components: list[str], title: str, mechanics_only: bool):
    """Reward-hacking probes (``probes.run`` rows): the highest score over cases per probe and component, with the
    ceiling in brackets; cells above their ceiling are outlined in red (controls: below full reward)."""
    names = list(dict.fromkeys(r["probe"] for r in rows))
    columns = [*components, "composite"]
    best = np.array([[max(r[c] if r[c] is not None else 0.0 for r in rows if r["probe"] == p) for c in columns]
                     for p in names])
    ceiling = np.array([[next(r[f"{c}_ceiling"] for r in rows if r["probe"] == p) for c in columns]
                        for p in names])
    control = np.array([next(r["kind"] for r in rows if r["probe"] == p) == "control" for p in names])
    fig, ax = plt.subplots(figsize=(1.25 * len(columns) + 3.2, 0.3 * len(names) + 1.3))
    annot = np.array([[f"{best[i, j]:.2f} [{ceiling[i, j]:.2f}]" for j in range(len(columns))]
                      for i in range(len(names))])
    sns.heatmap(best, annot=annot, fmt="", cmap="Greens", vmin=0, vmax=1, cbar=False, ax=ax, annot_kws={"fontsize": 7},
                xticklabels=columns, yticklabels=[f"{n} (control)" if c else n for n, c in zip(names, control)])
    for i in range(len(names)):
        for j in range(len(columns)):
            bad = best[i, j] < 1 - 1e-9 if control[i] else best[i, j] > ceiling[i, j] + 1e-9
            if bad:
                ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=8)
    if mechanics_only:
        mechanics_note(ax)
    fig.tight_layout()
    return fig


def judge_meta_evaluation(results: dict[str, dict], title: str, mechanics_only: bool):
    """Judges against gold-labelled answer pairs (``judge.meta_evaluate`` results by name): one confusion matrix per
    judge, then every judge's ROC curve of P(YES) with its AUC and Cohen's kappa in the legend."""
    names = list(results)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.0 * len(names) + 3.6, 3.3), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * len(names) + [1.25]})
    for ax, name in zip(axes[0], names):
        r = results[name]
        matrix = np.array(r["confusion"])
        sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, square=True,
                    xticklabels=["NO", "YES"], yticklabels=["NO", "YES"])
        ax.set_xlabel("judge said")
        ax.set_ylabel("gold")
        ax.set_title(f"{name}\nacc {r['accuracy']:.2f}, failed {r['failures']}", fontsize=10)
    roc_ax = axes[0][-1]
    roc_ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    for i, name in enumerate(names):
        r = results[name]
        if r.get("roc"):
            roc_ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], color=PALETTE[i], lw=2,
                        label=f"{name}: AUC {r['auc']:.2f}, κ {r['cohen_kappa']:.2f}")
    _roc_axes(roc_ax, "ROC of P(YES)", fontsize=8)
    fig.suptitle(title)
    if mechanics_only:
        mechanics_note(roc_ax)
    fig.tight_layout()
    return fig


def _verifier_colors(names: list[str]) -> dict[str, tuple]:
    return {n: PALETTE[i] for i, n in enumerate(names)}


def verifier_roc(result: dict, title: str):
    """ROC of each scorer (trained verifier, zero-shot LLM, embedding cosine) on held-out concept-disjoint pairs,
    with the validation-chosen threshold marked on each curve (``verifier.meta_evaluation`` result)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    colors = _verifier_colors(list(result["methods"]))
    labels = np.array(result["labels"]["test"], dtype=bool)
    for name, m in result["methods"].items():
        ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], lw=2, color=colors[name],
                label=f"{name}: AUC {m['auc']:.2f} (clinical {m['clinical_auc']:.2f})")
        said = np.array(m["scores"]["test"]) >= m["threshold"]
        ax.plot([said[~labels].mean()], [said[labels].mean()], marker="o", ms=7, color=colors[name], mec="black")
    _roc_axes(ax, title, title="dot: threshold from validation", title_fontsize=7.5)
    fig.tight_layout()
    return fig


def verifier_pair_type_auc(result: dict, title: str, target: float = 0.85):
    """AUC per pair type for each scorer; a NO-only type is ranked against all YES pairs (and vice versa), the
    mixed ``negation-asym`` type within itself. The dashed line is the per-type target."""
    methods = result["methods"]
    kinds = [k for k in next(iter(methods.values()))["per_type_auc"]
             if any(m["per_type_auc"][k] is not None for m in methods.values())]
    counts = {k: sum(1 for x in result["kinds"]["test"] if x == k) for k in kinds}
    fig, ax = plt.subplots(figsize=(max(6.4, 0.75 * len(kinds) * len(methods) / 1.6), 3.6))
    width = 0.8 / len(methods)
    colors = _verifier_colors(list(methods))
    for j, (name, m) in enumerate(methods.items()):
        ys = [m["per_type_auc"][k] if m["per_type_auc"][k] is not None else np.nan for k in kinds]
        ax.bar(np.arange(len(kinds)) + (j - (len(methods) - 1) / 2) * width, ys, width, label=name,
               color=colors[name], edgecolor="white")
    ax.axhline(target, ls="--", color="0.3", lw=1)
    ax.axhline(0.5, ls=":", color="0.6", lw=1)
    ax.set_xticks(np.arange(len(kinds)), [f"{k}\n(n={counts[k]})" for k in kinds], rotation=35, ha="right",
                  fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("AUC of P(YES)")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=7.5, ncols=len(methods))
    fig.tight_layout()
    return fig


def verifier_reliability(result: dict, title: str):
    """Reliability diagram of P(YES) on held-out pairs (LLM scorers only: cosine is not a probability), with the
    expected calibration error in the legend and the number of pairs per bin as bars."""
    methods = {n: m for n, m in result["methods"].items() if m.get("reliability")}
    colors = _verifier_colors(list(result["methods"]))
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.6, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    for j, (name, m) in enumerate(methods.items()):
        r = m["reliability"]
        pts = [(c, f) for c, f in zip(r["confidence"], r["frequency"]) if c is not None]
        ax.plot([c for c, _ in pts], [f for _, f in pts], marker="o", lw=2, color=colors[name],
                label=f"{name}: ECE {r['ece']:.3f}")
        width = 0.08 / len(methods)
        centers = np.array(r["edges"][:-1]) + 0.05
        hist.bar(centers + (j - (len(methods) - 1) / 2) * width, r["count"], width, color=colors[name])
    ax.set_ylabel("observed YES frequency")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7.5)
    hist.set_xlabel("predicted P(YES)")
    hist.set_ylabel("pairs")
    hist.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def bench_summary(result: dict):
    """The performance harness on one page: judge ways, HTTP concurrency, reward per component, reward scaling, a
    GRPO step TRL's way and this project's; each panel says the machine's load while it was measured."""
    step = result.get("grpo_step")
    fig, axes = plt.subplots(1, 5 if step else 4, figsize=(21 if step else 17, 3.8))
    local, http, reward = result["judge_local"], result["judge_http"], result["reward"]
    ax = axes[0]
    names = ["release\n(serial)", "layer\ncold", "layer cold\nagain", "layer\nwarm"]
    values = [local["release_seconds"], local["layer_cold"]["seconds"], local["layer_later_step"]["seconds"],
              max(local["layer_warm"]["seconds"], 1e-4)]
    ax.bar(names, values, color=[PALETTE[3], PALETTE[0], PALETTE[1], PALETTE[2]])
    ax.set_yscale("log")
    ax.bar_label(ax.containers[0], labels=[f"{v:.2g} s" for v in values], fontsize=8)
    ax.set_ylabel("seconds (log)")
    ax.set_title(f"judge, {local['items']} items: {local['speedup_cold']:.0f}x (1st call), "
                 f"{local['speedup_later_step']:.0f}x (again)\nload {local['load_before']}", fontsize=10)
    ax = axes[1]
    conc = list(http["throughput"])
    ax.bar([str(c) for c in conc], [http["throughput"][c]["items_per_s"] for c in conc], color=PALETTE[0])
    ax.set_xlabel("concurrency")
    ax.set_ylabel("items / s")
    ax.set_title(f"HTTP judge, {http['latency_s'] * 1000:.0f} ms latency: {http['concurrency_64_over_1']:.0f}x\n"
                 f"load {http['load_before']}", fontsize=10)
    ax = axes[2]
    parts = reward["seconds_per_component"]
    ax.bar(list(parts), list(parts.values()), color=[COMPONENT_COLORS.get(k, PALETTE[4]) for k in parts])
    ax.set_ylabel("seconds per GRPO batch")
    share = reward["share_of_grpo_step"]
    ax.set_title(f"reward, {reward['completions']} completions"
                 + (f": {100 * share:.1f}% of a step" if share else "") + f"\nload {reward['load_before']}",
                 fontsize=10)
    ax = axes[3]
    sizes = [s["completions"] for s in result["scaling"]]
    ax.plot(sizes, [s["seconds"] for s in result["scaling"]], "o-", color=PALETTE[0], label="seconds")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("completions")
    ax.set_ylabel("seconds")
    twin = ax.twinx()
    twin.plot(sizes, [s["peak_rss_mb"] for s in result["scaling"]], "s--", color=PALETTE[1], label="peak RSS (MB)")
    twin.set_ylabel("peak RSS (MB)")
    twin.grid(False)
    ax.set_title(f"reward scaling\nload {result['scaling'][-1]['load']}", fontsize=10)
    if step:
        _grpo_step_panel(axes[4], step)
    m = result["machine"]
    fig.suptitle(f"medix bench ({result['mode']}): {m['cpu']}, {m['cpu_count']} cores", fontsize=11)
    fig.tight_layout()
    return fig


def _grpo_step_panel(ax, step: dict) -> None:
    """Seconds per GRPO step, stacked by part, TRL's way beside this project's."""
    ways = {"TRL\n(fp32)": step["trl"], "shared prefix\n(default)": step["medix"],
            "shared prefix\n+ bf16 update": step["medix_bf16"]}
    bottom = [0.0] * len(ways)
    for i, part in enumerate(("generation", "update", "reward")):
        values = [w[f"{part}_s"] / w["steps_timed"] for w in ways.values()]
        ax.bar(list(ways), values, bottom=bottom, color=PALETTE[i], label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:.1f} s", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("seconds per step")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"GRPO step, {step['completions_per_step']} completions: {step['speedup']:.2f}x\n"
                 f"load {step['load_before']}", fontsize=10)


def verifier_clinical_classes(result: dict, title: str, target: float = 0.90):
    """AUC per class of the hand-written clinical pairs, one bar group per method, the target dashed."""
    methods = result["methods"]
    classes = list(next(iter(methods.values()))["clinical_per_class_auc"])
    fig, ax = plt.subplots(figsize=(13, 3.8))
    width = 0.8 / len(methods)
    colors = _verifier_colors(list(methods))
    for i, (name, m) in enumerate(methods.items()):
        values = [m["clinical_per_class_auc"][c] or 0.0 for c in classes]
        ax.bar(np.arange(len(classes)) + i * width, values, width, label=f"{name} (all: {m['clinical_auc']:.2f})",
               color=colors[name])
    ax.axhline(target, ls="--", color="0.3", lw=1)
    ax.axhline(0.5, ls=":", color="0.6", lw=1)
    ax.set_xticks(np.arange(len(classes)) + width * (len(methods) - 1) / 2, [c.replace("_", " ") for c in classes],
                  rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AUC")
    n = result["pair_counts"]["clinical"]
    ax.set_title(f"{title} (n={sum(sum(v.values()) for v in n.values())})")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: no bar hidden behind it
    fig.tight_layout()
    return fig


# Figures of pictures and rows, and of the evaluation report, live apart (one module stays readable); callers keep
# writing plotting.<name>.
from medix_lib.plotting.pictures import (answer_lengths, data_counts, gallery_images, image_examples,  # noqa: E402
                                         picture_sheet)
from medix_lib.plotting.reports import (FAMILY_LABELS, accuracy_by_family, paired_differences,  # noqa: E402
                                        picture_reliance, reward_differences, task_accuracy)
from medix_lib.plotting.training import validation_curve  # noqa: E402
