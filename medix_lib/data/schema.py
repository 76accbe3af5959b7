"""The row schema every dataset is read or synthesised into, and the training view of rows.

Every row has the columns of :data:`ROW_COLUMNS`::

    id, question, answer, modality, task_type, source, split, image, choices, extra_images

``answer`` is a free-text reference; ``modality`` is one of the 16 contract tags; ``task_type`` says where the row came
from (``open``, ``mcq`` converted to open-ended, ``yes_no``, ``report``); ``choices`` keeps the original options of
MCQ-origin rows for evaluation. ``image`` is the row's picture (None for text rows) and ``extra_images`` any further
pictures the question is about, in order (the MediX-R1 release's rows carry a list of images; most rows have one, so
a loader of single-picture data may leave the key out). :func:`pictures` gives them as one list. :func:`to_grpo`
turns rows into the conversational training prompt plus the reward columns, so nothing downstream re-parses raw
data.

A loader may add the keys of :data:`ROW_EXTRAS` after the columns, where its data says them; they are read by the
evaluation and never saved (a materialised dataset has the columns alone).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import datasets
from PIL import Image

from medix_lib.contract import OutputContract, check_modality

TASK_TYPES: tuple[str, ...] = ("open", "mcq", "yes_no", "report")
SPLITS: tuple[str, ...] = ("train", "test")
ROW_COLUMNS: tuple[str, ...] = (
    "id", "question", "answer", "modality", "task_type", "source", "split", "image", "choices", "extra_images",
)
# ``family``: the row's question family as its dataset names it (the synthetic set's templates: image_plane, ...);
# ``image_source``: what the row's picture comes from, so that rows with different values never show one source file
ROW_EXTRAS: tuple[str, ...] = ("family", "image_source")
FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answer": datasets.Value("string"),
    "modality": datasets.Value("string"),
    "task_type": datasets.Value("string"),
    "source": datasets.Value("string"),
    "split": datasets.Value("string"),
    "image": datasets.Image(),
    "choices": datasets.Sequence(datasets.Value("string")),
    "extra_images": datasets.Sequence(datasets.Image()),
})


class DataError(ValueError):
    """A row that does not fit the schema or its dataset's format; the message names dataset, row and field."""

    def __init__(self, dataset: str, row_id: Any, field_name: str, problem: str):
        self.dataset, self.row_id, self.field = dataset, row_id, field_name
        super().__init__(f"{dataset}: row {row_id!r}: field {field_name!r}: {problem}")


def validate_row(row: dict, dataset: str = "rows") -> dict:
    """Check one row against the schema and return it with the modality tag upper-cased.

    >>> validate_row({"id": "a", "question": "q?", "answer": "yes", "modality": "x_ray", "task_type": "yes_no",
    ...               "source": "s", "split": "train", "image": None, "choices": None})["modality"]
    'X_RAY'
    """
    row_id = row.get("id", "?")
    row = row if "extra_images" in row else {**row, "extra_images": []}
    missing = [c for c in ROW_COLUMNS if c not in row]
    if missing:
        raise DataError(dataset, row_id, missing[0], f"missing; a row needs {', '.join(ROW_COLUMNS)}")
    for name in ("id", "question", "answer", "source"):
        value = row[name]
        # A bool here is the YAML/JSON trap that turns PubMedQA's "yes"/"no" into True/False.
        if not isinstance(value, str) or isinstance(value, bool):
            raise DataError(dataset, row_id, name, f"must be a string, got {type(value).__name__} {value!r}")
        if not value.strip():
            raise DataError(dataset, row_id, name, "is empty")
    try:
        modality = check_modality(row["modality"])
    except (ValueError, AttributeError) as err:
        raise DataError(dataset, row_id, "modality", str(err)) from None
    if row["task_type"] not in TASK_TYPES:
        raise DataError(dataset, row_id, "task_type", f"{row['task_type']!r} is not one of {TASK_TYPES}")
    if row["split"] not in SPLITS:
        raise DataError(dataset, row_id, "split", f"{row['split']!r} is not one of {SPLITS}")
    choices = row["choices"]
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise DataError(dataset, row_id, "choices", f"must be a list of strings or None, got {choices!r}")
    extra = row["extra_images"]
    if not isinstance(extra, list) or (extra and row["image"] is None) or any(x is None for x in extra):
        raise DataError(dataset, row_id, "extra_images", "must be a list of the pictures after 'image' (empty when "
                        f"the row has one picture or none), got {type(extra).__name__} with 'image' "
                        f"{'unset' if row['image'] is None else 'set'}")
    return {**row, "modality": modality}


