"""PMC-VQA (Zhang et al. 2023): questions on PubMed Central figures; 4-option multiple choice, and a "hard" open set.

Layouts read by :func:`load_pmc_vqa`:

- version 1 of ``xmcmic/PMC-VQA`` (dataset card): ``train.csv``, ``test.csv``, ``test_clean.csv`` (the cleaned
  2k test set) with ``Figure_path``, ``Question``, ``Answer`` (option text; ``Anwser`` in the card's first
  revision), ``Choice A``..``Choice D`` (values like ``"A:Diffuse uptake"``), ``Answer_label`` (letter); images
  from ``images.zip``.
- version 2 (``train_2.csv``, ``test_2.csv``, ``images_2.zip``; read by MedEvalKit): ``index``, ``Figure_path``,
  ``Caption``, ``Question``, ``Choice A``..``Choice D``, ``Answer`` (a letter or option text), ``split``.
  Image paths resolve under ``image_root`` or the CSV's folder, in ``figures/``, ``images/`` or the folder itself.
  With several test files in one folder, ``version`` ("1", "1-clean", "2") picks one.
- the MediX-R1 evaluation sets (``sahalshajim/medix-eval-sets`` configs ``pmc_vqa`` and ``pmc_vqa_hard``, split
  ``test``): ``question``, ``answer``, ``choices`` (a list; empty in ``pmc_vqa_hard``, which is open-ended) and
  the image in ``image`` (or ``image_id``).

Modality: PMC-VQA has no modality field (its figures span every modality and charts); it is inferred from the
question and answer when they name exactly one modality outside a negated phrase, else OTHER.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from medix_lib.data import DataError

from ._common import (ImageFolders, RowStream, as_text, locate, make_row, reference, resolve_split, task_for_answer,
                      text)
from ._mcq import mcq_row
from ._modality import infer_modality

VERSIONS = {"1": "{split}.csv", "1-clean": "{split}_clean.csv", "2": "{split}_2.csv"}
_LETTER_PREFIX = re.compile(r"^\s*[A-D]\s*[:.]\s*")
_LETTERS = "ABCD"


def _reference_index(rec: dict, options: list[str], name: str, rid) -> int:
    """The correct option from ``Answer_label`` (letter) or ``Answer``/``answer`` (letter, "B:text" or text)."""
    label = str(rec.get("Answer_label") or "").strip().upper()
    if label in tuple(_LETTERS):
        return _LETTERS.index(label)
    field = next((f for f in ("Answer", "Anwser", "answer") if rec.get(f) is not None), "Answer")
    answer = text(rec, field, name, rid)
    if answer.upper() in tuple(_LETTERS[:len(options)]):
        return _LETTERS.index(answer.upper())
    stripped = _LETTER_PREFIX.sub("", answer)
    if stripped in options:
        return options.index(stripped)
    raise DataError(name, rid, field, f"{answer!r} is neither an option letter nor one of the options {options}")


def load_pmc_vqa(source: str | Path = "sahalshajim/medix-eval-sets", split: str = "test",
                 image_size: int | None = None, limit: int | None = None, image_root: str | Path | None = None,
                 config: str | None = "pmc_vqa", version: str | None = None,
                 keep_option_dependent: bool = False) -> RowStream:
    """PMC-VQA from a layout in the module docstring; ``config="pmc_vqa_hard"`` gives the open-ended hard set.

    Rows of a set without options (the hard set) are open-ended; ``keep_option_dependent`` as in MedQA.
    """
    name = "pmc_vqa_hard" if config == "pmc_vqa_hard" else "pmc_vqa"
    sp = resolve_split(name, split)
    if version is not None and version not in VERSIONS:
        raise ValueError(f"{name}: unknown version {version!r}; valid: {', '.join(VERSIONS)}")

    def find():
        path = Path(source).expanduser()
        if path.is_dir() and version is None:
            candidates = [p for p in VERSIONS.values()
                          if any((path / p.format(split=a)).is_file() for a in sp.aliases)]
            if len(candidates) > 1:
                raise ValueError(f"{name}: {path} holds several {sp.name} files "
                                 f"({', '.join(c.format(split=sp.name) for c in candidates)}); pick one with "
                                 f"version= one of {', '.join(VERSIONS)}")
        patterns = (VERSIONS[version],) if version else (*VERSIONS.values(), "{config}/{split}-*.parquet",
                                                         "{split}-*.parquet", "{split}.parquet")
        return locate(name, source, sp, patterns, config)

    def make(stats: Counter):
        found = find()
        images = ImageFolders.under(name, image_root, found.root, ("", "figures", "images"),
                                    " (PMC-VQA's images.zip / images_2.zip, unpacked)")
        for i, rec in enumerate(found.records()):
            rid = rec.get("index", rec.get("id", f"{sp.name}-{i}"))
            question = text(rec, "Question" if "Question" in rec else "question", name, rid)
            if "Choice A" in rec:
                options = [_LETTER_PREFIX.sub("", text(rec, f"Choice {k}", name, rid)) for k in _LETTERS]
            else:
                options = [_LETTER_PREFIX.sub("", as_text(c, name, rid, "choices")) for c in rec.get("choices") or []]
            field = next((f for f in ("Figure_path", "image", "image_id") if rec.get(f) is not None), "image")
            ok, img = images.open(rec.get(field), rid, field, image_size, stats)
            if not ok:
                continue
            if options:
                idx = _reference_index(rec, options, name, rid)
                modality = infer_modality(f"{question} {options[idx]}") or "OTHER"
                row = mcq_row(name, rid, sp, question, options, idx, stats, keep_option_dependent, modality, img)
            else:
                answer = reference(rec, "answer", name, rid)
                modality = infer_modality(f"{question} {answer}") or "OTHER"
                row = make_row(name, rid, sp, question, answer, modality, task_for_answer(answer), img)
            if row is None:
                continue
            stats["modality_unknown" if row["modality"] == "OTHER" else "modality_inferred"] += 1
            yield row

    return RowStream(name, make, limit)
