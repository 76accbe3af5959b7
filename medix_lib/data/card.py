"""The data card: counts by split, source, modality and task type, answer lengths and image counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import datasets
import numpy as np

from medix_lib.data.schema import has_image


def data_card(dsdict: datasets.DatasetDict) -> dict:
    """Counts by split, source, modality and task type, plus answer-length statistics (words) and image counts."""
    card: dict[str, Any] = {"splits": {}, "by_source": {}, "by_modality": {}, "by_task_type": {}}
    lengths_all = []
    for split, ds in dsdict.items():
        lengths = [len(a.split()) for a in ds["answer"]]
        lengths_all.extend(lengths)
        card["splits"][split] = {"rows": len(ds), "with_image": int(sum(has_image(ds)))}
        for col, key in (("source", "by_source"), ("modality", "by_modality"), ("task_type", "by_task_type")):
            for value, n in Counter(ds[col]).items():
                card[key].setdefault(value, {s: 0 for s in dsdict})[split] = n
    arr = np.asarray(lengths_all or [0])
    card["answer_words"] = {"mean": round(float(arr.mean()), 2), "median": float(np.median(arr)),
                            "p90": float(np.percentile(arr, 90)), "max": int(arr.max())}
    card["rows"] = sum(v["rows"] for v in card["splits"].values())
    for key in ("by_source", "by_modality", "by_task_type"):
        card[key] = dict(sorted(card[key].items(), key=lambda kv: -sum(kv[1].values())))
    return card
