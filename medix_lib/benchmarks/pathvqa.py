"""PathVQA (He et al. 2020): questions on pathology images from textbooks and digital libraries; open and yes/no.

Layout read by :func:`load_pathvqa`: the hub copy ``flaviagiammarino/path-vqa`` (parquet; MedEvalKit and the
MediX-R1 evaluation read its ``test`` split) with ``image`` (bytes), ``question``, ``answer``; a local copy is its
folder (``data/<split>-*.parquet``) or one parquet file. The original release's question files are Python
pickles, which are not read: unpickling runs arbitrary code.

Modality: the dataset has no modality field and all its figures are pathology images, so every row is tagged
MICROSCOPY - a dataset-level assumption that also covers its few gross-specimen photographs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ._common import ImageFolders, RowStream, locate, make_row, reference, resolve_split, task_for_answer, text


def load_pathvqa(source: str | Path = "flaviagiammarino/path-vqa", split: str = "test",
                 image_size: int | None = None, limit: int | None = None,
                 image_root: str | Path | None = None) -> RowStream:
    """PathVQA from the hub layout in the module docstring (hub id, folder or parquet file)."""
    name = "pathvqa"
    sp = resolve_split(name, split)

    def make(stats: Counter):
        found = locate(name, source, sp, ("data/{split}-*.parquet", "{split}-*.parquet", "{split}.parquet",
                                          "{split}.jsonl"))
        images = ImageFolders.under(name, image_root, found.root)
        for i, rec in enumerate(found.records()):
            rid = f"{sp.name}-{i}"
            question, answer = text(rec, "question", name, rid), reference(rec, "answer", name, rid)
            ok, img = images.open(rec.get("image"), rid, "image", image_size, stats)
            if ok:
                yield make_row(name, rid, sp, question, answer, "MICROSCOPY", task_for_answer(answer), img)

    return RowStream(name, make, limit)
