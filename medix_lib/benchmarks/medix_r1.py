"""The MediX-R1 release's RL data, ``MBZUAI/medix-rl-data`` (~51.3K train / 2.45K test rows, text and image rows).

Layout read by :func:`load_medix_r1` (the release's training scripts read it with ``prompt_key=problem``,
``answer_key=solution``, ``image_key=image``): ``data/{train,test}-*.parquet`` with ``id``, ``image`` (a list of
images, empty for text-only rows; every one is kept, the first as the row's ``image`` and the rest as
``extra_images``), ``source`` (the dataset the row came from), ``problem`` (the question, with an ``<image>``
placeholder per picture) and ``solution`` = ``"<MODALITY_TAG> answer"``; the tag is the row's modality, one of the
16 contract tags (text rows carry one too). :func:`release_dataset` makes both splits notebook 01's dataset.

The release's evaluation sets (``sahalshajim/medix-eval-sets``: configs ``pubmedqa``, ``pmc_vqa``,
``pmc_vqa_hard``, ``mimic_cxr``) have each benchmark's own columns and are read by those benchmarks' loaders.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import datasets
import pyarrow.compute as pc

from medix_lib.contract import check_modality
from medix_lib.data import DataError

from ._common import ImageFolders, RowStream, Split, locate, make_row, resolve_split, task_for_answer, text

_SOLUTION = re.compile(r"^\s*<([A-Za-z_]+)>\s*(.*)$", re.S)
_SPLITS = (Split("train", ("train",)), Split("test", ("test",)))


def parse_solution(solution: str, rid="?") -> tuple[str, str]:
    """``(modality tag, answer)`` from a release ``solution``; the answer is ``""`` when the tag stands alone (the
    row is then skipped and counted by :class:`RowStream`, as every loader's empty reference is).

    >>> parse_solution("<x_ray> Right lung"), parse_solution("<CT_SCAN> ")
    (('X_RAY', 'Right lung'), ('CT_SCAN', ''))
    """
    m = _SOLUTION.match(solution)
    if not m:
        raise DataError("medix_r1", rid, "solution", f"expected '<MODALITY_TAG> answer', got {solution[:80]!r}")
    try:
        modality = check_modality(m.group(1))
    except ValueError as err:
        raise DataError("medix_r1", rid, "solution", str(err)) from None
    return modality, m.group(2).strip()


def load_medix_r1(source: str | Path = "MBZUAI/medix-rl-data", split: str = "test", image_size: int | None = None,
                  limit: int | None = None, image_root: str | Path | None = None) -> RowStream:
    """The release's rows; ``source`` of each row is ``medix_r1/<the row's source>``."""
    name = "medix_r1"
    sp = resolve_split(name, split, _SPLITS)

    def make(stats: Counter):
        found = locate(name, source, sp, ("data/{split}-*.parquet", "{split}-*.parquet", "{split}.parquet",
                                          "{split}.jsonl"))
        images = ImageFolders.under(name, image_root, found.root)
        for i, rec in enumerate(found.records()):
            rid = rec.get("id", i)
            modality, answer = parse_solution(text(rec, "solution", name, rid), rid)
            question = re.sub(r"<image>\s*", "", text(rec, "problem", name, rid)).strip()
            ok, pics = images.open_all(rec.get("image"), rid, "image", image_size, stats, required=False)
            if ok:
                yield make_row(name, rid, sp, question, answer, modality, task_for_answer(answer),
                               pics[0] if pics else None, source=f"{name}/{rec.get('source') or 'unknown'}",
                               extra_images=pics[1:])

    return RowStream(name, make, limit)


def release_dataset(source: str | Path, image_size: int | None = None, limit: int = 0
                    ) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """The release's ``train`` and ``test`` splits as notebook 01's ``DatasetDict`` (every picture of a row kept, the
    first as ``image``, the rest as ``extra_images``), with per split the loader's counts (rows, skipped rows, ...).
    ``limit``: rows per split at most (0: all). Notebook 03 then trains on the release's rows as on synthesised ones.
    """
    streams = {sp: load_medix_r1(source, sp, image_size, limit or None) for sp in ("train", "test")}
    dataset = datasets.DatasetDict({sp: stream.to_dataset() for sp, stream in streams.items()})
    stats = {f"{sp}/{k}": v for sp, stream in streams.items() for k, v in sorted(stream.stats.items())}
    # counted from the list lengths: reading the column would decode every extra picture of the release
    stats.update({f"{sp}/rows_with_several_images": sum(
        n > 0 for n in pc.list_value_length(dataset[sp].with_format("arrow")["extra_images"]).to_pylist())
        for sp in streams})
    return dataset, stats
