"""VQA-RAD (Lau et al. 2018): clinician-written questions on radiology images (CT, MRI, plain film); open and yes/no.

Layouts read by :func:`load_vqa_rad`:

- the original release (OSF): ``VQA_RAD Dataset Public.json``, one list of records with ``qid``, ``image_name``,
  ``image_case_url``, ``image_organ`` (HEAD / CHEST / ABD), ``question``, ``answer`` (text or a number),
  ``answer_type`` (OPEN / CLOSED), ``question_type`` (PRES, MODALITY, PLANE, ORGAN, ...), ``phrase_type``, ...;
  images in ``VQA_RAD Image Folder/``. The split is the record's ``phrase_type``: ``test_freeform`` and
  ``test_para`` are the 451-question test set, ``freeform`` and ``para`` train.
- the hub copy ``flaviagiammarino/vqa-rad`` (``data/{train,test}-*.parquet``; used by MedEvalKit and the MediX-R1
  evaluation): ``image`` (bytes), ``question``, ``answer`` only.

Modality: VQA-RAD has no per-image modality field, but its own answers state it. All questions about an image are
read first (in the original JSON both splits: the modality belongs to the image, whichever split asks), and the
image's modality is what its modality questions say - ``question_type`` MODALITY in the original, questions worded
as one ("what type of imaging ...", "is this an MRI?") in the hub copy: the answer's modality ("MRI - T2 weighted"
-> MRI_SCAN) or, for a "yes", the question's; a strict majority decides. Negated questions ("what type of imaging
does this not represent?") and "no" answers give no evidence. An image without evidence takes the modality its
row's question names, when it names exactly one outside a negation, else OTHER - except where the question asks
whether the picture is of a modality and the answer denies it ("Is this a CT image?" - "no"): then the modality the
answer names ("no, MRI"), else OTHER (:func:`row_modality`). ``image_organ`` is not used (chest images are
radiographs and CTs alike). ``stats`` counts which source decided each row.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

from ._common import (ImageFolders, RowStream, Split, locate, make_row, reference, resolve_split, task_for_answer,
                      text)
from ._modality import infer_modality, named_modalities, negated

ORIGINAL_JSON = "VQA_RAD Dataset Public.json"
IMAGE_FOLDER = "VQA_RAD Image Folder"
_SPLITS = (Split("train", ("train",)), Split("test", ("test",)))
_MODALITY_QUESTION = re.compile(
    r"\b(modality|imaging (technique|method|type)|type of (image|imaging|scan|study|film|radiograph|x-?ray)"
    r"|kind of (image|imaging|scan)|how (was|is) (this|the) (image|scan|film) (taken|obtained|acquired|done)"
    r"|what (was|is) used to (take|obtain|acquire))\b|^(is|was) (this|the image) (a|an)\b", re.I)


# "Is this a CT?", "Is the image an MRI scan?", "Was this image taken with ultrasound?": a yes/no question whether the
# picture is of a modality; ``rest`` must name one within its first words ("Is this a mass in the CT?" does not ask).
_ASKS_WHETHER = re.compile(
    r"^\s*(?:is|was|are|were)\s+(?:this|these|it|the)\b"
    r"(?:\s+(?:image|picture|photo|scan|film|study|radiograph|view|exam)s?)?(?:\s+(?:a|an))?"
    r"(?:\s+(?:taken|obtained|acquired|done|made|performed)\s+(?:with|using|by|on|via|under|in)(?:\s+(?:a|an))?)?"
    r"\s+(?P<rest>.+)$", re.I)
_DENIAL = re.compile(r"^\s*(?:no|not|negative)\b[\s,.;:-]*", re.I)


def asks_whether_modality(question: str) -> bool:
    """Whether ``question`` asks if the picture is of a modality (its answer then affirms or denies that modality).

    >>> asks_whether_modality("Is this a CT image?"), asks_whether_modality("Was this image taken with MRI?")
    (True, True)
    >>> asks_whether_modality("Is this a mass in the CT?"), asks_whether_modality("Is there contrast in this CT?")
    (False, False)
    """
    m = _ASKS_WHETHER.match(question)
    if not m:
        return False
    return bool(named_modalities(" ".join(m.group("rest").split()[:3])))


def row_modality(question: str, answer: str) -> str | None:
    """The modality a row's own question and answer name, for an image its modality questions leave undecided.

    The question's modality, unless the question asks whether the picture is of a modality and the answer denies
    it: then the modality the answer names, if any.

    >>> row_modality("Is this a CT image?", "yes"), row_modality("Is this a CT image?", "no")
    ('CT_SCAN', None)
    >>> row_modality("Is this a CT image?", "No, MRI"), row_modality("How many kidneys are seen on this CT?", "2")
    ('MRI_SCAN', 'CT_SCAN')
    """
    if asks_whether_modality(question) and (denial := _DENIAL.match(answer)):
        return infer_modality(answer[denial.end():])
    return infer_modality(question)


def _image_key(value) -> str:
    """An image's identity across its questions: its file name, else a hash of its bytes (hub copy)."""
    if isinstance(value, str):
        return value
    data = value.get("bytes") if isinstance(value, dict) else value.tobytes() if hasattr(value, "tobytes") else value
    return hashlib.sha1(data or b"").hexdigest()


