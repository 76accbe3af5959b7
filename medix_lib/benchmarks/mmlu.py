"""MMLU's six medical subjects (Hendrycks et al.): 4-option multiple choice, text only; the benchmark is ``test``.

Layouts read by :func:`load_mmlu`, from the dataset's root folder (or one file):

- the original release (``data.tar``): ``data/{dev,val,test}/<subject>_<split>.csv``, header-less rows
  ``question, A, B, C, D, answer letter``. The root may be the folder holding ``data/`` or ``data/`` itself.
- the hub layout of ``cais/mmlu`` and of its ``mmlu_no_train`` copies (``hails/mmlu_no_train`` is the MediX-R1
  evaluation's source; the copies drop ``auxiliary_train``): ``<subject>/{dev,validation,test}-*.parquet`` (the
  parquet converter's ``<subject>/<split>/*.parquet`` too) with ``question``, ``subject``, ``choices`` (list),
  ``answer`` (0-based index, as lm-evaluation-harness reads it); ``all/<split>-*.parquet`` holds every subject,
  filtered here by ``subject``.

Splits: ``dev`` is the 5-shot exemplar split, ``validation`` (``val``) and ``test`` are evaluation splits.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from medix_lib.data import DataError

from ._common import RowStream, Split, as_text, locate, resolve_split, text
from ._mcq import mcq_row

MEDICAL_SUBJECTS = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                    "professional_medicine")
_SPLITS = (Split("dev", ("dev",)), Split("validation", ("validation", "val", "validate")), Split("test", ("test",)))
_CSV_FIELDS = ["question", "A", "B", "C", "D", "answer"]
_LETTERS = "ABCD"


def _patterns(subject: str) -> tuple[str, ...]:
    release = f"{subject}_{{split}}.csv"
    return (f"data/{{split}}/{release}", f"{{split}}/{release}", release, "{config}/{split}-*.parquet",
            "{config}/{split}/*.parquet", "all/{split}-*.parquet", "all/{split}/*.parquet")


def _item(rec: dict, name: str, rid: str) -> tuple[list[str], int]:
    if "choices" in rec:
        options = [as_text(c, name, rid, "choices") for c in rec["choices"]]
        answer = rec.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise DataError(name, rid, "answer", f"expected a 0-based option index, got {answer!r}")
        return options, answer
    options = [text(rec, k, name, rid) for k in _LETTERS]
    letter = text(rec, "answer", name, rid).upper()
    if letter not in _LETTERS:
        raise DataError(name, rid, "answer", f"{letter!r} is not a letter A-D")
    return options, _LETTERS.index(letter)


def load_mmlu(source: str | Path = "hails/mmlu_no_train", split: str = "test", subject: str = "clinical_knowledge",
              limit: int | None = None, keep_option_dependent: bool = False) -> RowStream:
    """One medical subject of MMLU from a layout in the module docstring (a hub id streams config ``subject``)."""
    if subject not in MEDICAL_SUBJECTS:
        raise ValueError(f"unknown MMLU medical subject {subject!r}; valid: {', '.join(MEDICAL_SUBJECTS)}")
    name = f"mmlu_{subject}"
    sp = resolve_split(name, split, _SPLITS)

    def make(stats: Counter):
        found = locate(name, source, sp, _patterns(subject), config=subject)
        header_less = all(f.suffix == ".csv" for f in found.files) and found.files
        for i, rec in enumerate(found.records(_CSV_FIELDS if header_less else None)):
            rid = f"{sp.name}-{i}"
            if rec.get("subject") not in (None, subject):  # the all/ files mix subjects
                stats["filtered_other_subject"] += 1
                continue
            options, idx = _item(rec, name, rid)
            row = mcq_row(name, rid, sp, text(rec, "question", name, rid), options, idx, stats,
                          keep_option_dependent)
            if row:
                yield row

    return RowStream(name, make, limit)
