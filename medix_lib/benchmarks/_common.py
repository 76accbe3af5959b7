"""Machinery shared by the benchmark loaders: split names, finding and reading a dataset's own files (or streaming a
hub id), opening images, the row builder and :class:`RowStream`.

Nothing here knows a dataset: each family module names the published layout it reads and passes its file patterns
and field names.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from PIL import Image, UnidentifiedImageError

from medix_lib.data import FEATURES, DataError, encode_image, letterbox, validate_row

# PMC-VQA captions and MIMIC reports outgrow the csv module's 128 KiB default field limit.
csv.field_size_limit(2**31 - 1)


# ----------------------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One split of a dataset: ``name`` as its hub calls it, ``aliases`` (``name`` first) accepted from users and
    looked for in file names. Rows carry the schema's two-valued split: ``train``, or ``test`` for any evaluation
    split (validation, validate, val, dev, test)."""

    name: str
    aliases: tuple[str, ...]

    @property
    def schema(self) -> str:
        return "train" if self.name == "train" else "test"


STANDARD_SPLITS = (Split("train", ("train",)), Split("validation", ("validation", "validate", "val", "dev")),
                   Split("test", ("test",)))


def resolve_split(dataset: str, split: str, splits: Sequence[Split] = STANDARD_SPLITS) -> Split:
    """The dataset's split called ``split`` (any alias), or an error listing the names it knows.

    >>> resolve_split("medmcqa", "dev").name, resolve_split("mimic_cxr", "validate").schema
    ('validation', 'test')
    >>> resolve_split("medmcqa", "holdout")
    Traceback (most recent call last):
    ...
    ValueError: medmcqa: unknown split 'holdout'; known: train, validation (validate, val, dev), test
    """
    key = str(split).strip().lower()
    for s in splits:
        if key in s.aliases:
            return s
    known = ", ".join(s.name + (f" ({', '.join(s.aliases[1:])})" if len(s.aliases) > 1 else "") for s in splits)
    raise ValueError(f"{dataset}: unknown split {split!r}; known: {known}")