def _is_modality_question(rec: dict, question: str) -> bool:
    if "question_type" in rec:
        return "MODALITY" in re.split(r"[\s,]+", str(rec["question_type"]).upper())
    return bool(_MODALITY_QUESTION.search(question))


def modality_evidence(question: str, answer: str) -> str | None:
    """What one modality question says about its image.

    >>> modality_evidence("What type of imaging is this?", "CT with contrast")
    'CT_SCAN'
    >>> modality_evidence("Is this an MRI?", "yes"), modality_evidence("Is this an MRI?", "no")
    ('MRI_SCAN', None)
    >>> modality_evidence("What type of imaging does this not represent?", "ultrasound") is None
    True
    """
    if negated(question):
        return None
    a = answer.strip().lower()
    if a == "no":
        return None
    if a == "yes":
        return infer_modality(question)
    return infer_modality(answer) or infer_modality(f"{question} {answer}")


def _image_modalities(records) -> dict[str, str]:
    votes: dict[str, Counter] = {}
    for rec in records:
        field = "image_name" if "image_name" in rec else "image"
        question, answer = str(rec.get("question", "")), str(rec.get("answer", ""))
        if rec.get(field) is None or not _is_modality_question(rec, question):
            continue
        if tag := modality_evidence(question, answer):
            votes.setdefault(_image_key(rec[field]), Counter())[tag] += 1
    # An image's questions can disagree (a mislabelled answer); a strict majority decides, a tie decides nothing.
    return {key: c.most_common(1)[0][0] for key, c in votes.items() if c.most_common(1)[0][1] * 2 > sum(c.values())}


def _in_split(rec: dict, split: Split) -> bool:
    if "phrase_type" not in rec:
        return True
    return str(rec["phrase_type"]).startswith("test") == (split.name == "test")


def load_vqa_rad(source: str | Path = "flaviagiammarino/vqa-rad", split: str = "test", image_size: int | None = None,
                 limit: int | None = None, image_root: str | Path | None = None) -> RowStream:
    """VQA-RAD from either layout in the module docstring (for the original, the JSON file or its folder)."""
    name = "vqa_rad"
    sp = resolve_split(name, split, _SPLITS)

    def make(stats: Counter):
        found = locate(name, source, sp, (ORIGINAL_JSON, "data/{split}-*.parquet", "{split}-*.parquet",
                                          "{split}.parquet"))
        # Two passes, so the hub copy's image bytes are never all held at once: per-image evidence, then rows.
        modality_of = _image_modalities(found.records())
        images = ImageFolders.under(name, image_root, found.root, ("", IMAGE_FOLDER, "images"),
                                    f" (the release's '{IMAGE_FOLDER}')")
        for i, rec in enumerate(found.records()):
            if not _in_split(rec, sp):
                continue
            rid = rec.get("qid", f"{sp.name}-{i}")
            question, answer = text(rec, "question", name, rid), reference(rec, "answer", name, rid)
            field = "image_name" if "image_name" in rec else "image"
            value = rec.get(field)
            modality = modality_of.get(_image_key(value)) if value is not None else None
            if modality:
                stats["modality_from_answers"] += 1
            elif modality := row_modality(question, answer):
                stats["modality_inferred_from_question"] += 1
            else:
                modality = "OTHER"
                stats["modality_unknown"] += 1
            ok, img = images.open(value, rid, field, image_size, stats)
            if ok:
                yield make_row(name, rid, sp, question, answer, modality, task_for_answer(answer), img)

    return RowStream(name, make, limit)
