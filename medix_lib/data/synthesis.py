"""The offline open-ended set: text families and image questions drawn round-robin, split by concept and picture,
deduplicated, as schema rows."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import datasets
from medix_lib.progress import bar as progress_bar

from medix_lib.data.hygiene import DISTINCTIVE_ANSWER_WORDS, Deduper
from medix_lib.data.images import (IMAGE_SOURCES, ImageSource, image_candidates, image_source_objects,
                                   render_view)
from medix_lib.data.schema import FEATURES, SPLITS, Candidate, encode_image, validate_row
from medix_lib.data.text_tasks import TEXT_SOURCES
from medix_lib.text import normalise

def _stable_id(*parts: Any) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:12]


def _unit_hash(*parts: Any) -> float:
    return int(hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:12], 16) / 16**12


SYNTH_SOURCES: tuple[str, ...] = (*TEXT_SOURCES, *IMAGE_SOURCES)

_ROW_ID = re.compile(r"^syn-(?P<family>.+)-[0-9a-f]{12}$")


def row_id(family: str, *parts: Any) -> str:
    """A synthetic row's id: its question family, then a hash of what makes the row unique. The dataset keeps no
    other record of the family, so :func:`row_family` reads it back from here."""
    return f"syn-{family}-{_stable_id(*parts)}"


def row_family(row_id_: str) -> str | None:
    """The question family a synthetic row's id names (:func:`row_id`); None for an id made otherwise.

    >>> row_family(row_id("image_plane", "ct", "Which plane?")), row_family("syn-3"), row_family("vqa_rad-7")
    ('image_plane', None, None)
    """
    match = _ROW_ID.match(row_id_)
    return match["family"] if match else None


def split_images(sources: list[ImageSource], seed: int, test_fraction: float) -> set[str]:
    """Pick whole pictures for test, never the last train picture of a modality, so test modalities are also trained."""
    if test_fraction <= 0:
        return set()
    by_mod = Counter(s.modality for s in sources)
    order = sorted(sources, key=lambda s: _unit_hash(seed, "image-split", s.key))
    want = max(1, round(test_fraction * len(sources)))
    test, left = set(), dict(by_mod)
    # First pass: at most one test picture per modality, so the test set spans modalities.
    for one_per_modality in (True, False):
        for s in order:
            if len(test) >= want:
                return test
            taken = any(t.modality == s.modality for t in sources if t.key in test)
            if s.key not in test and left[s.modality] > 1 and not (one_per_modality and taken):
                test.add(s.key)
                left[s.modality] -= 1
    return test


def iter_synthetic_rows(seed: int, n_text: int, n_image: int, image_size: int, test_fraction: float,
                        sources: list[str] | None = None, stats: Counter | None = None) -> Iterator[dict]:
    """Stream schema rows (images PNG-encoded) drawn evenly across task families; see :func:`synthesize`."""
    sources = list(SYNTH_SOURCES) if sources is None else list(sources)
    unknown = [s for s in sources if s not in SYNTH_SOURCES]
    if unknown:
        raise ValueError(f"unknown synthesis source(s) {unknown}; valid: {', '.join(SYNTH_SOURCES)}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    stats = Counter() if stats is None else stats
    dedup = Deduper()
    rng = random.Random(seed)
    answer_split: dict[str, str] = {}

    def finish(c: Candidate, split: str) -> dict:
        row = {"id": row_id(c.family, c.group, c.question, c.answer, c.aug), "question": c.question,
               "answer": c.answer, "modality": c.modality, "task_type": c.task_type, "source": f"synthetic/{c.source}",
               "split": split, "image": encode_image(c.image), "choices": c.choices, "extra_images": []}
        stats[f"rows/{c.family}"] += 1
        return validate_row(row, "synthetic")

    families: dict[str, Iterator[Candidate]] = {}
    for name in sources:
        if name in TEXT_SOURCES and n_text > 0:
            families.update(TEXT_SOURCES[name](random.Random(f"{seed}/{name}")))
    # Round-robin over families keeps every template family represented even in a 60-row smoke set.
    made = 0
    active = list(families)
    with progress_bar(total=n_text + n_image, desc="synthesize", progress=n_text + n_image >= 2000) as bar:
        while made < n_text and active:
            for fam in list(active):
                if made >= n_text:
                    break
                c = next(families[fam], None)
                if c is None:
                    active.remove(fam)
                    stats[f"exhausted/{fam}"] += 1
                    continue
                if dedup.seen(c.question, c.answer, None):
                    continue
                split = "test" if _unit_hash(seed, "text-split", c.group) < test_fraction else "train"
                if len(c.answer.split()) >= DISTINCTIVE_ANSWER_WORDS:
                    # Two sources can give two concepts the very same long answer: keep it on one side only.
                    first = answer_split.setdefault(normalise(c.answer), split)
                    if first != split:
                        stats["dropped_cross_split_answer"] += 1
                        continue
                yield finish(c, split)
                made += 1
                bar.update(1)
        if made < n_text:
            stats["text_shortfall"] = n_text - made

        wanted = [s for s in IMAGE_SOURCES if s in sources]
        if n_image <= 0 or not wanted:
            return
        img_sources, failed = _pool_sources(wanted)
        stats["image_sources_failed"] = len(failed)
        rng.shuffle(img_sources)
        test_keys = split_images(img_sources, seed, test_fraction)
        made_img, attempts, pictures = 0, 0, {"train": set(), "test": set()}
        for c in image_candidates(random.Random(f"{seed}/images"), image_size, img_sources):
            attempts += 1
            if made_img >= n_image or attempts > 20 * n_image + 100:
                break
            if dedup.seen(c.question, c.answer, c.image):
                continue
            split = "test" if c.group in test_keys else "train"
            pictures[split].add(c.group)
            yield finish(c, split)
            made_img += 1
            bar.update(1)
        if made_img < n_image:
            stats["image_shortfall"] = n_image - made_img
        # distinct source pictures (files / volumes) behind each split's image rows: a split is whole pictures
        stats["pictures/train"], stats["pictures/test"] = len(pictures["train"]), len(pictures["test"])
    stats["duplicates_removed"] = dedup.removed


def _pool_sources(wanted: list[str]) -> tuple[list[ImageSource], tuple[str, ...]]:
    all_sources, failed = image_source_objects()
    return [s for s in all_sources if s.origin.split(":")[0].split(".")[0] in wanted], failed


def picture_pool(seed: int, test_fraction: float, image_size: int, sources: list[str] | None = None) -> list[dict]:
    """Every picture the image rows are drawn from, as the synthesiser splits them (same seed, same split): key,
    modality, source file (``origin``), split, and its canonical view (first frame, default window, no crop) as a
    PIL image. What a reader of notebook 01 should see before trusting anything a VLM learns from them."""
    wanted = [s for s in IMAGE_SOURCES if s in (list(SYNTH_SOURCES) if sources is None else sources)]
    pool, _ = _pool_sources(wanted)
    test_keys = split_images(pool, seed, test_fraction)
    return [{"key": s.key, "modality": s.modality, "origin": s.origin,
             "split": "test" if s.key in test_keys else "train",
             "image": render_view(s, random.Random(0), image_size, canonical=True)[0]}
            for s in sorted(pool, key=lambda s: (s.key not in test_keys, s.modality, s.key))]


def synthesize(seed: int, n_text: int, n_image: int, image_size: int, test_fraction: float,
               sources: list[str] | None = None) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """The offline open-ended set as a ``DatasetDict`` with ``train``/``test`` (same seed, same ids and rows), and the
    synthesis counts: rows per family, duplicates removed, shortfalls (a family that ran out of source material).

    Text rows come from HPO, HPO disease annotations, ICD-10, the disease-correlation table and the drug dictionary;
    image rows from the bundled DICOM files and scikit-image photos, with modality, region, view, plane and properties
    read from their own metadata. Concepts (an HPO term, an ICD category, a disease, a picture) never cross the split.
    ``sources`` restricts to a subset of :data:`SYNTH_SOURCES`.
    """
    stats: Counter = Counter()
    rows = {"train": [], "test": []}
    for row in iter_synthetic_rows(seed, n_text, n_image, image_size, test_fraction, sources, stats):
        rows[row["split"]].append(row)
    dataset = datasets.DatasetDict({
        split: datasets.Dataset.from_list(rows[split], features=FEATURES) for split in SPLITS
    })
    return dataset, dict(stats)
