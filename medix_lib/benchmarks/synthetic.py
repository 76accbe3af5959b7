"""This project's offline evaluation split: the rows notebook 01 synthesises from real ontologies and DICOM images.

Layout read by :func:`load_synthetic`: the ``datasets.DatasetDict`` notebook 01 writes with ``save_to_disk`` to
``outputs/01_synthesize_data/<variant>/dataset`` (splits ``train`` and ``test``), whose rows already have the
schema's columns. Two tasks read its ``test`` split: ``synthetic_text`` (rows without an image) and
``synthetic_image`` (rows with one).

After the schema's columns each row carries keys of :data:`~medix_lib.data.ROW_EXTRAS`: ``family``, its question
family as notebook 01 counts it (``image_plane``, ``image_modality_yes_no``, ``hpo_lay_term``, ...; read from its id,
None for an id made otherwise), and on image rows ``image_source``, what the picture comes from as far as the row
tells: the source package and the modality tag (``synthetic/pydicom:CT_SCAN``). The dataset does not keep the source
file itself; every view of one file shares both, so two rows with different ``image_source`` never show one file (the
evaluation's shuffled-picture control relies on that).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets

from medix_lib.data import ROW_COLUMNS
from medix_lib.data.synthesis import row_family

from ._common import ImageFolders, RowStream, Split, resolve_split

OUTPUTS = Path(__file__).resolve().parents[2] / "outputs"
KINDS = ("text", "image")
_SPLITS = (Split("train", ("train",)), Split("test", ("test",)))


def default_source(variant: str = "smoke") -> Path:
    return OUTPUTS / "01_synthesize_data" / variant / "dataset"


def load_synthetic(source: str | Path | None = None, split: str = "test", kind: str = "text",
                   image_size: int | None = None, limit: int | None = None, variant: str = "smoke") -> RowStream:
    """Rows of notebook 01's dataset (``source``, else the ``variant``'s output folder) with or without images."""
    if kind not in KINDS:
        raise ValueError(f"synthetic: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    name = f"synthetic_{kind}"
    sp = resolve_split(name, split, _SPLITS)
    path = Path(source).expanduser() if source is not None else default_source(variant)

    def make(stats: Counter):
        if not (path / "dataset_dict.json").is_file():
            raise FileNotFoundError(f"{name}: no saved DatasetDict at {path}; run notebook 01 (variant "
                                    f"{variant!r}) or pass source=<its output>/dataset")
        # Undecoded, so rows of the other kind never pay for an image decode.
        ds = datasets.load_from_disk(str(path))[sp.name].cast_column("image", datasets.Image(decode=False))
        if "extra_images" in ds.column_names:  # notebook 01's sets before this column have none
            ds = ds.cast_column("extra_images", datasets.Sequence(datasets.Image(decode=False)))
        images = ImageFolders.under(name, None, path)
        for row in ds:
            if (row["image"] is not None) != (kind == "image"):
                stats["filtered_other_kind"] += 1
                continue
            given = [row["image"], *(row.get("extra_images") or [])] if row["image"] is not None else None
            ok, pics = images.open_all(given, row["id"], "image", image_size, stats, required=kind == "image")
            img = pics[0] if pics else None
            if ok:
                yield {**{c: row.get(c) for c in ROW_COLUMNS}, "image": img, "split": sp.schema,
                       "extra_images": pics[1:],
                       "family": row_family(row["id"]),
                       **({"image_source": f"{row['source']}:{row['modality']}"} if img is not None else {})}

    return RowStream(name, make, limit)
