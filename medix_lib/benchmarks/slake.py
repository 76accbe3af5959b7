"""SLAKE (Liu et al. 2021): bilingual VQA on CT, MRI and X-ray images; the benchmark is its English test questions.

Layouts read by :func:`load_slake` (record fields checked on a copy of the release's ``test.json``): a JSON array
per split with ``img_id``, ``img_name`` (``xmlab<N>/source.jpg``), ``question``, ``answer``, ``q_lang`` (en / zh),
``location``, ``modality`` (CT / MRI / X-Ray), ``answer_type`` (OPEN / CLOSED), ``base_type``, ``content_type``,
``triple``, ``qid``; images in ``imgs/`` (unpacked from ``imgs.zip``).

- the original release (Slake1.0): ``train.json``, ``validate.json``, ``test.json`` and ``imgs/``;
- the hub copy ``BoKelvin/SLAKE`` (MedEvalKit reads its ``test.json`` and ``imgs/``; the MediX-R1 evaluation
  streams it and unzips its ``imgs.zip``): the same files, the validation split possibly named ``validation.json``
  (both names are looked for). Streaming it by hub id yields the records but not the images: unzip ``imgs.zip``
  and pass ``image_root``.

Modality comes from the record's own ``modality`` field. Chinese questions are filtered (counted in ``stats``). The
public ``train.json`` has a question whose answer is empty: it is skipped, counted and named (:class:`RowStream`),
not allowed to stop the split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from medix_lib.data import DataError

from ._common import ImageFolders, RowStream, locate, make_row, reference, resolve_split, task_for_answer, text

MODALITY = {"CT": "CT_SCAN", "MRI": "MRI_SCAN", "X-RAY": "X_RAY", "XRAY": "X_RAY", "X RAY": "X_RAY"}


def load_slake(source: str | Path = "BoKelvin/SLAKE", split: str = "test", image_size: int | None = None,
               limit: int | None = None, image_root: str | Path | None = None, language: str = "en") -> RowStream:
    """SLAKE questions in ``language`` from either layout in the module docstring."""
    name = "slake"
    sp = resolve_split(name, split)

    def make(stats: Counter):
        found = locate(name, source, sp, ("{split}.json", "Slake1.0/{split}.json"))
        if found.hub_id and image_root is None:
            raise FileNotFoundError(f"{name}: the hub's records carry image names only; unzip imgs.zip from "
                                    f"{found.hub_id} and set image_root=<folder holding imgs/>")
        images = ImageFolders.under(name, image_root, found.root, ("imgs", ""), " (SLAKE's imgs.zip, unpacked)")
        for i, rec in enumerate(found.records()):
            rid = rec.get("qid", f"{sp.name}-{i}")
            if rec.get("q_lang", language) != language:
                stats["filtered_language"] += 1
                continue
            raw = text(rec, "modality", name, rid)
            if raw.upper() not in MODALITY:
                raise DataError(name, rid, "modality", f"{raw!r} is not one of CT, MRI, X-Ray")
            question, answer = text(rec, "question", name, rid), reference(rec, "answer", name, rid)
            ok, img = images.open(text(rec, "img_name", name, rid), rid, "img_name", image_size, stats)
            if ok:
                yield make_row(name, rid, sp, question, answer, MODALITY[raw.upper()], task_for_answer(answer), img)

    return RowStream(name, make, limit)
