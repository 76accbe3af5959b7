"""Figures of pictures and rows: the data card (01), the picture pool, example rows and the evaluation gallery (04)."""

from __future__ import annotations

import math
import random
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from medix_lib.plotting import PALETTE


def data_counts(card: dict):
    """Bar charts of rows by source, modality and task type, stacked by split. Returns the figure."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 2, 1]})
    for ax, key, title in zip(axes, ("by_source", "by_modality", "by_task_type"), ("source", "modality", "task type")):
        labels = list(card[key])
        bottom = np.zeros(len(labels))
        for split in card["splits"]:
            vals = np.asarray([card[key][lab].get(split, 0) for lab in labels], dtype=float)
            ax.bar(range(len(labels)), vals, bottom=bottom, label=split)
            bottom += vals
        ax.set_xticks(range(len(labels)), [lab.replace("synthetic/", "") for lab in labels], rotation=60, ha="right",
                      fontsize=8)
        ax.bar_label(ax.containers[-1], labels=[str(int(b)) for b in bottom], fontsize=7, padding=1)
        ax.set_title(f"rows by {title}")
    axes[0].set_ylabel("rows")
    axes[0].legend()
    fig.tight_layout()
    return fig


def answer_lengths(dsdict):
    """Histogram of reference-answer length in words, per split. Returns the figure."""
    fig, ax = plt.subplots(figsize=(7, 4))
    all_lengths = [len(a.split()) for ds in dsdict.values() for a in ds["answer"]] or [1]
    bins = np.arange(0, max(all_lengths) + 2) if max(all_lengths) < 40 else 40
    for split, ds in dsdict.items():
        ax.hist([len(a.split()) for a in ds["answer"]], bins=bins, alpha=0.6, label=split)
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("rows")
    ax.set_yscale("log")
    ax.set_title("reference answer lengths")
    ax.legend()
    fig.tight_layout()
    return fig


def picture_sheet(pool: list[dict], cols: int = 6):
    """Every picture of the pool (``data.picture_pool``) as a thumbnail, framed by split (test pictures first, in
    orange), titled with its modality and source file. Returns the figure."""
    colors = {"train": PALETTE[0], "test": PALETTE[1]}
    rows = max(1, math.ceil(len(pool) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, pic in zip(axes.flat, pool):
        thumb = pic["image"].copy()
        thumb.thumbnail((128, 128))
        ax.imshow(thumb)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(colors[pic["split"]])
            spine.set_linewidth(3)
        origin = pic["origin"].replace("skimage.data.", "skimage:")
        origin = origin if len(origin) <= 32 else origin[:31] + "…"
        ax.set_title(f"{pic['split']} · {pic['modality']}\n{origin}", fontsize=7,
                     color=colors[pic["split"]] if pic["split"] == "test" else "0.15")
    fig.legend(handles=[Patch(edgecolor=c, facecolor="none", linewidth=3, label=f"{split} pictures")
                        for split, c in colors.items()], loc="upper right", ncol=2, fontsize=8)
    fig.suptitle(f"The picture pool: {len(pool)} pictures, split whole by source file", x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def image_examples(ds, n: int = 12, seed: int = 0, cols: int = 4):
    """Grid of image rows with their modality, question and reference answer. Returns the figure."""
    from medix_lib.data import has_image

    idx = [i for i, has in enumerate(has_image(ds)) if has]
    random.Random(seed).shuffle(idx)
    idx = idx[:n]
    rows = max(1, math.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        row = ds[i]
        thumb = row["image"].copy()
        thumb.thumbnail((160, 160))  # keeps the saved PNG/SVG small; the panel is ~3 inches wide anyway
        ax.imshow(thumb)
        title = f"<{row['modality']}>\nQ: {row['question']}\nA: {row['answer']}"
        ax.set_title("\n".join(textwrap.wrap(title, 36, replace_whitespace=False)[:6]), fontsize=7, loc="left")
    fig.tight_layout()
    return fig


def gallery_images(entries: list[dict], title: str, cols: int = 4):
    """The pictures of ``evaluation.gallery``'s image rows, each with its question, reference and every candidate's
    verdict (the full answers are in the gallery's table). Returns the figure, or None without image rows."""
    shown = [e for e in entries if e["image"] is not None]
    if not shown:
        return None
    cols = min(cols, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, e in zip(axes.flat, shown):
        thumb = e["image"].copy()
        thumb.thumbnail((160, 160))  # keeps the saved PNG/SVG small, as in image_examples
        ax.imshow(thumb)
        lines = [line for part in (e["item"], f"Q: {e['question']}", f"A: {e['reference']}")
                 for line in textwrap.wrap(part, 38)]
        ax.set_title("\n".join(lines[:8]), fontsize=7, loc="left")
        said = [line for m, a in e["answers"].items() for line in textwrap.wrap(
                    f"{m}: {a['verdict'] or 'not judged'}" + (f" (refused: {a['refused']})" if a["refused"] else "")
                    + f" · {textwrap.shorten(a['final_answer'] or '(empty)', 40)}", 44, subsequent_indent="  ")]
        ax.text(0, -0.04, "\n".join(said), transform=ax.transAxes, va="top", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
