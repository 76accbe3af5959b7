"""MedQA (USMLE) and the USMLE self-assessment sample exams: multiple-choice, text only.

MedQA layouts read by :func:`load_medqa` (checked against the release, the hub cards and the kits that use them):

- the original release (github.com/jind11/MedQA, ``data_clean/questions/US/``): JSON lines with ``question``,
  ``answer`` (option text), ``options`` ({"A": ..}), ``meta_info``, ``answer_idx`` (letter) and, in
  ``4_options/phrases_no_exclude_{train,dev,test}.jsonl``, ``metamap_phrases``; ``US/{train,dev,test}.jsonl`` is
  the 5-option set. ``GBaker/MedQA-USMLE-4-options`` republishes the two 4-option files unchanged (used by
  MedEvalKit).
- ``GBaker/MedQA-USMLE-4-options-hf`` (SWAG-style, used by lm-evaluation-harness and by the MediX-R1 evaluation):
  ``train.json``, ``dev.json``, ``test.json`` with ``id``, ``sent1`` (the question), ``sent2`` (empty),
  ``ending0``..``ending3``, ``label`` (0-based option index).
- ``bigbio/med_qa``: the ``med_qa_en_source`` schema (``meta_info``, ``question``, ``answer_idx``, ``answer``,
  ``options`` as a list of ``{"key", "value"}``) and the ``med_qa_en_bigbio_qa`` schema (``id``, ``question``,
  ``choices``, ``answer`` as a one-item list of option text). Its English config is the 5-option set.

USMLE self-assessment layouts read by :func:`load_usmle_sa`:

- ``HuggingSara/usmle_self_assessment`` (the MediX-R1 evaluation's ``usmle_sa``; one split, ``train``, 325 rows):
  ``question``, ``options`` ({"A".."I"}, unused letters null), ``answer`` (option text), ``answer_idx`` (letter);
  ``augtoma/usmle_self_eval_step{1,2,3}`` has the same fields in a ``test`` split.
- medAlpaca's copy of the USMLE sample exams (``medalpaca/medical_meadow_usmle_self_assessment``):
  ``step1.json``, ``step2.json``, ``step3.json`` (a list of ``{"question", "options"}``) with
  ``stepN_solutions.json`` (``{question number: letter}``), paired in file order as medAlpaca's own code does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from medix_lib.data import DataError

from ._common import Located, RowStream, Split, as_text, locate, read_json, resolve_split, text
from ._mcq import mcq_row

# The release's own root (data_clean/questions), its US/ folder or its 4_options/ folder, and the hub layouts.
MEDQA_PATTERNS = ("phrases_no_exclude_{split}.jsonl", "4_options/phrases_no_exclude_{split}.jsonl",
                  "US/4_options/phrases_no_exclude_{split}.jsonl", "{split}.jsonl", "{split}.json",
                  "data/{split}-*.parquet",
                  "{split}-*.parquet", "{split}/*.parquet", "{split}.parquet")


def _medqa_item(rec: dict, name: str, rid) -> tuple[str, list[str], int]:
    """(question, options, answer index) from a record in any of the MedQA layouts."""
    if "sent1" in rec:
        question = " ".join(t for t in (text(rec, "sent1", name, rid), str(rec.get("sent2") or "").strip()) if t)
        options = [as_text(rec.get(f"ending{i}"), name, rid, f"ending{i}") for i in range(4)]
        label = rec.get("label")
        if isinstance(label, bool) or not isinstance(label, int):
            raise DataError(name, rid, "label", f"expected a 0-based option index, got {label!r}")
        return question, options, label
    if isinstance(rec.get("answer"), list):  # bigbio_qa schema: the answer is the option text
        options = [as_text(c, name, rid, "choices") for c in rec.get("choices") or []]
        answer = as_text(rec["answer"][0] if rec["answer"] else None, name, rid, "answer")
        if answer not in options:
            raise DataError(name, rid, "answer", f"{answer!r} is not one of the choices")
        return text(rec, "question", name, rid), options, options.index(answer)
    raw = rec.get("options")
    if isinstance(raw, list):  # bigbio source schema
        raw = {o.get("key"): o.get("value") for o in raw}
    if not isinstance(raw, dict) or not raw:
        raise DataError(name, rid, "options", f"expected {{letter: text}}, got {raw!r}")
    letters = sorted(k for k, v in raw.items() if v is not None)
    options = [as_text(raw[k], name, rid, f"options.{k}") for k in letters]
    letter = text(rec, "answer_idx", name, rid).upper()
    if letter not in letters:
        raise DataError(name, rid, "answer_idx", f"{letter!r} is not among the options {letters}")
    idx = letters.index(letter)
    if rec.get("answer") is not None and as_text(rec["answer"], name, rid, "answer") != options[idx]:
        raise DataError(name, rid, "answer", f"{rec['answer']!r} differs from option {letter} {options[idx]!r}")
    return text(rec, "question", name, rid), options, idx


def load_medqa(source: str | Path = "GBaker/MedQA-USMLE-4-options-hf", split: str = "test",
               limit: int | None = None, n_options: int | None = None, keep_option_dependent: bool = False,
               name: str = "medqa") -> RowStream:
    """MedQA from any layout in the module docstring (a file, a folder holding the split's file, or a hub id).

    ``n_options`` (the benchmark task sets 4) rejects items with another option count, which catches pointing the
    4-option task at the 5-option ``US/test.jsonl``.
    """
    sp = resolve_split(name, split)

    def make(stats: Counter):
        for i, rec in enumerate(locate(name, source, sp, MEDQA_PATTERNS).records()):
            rid = rec.get("id", i)
            question, options, idx = _medqa_item(rec, name, rid)
            if n_options is not None and len(options) != n_options:
                raise DataError(name, rid, "options", f"{len(options)} options where this task has {n_options} "
                                "(the 4-option files are US/4_options/phrases_no_exclude_*.jsonl)")
            row = mcq_row(name, rid, sp, question, options, idx, stats, keep_option_dependent)
            if row:
                yield row

    return RowStream(name, make, limit)


_USMLE_SPLITS = (Split("train", ("train",)), Split("test", ("test",)))
_STEPS = ("step1", "step2", "step3")


def _medalpaca_records(found: Located, name: str):
    """Question records of medAlpaca's stepN.json files joined with the letters of stepN_solutions.json."""
    root = found.root
    steps = [s for s in _STEPS if (root / f"{s}.json").is_file()]
    for step in steps:
        solutions_file = root / f"{step}_solutions.json"
        if not solutions_file.is_file():
            raise FileNotFoundError(f"{name}: {root / step}.json has no answer key {solutions_file.name} beside it")
        questions = list(read_json(root / f"{step}.json"))
        letters = list(next(read_json(solutions_file)).values())
        if len(letters) != len(questions):
            raise DataError(name, step, "solutions", f"{len(questions)} questions but {len(letters)} answers")
        for n, (rec, letter) in enumerate(zip(questions, letters, strict=True), 1):
            yield {**rec, "id": f"{step}-{n}", "answer_idx": letter}


def load_usmle_sa(source: str | Path = "HuggingSara/usmle_self_assessment", split: str = "train",
                  limit: int | None = None, keep_option_dependent: bool = False) -> RowStream:
    """USMLE self-assessment (Steps 1-3 sample exams) from a layout in the module docstring.

    The hub copy's only split is ``train`` although the set is an exam sample used for evaluation; rows are stamped
    with the split as published.
    """
    name = "usmle_sa"
    sp = resolve_split(name, split, _USMLE_SPLITS)

    def make(stats: Counter):
        found = locate(name, source, sp, ("step1.json", "data/{split}-*.parquet", "{split}-*.parquet",
                                          "{split}.parquet", "{split}.jsonl", "{split}.json"))
        medalpaca = found.files and found.files[0].name in {f"{s}.json" for s in _STEPS}
        records = _medalpaca_records(found, name) if medalpaca else found.records()
        for i, rec in enumerate(records):
            rid = rec.get("id", i)
            question, options, idx = _medqa_item(rec, name, rid)
            row = mcq_row(name, rid, sp, question, options, idx, stats, keep_option_dependent)
            if row:
                yield row

    return RowStream(name, make, limit)
