"""PubMedQA (PQA-L, expert-labelled): a research question on an abstract, answered yes / no / maybe; text only.

Layouts read by :func:`load_pubmedqa`:

- the original release (github.com/pubmedqa/pubmedqa, ``data/``): ``ori_pqal.json`` maps PMID -> ``QUESTION``,
  ``CONTEXTS`` (abstract sections), ``LABELS``, ``MESHES``, ``YEAR``, ``reasoning_required_pred``,
  ``reasoning_free_pred``, ``final_decision``, ``LONG_ANSWER``; ``test_ground_truth.json`` maps the 500 test PMIDs
  to their label (the official test set, scored by the repo's ``evaluation.py``). The repo's
  ``preprocess/split_dataset.py`` writes the same records to ``test_set.json`` and
  ``pqal_fold{0..9}/{train_set,dev_set}.json``; those files are read too (``fold`` picks the fold).
- the hub copy ``qiaojin/PubMedQA`` config ``pqa_labeled`` (one split, ``train``, all 1000 items; used by
  lm-evaluation-harness): ``pubid``, ``question``, ``context`` {``contexts``, ``labels``, ``meshes``, ...},
  ``long_answer``, ``final_decision``; locally ``pqa_labeled/train-*.parquet``.
- the MediX-R1 evaluation set (``sahalshajim/medix-eval-sets`` config ``pubmedqa``, split ``test``): the original
  record fields ``CONTEXTS``, ``QUESTION``, ``final_decision``, ``LONG_ANSWER`` as columns.

Labels stay the strings "yes", "no", "maybe": a boolean label (what YAML 1.1 and careless JSON writers make of
yes/no) is an error, never silently mapped. The reference is the label; the release's evaluation appends
``LONG_ANSWER`` to it, which this loader does not.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from medix_lib.data import DataError

from ._common import RowStream, Split, as_text, locate, make_row, resolve_split, text

LABELS = ["yes", "no", "maybe"]
_SPLITS = (Split("train", ("train",)), Split("validation", ("validation", "dev")), Split("test", ("test",)))


def _original_test(root: Path) -> list[dict] | None:
    """The official 500-item test set from ``ori_pqal.json`` + ``test_ground_truth.json``, labels cross-checked."""
    truth_file, pqal_file = root / "test_ground_truth.json", root / "ori_pqal.json"
    if not (truth_file.is_file() and pqal_file.is_file()):
        return None
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    pqal = json.loads(pqal_file.read_text(encoding="utf-8"))
    missing = [p for p in truth if p not in pqal]
    if missing:
        raise DataError("pubmedqa", missing[0], "pubid", f"in {truth_file.name} but not in {pqal_file.name}")
    for pmid, label in truth.items():
        if pqal[pmid].get("final_decision") != label:
            raise DataError("pubmedqa", pmid, "final_decision", f"{pqal[pmid].get('final_decision')!r} in "
                            f"{pqal_file.name} but {label!r} in {truth_file.name}")
    return [{"_key": pmid, **pqal[pmid]} for pmid in truth]


def load_pubmedqa(source: str | Path = "sahalshajim/medix-eval-sets", split: str = "test",
                  config: str | None = "pubmedqa", limit: int | None = None, with_context: bool = True,
                  fold: int = 0) -> RowStream:
    """PubMedQA from a layout in the module docstring. Pass ``config="pqa_labeled"`` with ``qiaojin/PubMedQA``.

    A folder with the original ``data/`` files gives ``test`` = the official 500 items and ``train`` /
    ``validation`` = fold ``fold`` of the repo's 10-fold split of the other 500 (run its split script first).
    """
    name = "pubmedqa"
    sp = resolve_split(name, split, _SPLITS)

    def records():
        path = Path(source).expanduser()
        base = path / "data" if (path / "data" / "ori_pqal.json").is_file() else path
        if sp.name == "test" and base.is_dir() and (original := _original_test(base)) is not None:
            return original
        patterns = ("test_set.json", "{split}.json", "{split}.jsonl", "{config}/{split}-*.parquet",
                    "data/{split}-*.parquet", "{split}-*.parquet") if sp.name == "test" else (
            f"pqal_fold{fold}/{{split}}_set.json", "{config}/{split}-*.parquet", "{split}.json", "{split}.jsonl")
        return locate(name, base if base.is_dir() else source, sp, patterns, config).records()

    def make(stats: Counter):
        for i, rec in enumerate(records()):
            rid = rec.get("pubid", rec.get("_key", i))
            question = text(rec, "question" if "question" in rec else "QUESTION", name, rid)
            label = text(rec, "final_decision", name, rid).lower()
            if label not in LABELS:
                raise DataError(name, rid, "final_decision", f"{label!r} is not one of {LABELS}")
            contexts = rec["context"].get("contexts") if isinstance(rec.get("context"), dict) else rec.get("CONTEXTS")
            contexts = [as_text(c, name, rid, "contexts") for c in contexts or []]
            if with_context and contexts:
                question = "Context: " + " ".join(contexts) + f"\nQuestion: {question}"
            yield make_row(name, rid, sp, question, label, "OTHER", "yes_no", None, list(LABELS))

    return RowStream(name, make, limit)
