"""Whether the picture matters: an image task's questions asked again with the picture replaced.

A policy can score on image questions from their words alone (a yes/no question is right half the time, a question
whose wording gives the answer away always). The control asks the same rows with the same prompt, byte for byte, and
other pixels:

- ``blank``: a uniform mid-grey picture of the same size and mode;
- ``shuffled``: the picture of another row of the task whose source differs, by a derangement fixed by the protocol's
  seed (every test picture is still shown once, to a question about another source).

A row's source is its ``image_source`` where its loader says one (:data:`~medix_lib.data.ROW_EXTRAS`), else the hash of
its pixels (one file read twice gives the same pixels). The controlled responses are stored under their own task key,
``<task>@<control>`` (:func:`control_task`), judged as the task's own, and compared item by item with the normal run
in the report's ``picture_reliance``. A resumed run answers only the rows without a controlled answer; the shuffled
pictures depend on the task's rows as well as the seed, so resume it with the same rows (``max_eval_rows``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

IMAGE_CONTROLS: tuple[str, ...] = ("none", "blank", "shuffled")
_SEPARATOR = "@"  # never in a registry task name, so a control's key cannot be taken for a task


def check_control(control: str) -> str:
    if control not in IMAGE_CONTROLS:
        raise ValueError(f"unknown image control {control!r}; valid: {', '.join(IMAGE_CONTROLS)}")
    return control


def control_task(task: str, control: str) -> str:
    """The store key of ``task``'s responses under ``control``.

    >>> control_task("synthetic_image", "blank"), base_task("synthetic_image@blank"), base_task("vqa_rad")
    ('synthetic_image@blank', 'synthetic_image', 'vqa_rad')
    """
    if check_control(control) == "none":
        raise ValueError(f"{task}: the normal run has no control key; valid controls: "
                         f"{', '.join(IMAGE_CONTROLS[1:])}")
    return f"{task}{_SEPARATOR}{control}"


def base_task(key: str) -> str:
    """The task a store key belongs to: the key itself, or the task of a control's key."""
    return key.split(_SEPARATOR, 1)[0]


def blank_like(image):
    """A uniform mid-grey picture of ``image``'s size and mode.

    >>> from PIL import Image
    >>> grey = blank_like(Image.new("RGB", (5, 3), "red"))
    >>> grey.size, grey.mode, grey.getextrema()
    ((5, 3), 'RGB', ((128, 128), (128, 128), (128, 128)))
    """
    from PIL import Image

    return Image.new("L", image.size, 128).convert(image.mode)


def image_identity(row: dict) -> str:
    """What a row's picture comes from: its ``image_source``, else the hash of its size, mode and pixels."""
    if row.get("image_source"):
        return f"source:{row['image_source']}"
    image = row["image"]
    digest = hashlib.sha256(f"{image.size}{image.mode}".encode())
    digest.update(image.tobytes())
    return f"pixels:{digest.hexdigest()[:16]}"


def _rank(seed: int, item: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{item}".encode()).hexdigest()


def derangement(items: list[str], sources: list[str], seed: int, task: str = "rows") -> dict[str, str]:
    """item -> the item whose picture it is shown, a permutation in which no item gets a picture of its own source.

    Items are ordered by source, the largest sources first (ties and the order within a source by a hash of the seed
    and the item), and each is given the picture of the item ``m`` places on, ``m`` the largest source's size: two
    items that far apart in a circle of contiguous sources, none larger than ``m`` and ``m`` at most half the circle,
    are never of one source. With one source holding more than half the items no such permutation exists.

    >>> d = derangement(["a", "b", "c", "d"], ["x", "x", "y", "z"], seed=0)
    >>> sorted(d) == sorted(d.values()) == ["a", "b", "c", "d"], d["a"] in ("c", "d"), d["b"] in ("c", "d")
    (True, True, True)
    """
    if len(items) != len(sources) or len(set(items)) != len(items):
        raise ValueError(f"{task}: a derangement needs distinct items, one source each")
    by_source: dict[str, list[str]] = {}
    for item, source in zip(items, sources):
        by_source.setdefault(source, []).append(item)
    largest = max((len(v) for v in by_source.values()), default=0)
    if largest * 2 > len(items):
        commonest = max(by_source, key=lambda s: len(by_source[s]))
        raise ValueError(f"{task}: cannot show each of {len(items)} image rows a picture from another source: "
                         f"{largest} of them share one source ({commonest}); use image_control 'blank'")
    order = [item for source in sorted(by_source, key=lambda s: (-len(by_source[s]), _rank(seed, s)))
             for item in sorted(by_source[source], key=lambda i: _rank(seed, i))]
    return {item: order[(k + largest) % len(order)] for k, item in enumerate(order)}


def controlled_rows(rows: Iterable[dict], control: str, seed: int, task: str = "rows") -> list[dict]:
    """The rows with a picture, each with its picture replaced as ``control`` says and nothing else changed (the
    question, choices, reference, id and item info are the row's own, so the prompt is the normal run's). Rows
    without a picture have nothing to replace and are left out."""
    pictured = [r for r in rows if r.get("image") is not None]
    if check_control(control) == "blank":
        blanks: dict = {}  # one grey picture per size and mode: a large task's pictures are not held twice

        def blank(image):
            shape = (image.size, image.mode)
            if shape not in blanks:
                blanks[shape] = blank_like(image)
            return blanks[shape]

        return [{**r, "image": blank(r["image"]), "extra_images": [blank(x) for x in r.get("extra_images") or []]}
                for r in pictured]
    if control == "shuffled":  # a row of several pictures gets its donor's pictures, as many as the donor has
        by_id = {r["id"]: r for r in pictured}
        donors = derangement(list(by_id), [image_identity(r) for r in pictured], seed, task)
        return [{**r, "image": by_id[donors[r["id"]]]["image"],
                 "extra_images": list(by_id[donors[r["id"]]].get("extra_images") or [])} for r in pictured]
    raise ValueError(f"{task}: image control 'none' replaces nothing; valid controls: "
                     f"{', '.join(IMAGE_CONTROLS[1:])}")