def encode_image(image: Image.Image | None) -> dict | None:
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # zlib's default level is ~6x slower for ~20% smaller files
    return {"bytes": buf.getvalue(), "path": None}


def pictures(row: dict) -> list:
    """The row's pictures in order: ``image`` then ``extra_images`` (empty for a text row).

    >>> pictures({"image": None}), pictures({"image": "a", "extra_images": ["b"]}), pictures({"image": "a"})
    ([], ['a', 'b'], ['a'])
    """
    return [] if row.get("image") is None else [row["image"], *(row.get("extra_images") or [])]


def has_image(ds: datasets.Dataset) -> list[bool]:
    """Per row, whether it has an image."""
    if "image" not in ds.column_names:
        return [False] * len(ds)
    # The column's validity bits: no picture is decoded, nor its bytes copied, to see whether it exists.
    return ds.with_format("arrow")["image"].is_valid().to_pylist()


def row_pictures(ds: datasets.Dataset) -> list[list]:
    """:func:`pictures` of every row, decoded (a processor's ``images=`` argument for the rows)."""
    if "image" not in ds.column_names:
        return [[] for _ in range(len(ds))]
    extra = ds["extra_images"] if "extra_images" in ds.column_names else [[]] * len(ds)
    return [[] if img is None else [img, *more] for img, more in zip(ds["image"], extra)]


def format_choices(choices: list[str]) -> str:
    """The evaluation protocol's options suffix.

    >>> format_choices(["yes", "no"])
    'Choices: A. yes B. no'
    """
    return "Choices: " + " ".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))


def to_grpo(ds: datasets.Dataset, contract: OutputContract, multimodal: bool | None = None,
            with_choices: bool = False) -> datasets.Dataset:
    """Conversational prompts plus the reward columns (``answer``, ``modality``, ``question``, ``task_type``, ``id``).

    Arrow needs one type per column, so message contents are either all strings (text-only data, which plain LM chat
    templates expect) or all lists of parts (``multimodal``; default: whenever any row has an image). Image rows put
    one ``{"type": "image"}`` per picture before the question, and the ``images`` column (TRL's multi-image column)
    lists the row's pictures (:func:`pictures`; empty for text rows). ``with_choices`` appends "Choices: A. ..." to
    MCQ-origin rows, as the evaluation protocol does; training prompts stay open-ended.
    """
    with_image = has_image(ds)
    multimodal = any(with_image) if multimodal is None else multimodal
    system = contract.system_prompt()
    if multimodal and "image" in ds.column_names:  # pictures move as their stored bytes, never decoded and re-encoded
        ds = ds.cast_column("image", datasets.Image(decode=False))
        if "extra_images" in ds.column_names:
            shown = datasets.is_progress_bar_enabled()
            datasets.disable_progress_bars()  # a cast of an in-memory column, not worth a bar in every notebook
            try:
                ds = ds.cast_column("extra_images", datasets.Sequence(datasets.Image(decode=False)))
            finally:
                if shown:
                    datasets.enable_progress_bars()

    def build(row, idx):
        q = row["question"]
        if with_choices and row.get("choices"):
            q = f"{q}\n{format_choices(row['choices'])}"
        if not multimodal:
            return {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": q}]}
        pics = pictures(row) if with_image[idx] else []
        parts = [{"type": "image", "text": None} for _ in pics] + [{"type": "text", "text": q}]
        return {"prompt": [{"role": "system", "content": [{"type": "text", "text": system}]},
                           {"role": "user", "content": parts}],
                "images": [{"bytes": p["bytes"], "path": p["path"]} for p in pics]}

    keep = ["id", "question", "answer", "modality", "task_type"]
    features = datasets.Features({c: ds.features[c] for c in keep if c in ds.features})
    if multimodal:
        part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
        features["prompt"] = datasets.List({"role": datasets.Value("string"), "content": datasets.List(part)})
        features["images"] = datasets.List(datasets.Image())
    else:
        features["prompt"] = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    if len(ds) == 0:  # map skips an empty dataset, leaving it without the prompt column
        return datasets.Dataset.from_dict({c: [] for c in features}, features=features)
    return ds.map(build, with_indices=True, desc="to_grpo", features=features,
                  remove_columns=[c for c in ds.column_names if c not in keep])


@dataclass
class Candidate:
    """A synthesised row before it gets its id and split (see :mod:`medix_lib.data.synthesis`)."""

    family: str
    source: str
    group: str  # concept key: rows sharing it never cross the train/test split
    question: str
    answer: str
    task_type: str = "open"
    modality: str = "OTHER"
    image: Image.Image | None = None
    aug: str = ""
    choices: list[str] | None = None
