"""MedMCQA (AIIMS/NEET-PG entrance exams): 4-option multiple choice, text only; the benchmark is the validation set.

Layouts read by :func:`load_medmcqa` (fields as in the release README, github.com/medmcqa/medmcqa): ``id``,
``question``, ``opa``..``opd``, ``cop`` (correct option), ``choice_type``, ``exp``, ``subject_name``,
``topic_name``. The two published layouts number ``cop`` differently:

- the original release (the Google-Drive zip linked from the README): ``train.json``, ``dev.json``, ``test.json``,
  each holding one JSON record per line despite the ``.json`` name; ``cop`` counts from 1 (the README's example has
  ``"cop": 1`` for option a; the release's own ``dataset.py`` subtracts 1); ``test.json`` has no answers.
- the hub copy ``openlifescienceai/medmcqa`` (parquet, splits train / validation / test; used by
  lm-evaluation-harness, MedEvalKit and the MediX-R1 evaluation, which all index the options with ``cop``
  directly): ``cop`` is a 0-based class label, -1 in ``test``.

The numbering is read off the layout (``.json`` files named like the release -> 1-based; parquet or a hub stream ->
0-based). Any other file (a ``.jsonl`` or ``.csv`` export) is decided by its values: a 0 proves 0-based, a 4 proves
1-based; with neither the load stops and asks for ``cop_base``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from medix_lib.data import DataError

from ._common import Located, RowStream, as_text, locate, resolve_split, text
from ._mcq import mcq_row

OPTION_FIELDS = ("opa", "opb", "opc", "opd")
PATTERNS = ("{split}.json", "data/{split}-*.parquet", "{split}-*.parquet", "{split}/*.parquet", "{split}.parquet",
            "{split}.jsonl", "{split}.csv")
_RELEASE_FILES = {"train.json", "dev.json", "test.json"}


def _cop(rec: dict, rid) -> int:
    cop = rec.get("cop")
    if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():  # CSV exports
        cop = int(cop)
    if isinstance(cop, bool) or not isinstance(cop, int):
        raise DataError("medmcqa", rid, "cop", f"expected an option number, got {cop!r}")
    if cop < 0:
        raise DataError("medmcqa", rid, "cop", f"{cop} marks a hidden answer (the test split has none); use the "
                        "validation split")
    return cop


def cop_base_of(found: Located) -> int:
    """0 or 1: how ``cop`` counts in these files, from the layout, else from the values.

    >>> cop_base_of(Located("medmcqa", hub_id="openlifescienceai/medmcqa"))
    0
    """
    if found.hub_id or all(f.suffix == ".parquet" for f in found.files):
        return 0
    if all(f.name in _RELEASE_FILES for f in found.files):
        return 1
    seen = {_cop(rec, i) for i, rec in enumerate(found.records())}
    if 0 in seen and 4 in seen:
        raise DataError("medmcqa", "*", "cop", f"values 0 and 4 both occur in {', '.join(map(str, found.files))}; "
                        "neither numbering fits")
    if 0 in seen or 4 in seen:
        return 0 if 0 in seen else 1
    raise ValueError(f"medmcqa: cannot tell whether cop counts from 0 (hub copy) or 1 (original release) in "
                     f"{', '.join(map(str, found.files))}: no 0 or 4 among its values; pass cop_base=0 or cop_base=1")


def load_medmcqa(source: str | Path = "openlifescienceai/medmcqa", split: str = "validation",
                 limit: int | None = None, keep_option_dependent: bool = False,
                 cop_base: int | None = None) -> RowStream:
    """MedMCQA from either layout in the module docstring; ``cop_base`` only overrides the detected numbering."""
    name = "medmcqa"
    sp = resolve_split(name, split)
    if cop_base not in (None, 0, 1):
        raise ValueError(f"{name}: cop_base must be 0, 1 or None (detect), got {cop_base!r}")

    def make(stats: Counter):
        found = locate(name, source, sp, PATTERNS)
        base = cop_base_of(found) if cop_base is None else cop_base
        for i, rec in enumerate(found.records()):
            rid = rec.get("id", i)
            options = [as_text(rec.get(f), name, rid, f) for f in OPTION_FIELDS]
            cop = _cop(rec, rid)
            if not base <= cop < base + 4:
                raise DataError(name, rid, "cop", f"{cop} is outside {base}..{base + 3}, the numbering of this "
                                f"layout ({'original release, from 1' if base else 'hub copy, from 0'})")
            row = mcq_row(name, rid, sp, text(rec, "question", name, rid), options, cop - base, stats,
                          keep_option_dependent)
            if row:
                yield row

    return RowStream(name, make, limit)
