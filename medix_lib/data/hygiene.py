"""Duplicates and train/test leakage: normalised text keys and a 256-bit difference hash for pictures."""

from __future__ import annotations

import json
from collections import defaultdict

import datasets
import numpy as np
from PIL import Image

from medix_lib.data.schema import DataError, has_image
from medix_lib.text import normalise

def image_dhash(image: Image.Image, size: int = 16) -> bytes:
    """``size``x``size``-bit difference hash of the non-black content (so letterbox padding does not count).

    256 bits rather than the usual 64: two different axial head CTs agree on all but a couple of 64 bits.

    >>> img = Image.linear_gradient("L").rotate(30)
    >>> hamming_bits(image_dhash(img), image_dhash(img.resize((64, 64)))) <= 12
    True
    """
    gray = image.convert("L")
    box = gray.getbbox()
    if box:
        gray = gray.crop(box)
    small = np.asarray(gray.resize((size + 1, size), Image.BILINEAR), dtype=np.int16)
    return np.packbits(small[:, 1:] > small[:, :-1]).tobytes()


def hamming_bits(a: bytes, b: bytes) -> int:
    """Number of differing bits between two equal-length hashes.

    >>> hamming_bits(b"\\x0f", b"\\x00")
    4
    """
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


NEAR_DUPLICATE_BITS = 12  # of 256: re-encoding and resizing stay below; different pictures and crops go well above


def hamming_many(a: bytes, others: np.ndarray) -> np.ndarray:
    x = np.bitwise_xor(others, np.frombuffer(a, np.uint8)[None, :])
    return np.unpackbits(x, axis=1).sum(axis=1)


class Deduper:
    """Exact and near-duplicate filter: normalised question+answer, and for images a near-identical dHash."""

    def __init__(self, max_bits: int = NEAR_DUPLICATE_BITS):
        self.max_bits = max_bits
        self.text_keys: set[str] = set()
        self.image_hashes: dict[str, list[bytes]] = defaultdict(list)
        self.removed = 0

    def seen(self, question: str, answer: str, image: Image.Image | None) -> bool:
        if image is None:
            key = normalise(question)  # one reference per text question: a second one would contradict it
            if key in self.text_keys:
                self.removed += 1
                return True
            self.text_keys.add(key)
            return False
        key = normalise(question) + "\x1f" + normalise(answer)
        h = image_dhash(image)
        prior = self.image_hashes[key]
        if prior and hamming_many(h, stack_hashes(prior)).min() <= self.max_bits:
            self.removed += 1
            return True
        prior.append(h)
        return False


def stack_hashes(hashes: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), -1)


DISTINCTIVE_ANSWER_WORDS = 6  # shorter answers ("yes", "CT", a code) legitimately recur across splits


def _hashes(ds: datasets.Dataset) -> list[bytes | None]:
    if "image" not in ds.column_names:
        return [None] * len(ds)
    return [None if img is None else image_dhash(img) for img in ds["image"]]


def deduplicate(ds: datasets.Dataset, max_bits: int = NEAR_DUPLICATE_BITS) -> tuple[datasets.Dataset, int]:
    """Drop exact and near duplicates (normalised text; image dHash within ``max_bits``); returns (kept, n_removed)."""
    dedup = Deduper(max_bits)
    keep = []
    for i, (q, a, img) in enumerate(zip(ds["question"], ds["answer"], ds["image"])):
        if not dedup.seen(q, a, img):
            keep.append(i)
    return ds.select(keep), len(ds) - len(keep)


def leakage_report(dsdict: datasets.DatasetDict, max_bits: int = NEAR_DUPLICATE_BITS, max_examples: int = 5) -> dict:
    """Train/test overlap by question (text rows), distinctive answer, and image (near-duplicate dHash).

    Image rows may share a templated question ("What modality is this?") across splits; what must not cross is the
    picture, so image rows are matched by image and text rows by question.
    """
    train, test = dsdict["train"], dsdict["test"]

    def text_keys(ds):
        return {normalise(q): i for i, (q, img) in enumerate(zip(ds["question"], has_image(ds))) if not img}

    def answer_keys(ds):
        # Image rows' answers are labels of a picture (a window, a finding); what must not cross there is the picture.
        return {normalise(a): i for i, (a, img) in enumerate(zip(ds["answer"], has_image(ds)))
                if not img and len(a.split()) >= DISTINCTIVE_ANSWER_WORDS}

    tq, sq = text_keys(train), text_keys(test)
    ta, sa = answer_keys(train), answer_keys(test)
    q_leaks = sorted(set(tq) & set(sq))
    a_leaks = sorted(set(ta) & set(sa))
    train_list = [h for h in _hashes(train) if h is not None]
    img_leaks = []
    if train_list:
        train_h = stack_hashes(train_list)
        for i, h in enumerate(_hashes(test)):
            if h is not None and hamming_many(h, train_h).min() <= max_bits:
                img_leaks.append(test[i]["id"])
    return {
        "question_overlap": len(q_leaks), "answer_overlap": len(a_leaks), "image_overlap": len(img_leaks),
        "n_leaks": len(q_leaks) + len(a_leaks) + len(img_leaks),
        "examples": {"question": q_leaks[:max_examples], "answer": a_leaks[:max_examples],
                     "image_test_ids": img_leaks[:max_examples]},
    }


def assert_no_leakage(dsdict: datasets.DatasetDict) -> dict:
    """Raise with examples when anything crosses train/test; return the (clean) report otherwise."""
    report = leakage_report(dsdict)
    if report["n_leaks"]:
        raise DataError("dataset", "train/test", "split", f"leakage: {json.dumps(report['examples'])[:800]}")
    return report