# ----------------------------------------------------------------------------------------------------------------------
# Reading records
# ----------------------------------------------------------------------------------------------------------------------


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _json_lines(path: Path, lines: Sequence[str]) -> Iterator[dict]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {n}: not a JSON record ({err.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: line {n}: expected a JSON object, got {type(rec).__name__}")
        yield rec


def read_json(path: Path) -> Iterator[dict]:
    """Records of a ``.json`` file in any of the shapes releases use: an array of records, a mapping of id ->
    record (yielded with the id as ``_key``), or one JSON record per line despite the ``.json`` name (MedMCQA's
    original release, MedQA's ``-hf`` copy)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg != "Extra data":
            raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        yield from _json_lines(path, text.splitlines())
        return
    if isinstance(data, list):
        bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
        if bad is not None:
            raise ValueError(f"{path}: item {bad} is a {type(data[bad]).__name__}, not a JSON record")
        yield from data
    elif isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        for key, rec in data.items():
            yield {"_key": key, **rec}
    elif isinstance(data, dict):
        yield data  # a JSON-lines file that holds a single record
    else:
        raise ValueError(f"{path}: expected JSON records, got {type(data).__name__}")


def read_file(path: Path, fieldnames: Sequence[str] | None = None) -> Iterator[dict]:
    """Records of one file: ``.jsonl``, ``.json`` (see :func:`read_json`), ``.csv``/``.tsv`` (``fieldnames`` for
    header-less files; ``.gz`` allowed) or ``.parquet``."""
    kind = Path(path.name.lower().removesuffix(".gz")).suffix
    if kind == ".jsonl":
        with _open_text(path) as fh:
            yield from _json_lines(path, fh.readlines())
    elif kind == ".json":
        yield from read_json(path)
    elif kind in (".csv", ".tsv"):
        with _open_text(path) as fh:
            yield from csv.DictReader(fh, fieldnames=fieldnames, delimiter="\t" if kind == ".tsv" else ",")
    elif kind == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"unsupported file type {path.name}; expected .jsonl, .json, .csv, .tsv or .parquet")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Located:
    """Where a split's records come from: local ``files`` (``root`` is their folder, against which relative image
    paths resolve) or a ``hub_id`` streamed with ``datasets``."""

    dataset: str
    files: tuple[Path, ...] = ()
    root: Path | None = None
    hub_id: str | None = None
    config: str | None = None
    hub_split: str | None = None

    def records(self, fieldnames: Sequence[str] | None = None) -> Iterator[dict]:
        if self.hub_id is None:
            for f in self.files:
                yield from read_file(f, fieldnames)
            return
        try:
            stream = datasets.load_dataset(self.hub_id, name=self.config, split=self.hub_split, streaming=True)
        except Exception as err:  # offline mode, a wrong id or config: datasets raises many types for these
            raise RuntimeError(
                f"{self.dataset}: cannot stream {self.hub_id!r} (config {self.config!r}, split {self.hub_split!r}) "
                f"from the hub ({type(err).__name__}: {err}); download it once and pass its folder as source=..."
            ) from err
        yield from stream


def locate(dataset: str, source: str | Path, split: Split, patterns: Sequence[str],
           config: str | None = None) -> Located:
    """Find ``split``'s files under a local file or folder, else treat ``source`` as a hub id to stream.

    ``patterns`` are globs relative to the folder, tried in order, with ``{split}`` filled by each of the split's
    aliases and ``{config}`` by ``config``; the first pattern that matches wins.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return Located(dataset, (path,), path.parent)
    if path.is_dir():
        tried = []
        for pattern in patterns:
            if "{config}" in pattern and not config:
                continue
            for alias in split.aliases:
                glob = pattern.format(split=alias, config=config or "")
                if glob in tried:
                    continue
                tried.append(glob)
                files = sorted(path.glob(glob))
                if files:
                    return Located(dataset, tuple(files), files[0].parent)
        held = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        raise FileNotFoundError(f"{dataset}: no {split.name!r} files in {path}; looked for {', '.join(tried)}; "
                                f"the folder holds {', '.join(held[:20]) or 'nothing'}")
    if _HUB_ID.match(str(source)):
        return Located(dataset, hub_id=str(source), config=config, hub_split=split.name)
    raise FileNotFoundError(f"{dataset}: {source} is neither a file, a folder nor a hub id (owner/name)")


# ----------------------------------------------------------------------------------------------------------------------
# Fields and rows
# ----------------------------------------------------------------------------------------------------------------------


def text(rec: dict, name: str, dataset: str, row_id: Any) -> str:
    """Field ``name`` as stripped text; numbers become text, a missing/empty field or a boolean is an error."""
    if rec.get(name) is None:
        raise DataError(dataset, row_id, name, f"missing; the record has {sorted(k for k in rec if k[0] != '_')}")
    return as_text(rec[name], dataset, row_id, name)


def as_text(value: Any, dataset: str, row_id: Any, name: str) -> str:
    if isinstance(value, bool):
        raise DataError(dataset, row_id, name, f"boolean {value!r}: a YAML/JSON parser turned a yes/no label into a "
                        "bool; read the file keeping labels as strings")
    if not isinstance(value, str | int | float):
        raise DataError(dataset, row_id, name, f"expected text, got {type(value).__name__} {value!r}")
    out = str(value).strip()
    if not out:
        raise DataError(dataset, row_id, name, "is empty")
    return out


def reference(rec: dict, name: str, dataset: str, row_id: Any) -> str:
    """The reference answer in field ``name`` as stripped text, ``""`` when the record leaves it empty (null or
    blank): :class:`RowStream` skips such a row, counts and names it, rather than let one gap stop the split (SLAKE's
    public ``train.json`` has one). A record without the field at all is a layout error, raised as by :func:`text`."""
    if name not in rec:
        raise DataError(dataset, row_id, name, f"missing; the record has {sorted(k for k in rec if k[0] != '_')}")
    if rec[name] is None or (isinstance(rec[name], str) and not rec[name].strip()):
        return ""
    return as_text(rec[name], dataset, row_id, name)


def task_for_answer(answer: str) -> str:
    return "yes_no" if answer.strip().lower() in ("yes", "no") else "open"


def make_row(dataset: str, rid: Any, split: Split, question: str, answer: str, modality: str, task_type: str,
             image: Image.Image | None = None, choices: list[str] | None = None, source: str | None = None,
             extra_images: list[Image.Image] | None = None) -> dict:
    return {"id": f"{dataset}-{rid}", "question": question, "answer": answer, "modality": modality,
            "task_type": task_type, "source": source or dataset, "split": split.schema, "image": image,
            "choices": choices, "extra_images": extra_images or []}


# ----------------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------------


class MissingImageError(FileNotFoundError):
    """An image file a record names is not on disk: the image folder is missing or ``image_root`` points elsewhere.
    Unlike an unreadable file (skipped and counted), this stops the load: every later row would be lost too."""


def _holds(folder: Path) -> str:
    """What a searched image folder holds, for the missing-image error: absent, or how many entries."""
    if not folder.is_dir():
        return "no such folder"
    n = sum(1 for _ in folder.iterdir())
    return f"{n} entr{'y' if n == 1 else 'ies'}"


class _CorruptImage(Exception):
    pass


@dataclass(frozen=True)
class ImageFolders:
    """How one dataset's image values resolve: relative paths are looked up in ``folders`` in order; ``hint`` tells
    the user what to unpack when none holds the file."""

    dataset: str
    folders: tuple[Path, ...]
    hint: str = ""

    @classmethod
    def under(cls, dataset: str, image_root: str | Path | None, root: Path | None, subdirs: Sequence[str] = ("",),
              hint: str = "") -> ImageFolders:
        """``image_root`` when the user gave one (and its ``subdirs``), else ``subdirs`` of the records' folder."""
        base = Path(image_root).expanduser() if image_root is not None else root
        folders = () if base is None else tuple(dict.fromkeys(base / d if d else base for d in subdirs))
        return cls(dataset, folders, hint)

    def resolve(self, name: str, row_id: Any, field: str) -> Path:
        path = Path(name).expanduser()
        if path.is_absolute() and path.is_file():
            return path
        for folder in self.folders:
            if (folder / name).is_file():
                return folder / name
        searched = ", ".join(f"{f} ({_holds(f)})" for f in self.folders) or "no folder (the records came from the hub)"
        raise MissingImageError(f"{self.dataset}: row {row_id!r}: field {field!r}: image file {name!r} not found; "
                                f"searched {searched}; set image_root=<folder holding the images>{self.hint}")

    def open(self, value: Any, row_id: Any, field: str, image_size: int | None, stats: Counter,
             required: bool = True) -> tuple[bool, Image.Image | None]:
        """``(True, image)``, or ``(False, None)`` for an unreadable image (counted, first three warned).

        Values come as the layouts store them: a PIL image, ``{"bytes", "path"}``, raw bytes, a path, or a list of
        those (the first is used). No value is an error when ``required``, else ``(True, None)``.
        """
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if value is None:
            if required:
                raise DataError(self.dataset, row_id, field, "missing; this task's questions are about an image")
            return True, None
        if isinstance(value, str):
            value = self.resolve(value, row_id, field)  # a missing file raises here, before the decode below
        try:
            if isinstance(value, bytes):
                img = Image.open(io.BytesIO(value))
            elif isinstance(value, Path | Image.Image):
                img = value if isinstance(value, Image.Image) else Image.open(value)
            else:
                raise _CorruptImage(f"unrecognised image value of type {type(value).__name__}")
            img.load()
        except (_CorruptImage, OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            stats["skipped_corrupt_image"] += 1
            if stats["skipped_corrupt_image"] <= 3:
                warnings.warn(f"{self.dataset}: row {row_id!r}: field {field!r}: unreadable image skipped ({err})",
                              stacklevel=2)
            return False, None
        return True, letterbox(img, image_size) if image_size else img.convert("RGB")

    def open_all(self, value: Any, row_id: Any, field: str, image_size: int | None, stats: Counter,
                 required: bool = True) -> tuple[bool, list[Image.Image]]:
        """``(True, pictures)`` for a value that may list several (the MediX-R1 release's ``image``), every one
        opened as :meth:`open` does; ``(False, [])`` when any is unreadable (the row is skipped: a question about two
        pictures cannot be asked with one)."""
        values = list(value) if isinstance(value, list | tuple) else [] if value is None else [value]
        if not values:
            return self.open(None, row_id, field, image_size, stats, required)[0], []
        opened = [self.open(v, row_id, field, image_size, stats) for v in values]
        return (True, [img for _, img in opened]) if all(ok for ok, _ in opened) else (False, [])


# ----------------------------------------------------------------------------------------------------------------------
# Stream
# ----------------------------------------------------------------------------------------------------------------------


class RowStream:
    """A lazy, re-iterable stream of validated schema rows from one task; images decode one row at a time.

    ``stats`` counts rows yielded, rows skipped (``skipped_*``: unreadable image, option-dependent MCQ, empty reference
    answer, ...) and rows filtered by design (``filtered_*``: another language, another subset); skips also raise one
    warning at the end of each pass, so nothing is dropped silently. A row whose reference answer is empty is skipped
    here, whichever loader made it (``skipped_empty_answer``; the first three warned by id, every id kept in
    ``empty_answer_ids`` and named in the closing warning); a missing image is never skipped
    (:class:`MissingImageError`).
    """

    def __init__(self, name: str, make: Callable[[Counter], Iterator[dict]], limit: int | None = None):
        if limit is not None and limit < 0:
            raise ValueError(f"{name}: limit must be >= 0, got {limit}")
        self.name, self._make, self.limit = name, make, limit
        self.stats: Counter = Counter()
        self.empty_answer_ids: list[str] = []

    def __iter__(self) -> Iterator[dict]:
        self.stats, self.empty_answer_ids = Counter(), []
        if self.limit != 0:
            for row in self._make(self.stats):
                if isinstance(row.get("answer"), str) and not row["answer"].strip():
                    self._skip_empty_answer(row)
                    continue
                yield validate_row(row, self.name)
                self.stats["rows"] += 1
                if self.limit is not None and self.stats["rows"] >= self.limit:
                    break
        skipped = {k: v for k, v in sorted(self.stats.items()) if k.startswith("skipped")}
        if skipped:
            ids = self.empty_answer_ids
            named = (f"; rows with an empty reference answer: {', '.join(map(repr, ids[:10]))}"
                     f"{f' and {len(ids) - 10} more' if len(ids) > 10 else ''}") if ids else ""
            warnings.warn(f"{self.name}: skipped {skipped} (see RowStream.stats){named}", stacklevel=2)

    def _skip_empty_answer(self, row: dict) -> None:
        self.stats["skipped_empty_answer"] += 1
        self.empty_answer_ids.append(str(row.get("id", "?")))
        n = self.stats["skipped_empty_answer"]
        if n <= 3:
            warnings.warn(f"{self.name}: row {row.get('id', '?')!r}: the reference answer is empty; skipped "
                          f"({n} so far)", stacklevel=3)

    def to_dataset(self, cache_dir: str | None = None) -> datasets.Dataset:
        """Materialise to an Arrow-backed ``Dataset`` with the schema's features (written to disk, not memory)."""
        def gen(stream):
            for row in stream:  # the columns alone: a loader's extra keys (data.ROW_EXTRAS) are never saved
                yield {**{c: row[c] for c in FEATURES}, "image": encode_image(row["image"]),
                       "extra_images": [encode_image(img) for img in row["extra_images"]]}
        # A fresh fingerprint: the generator's hash cannot tell two sources (or two passes over edited files) apart.
        return datasets.Dataset.from_generator(gen, features=FEATURES, gen_kwargs={"stream": self},
                                               cache_dir=cache_dir, fingerprint=uuid.uuid4().hex)
