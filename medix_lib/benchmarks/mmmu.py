"""MMMU's Health & Medicine subjects (Yue et al. 2024), validation split: college-level questions with images.

Layout read by :func:`load_mmmu`: the hub copy ``MMMU/MMMU`` (the MediX-R1 release scores it with MedEvalKit's
``MMMU-Medical-val``), one config per subject with ``<Subject>/{dev,validation,test}-*.parquet`` holding ``id``,
``question`` (with ``<image N>`` placeholders), ``options`` (a Python-literal list as a string), ``explanation``,
``image_1``..``image_7``, ``img_type``, ``answer`` (option letter; free text for open questions; hidden in
``test``), ``topic_difficulty``, ``question_type`` (``multiple-choice`` / ``open``), ``subfield``. The medical
subjects (MedEvalKit's "Health and Medicine" group) are :data:`MEDICAL_SUBJECTS`.

A schema row holds one image: ``image_1`` is kept; rows with more images are counted as ``multi_image_rows``
(and warned) so the loss is visible. Modality comes from the dataset's ``img_type`` when it names a kind of image
(microscopic or pathological -> MICROSCOPY, photographs -> CLINICAL_PHOTOGRAPHY, diagrams, charts, plots, tables
-> GRAPHICS); body scans and generic "medical images" are inferred from the question text, else OTHER.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import Counter
from pathlib import Path

from medix_lib.data import DataError

from ._common import ImageFolders, RowStream, Split, as_text, locate, make_row, reference, resolve_split, text
from ._mcq import mcq_row
from ._modality import infer_modality

MEDICAL_SUBJECTS = ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                    "Public_Health")
_SPLITS = (Split("dev", ("dev",)), Split("validation", ("validation", "val", "validate")), Split("test", ("test",)))
_IMG_TYPE = (("MICROSCOPY", r"microscop|patholog"), ("CLINICAL_PHOTOGRAPHY", r"photograph"),
             ("GRAPHICS", r"diagram|chart|plot|table|graph|sketch|chemical structure"))


def modality_from_img_type(img_type: str, question: str) -> str:
    """Modality from MMMU's ``img_type``, falling back to the question text.

    >>> modality_from_img_type("['Microscopic Images']", "What is shown?")
    'MICROSCOPY'
    >>> modality_from_img_type("['Body Scans: MRI, CT scans, and X-rays']", "This CT of the chest shows")
    'CT_SCAN'
    """
    for tag, pattern in _IMG_TYPE:
        if re.search(pattern, img_type, re.I):
            return tag
    return infer_modality(question) or "OTHER"


def load_mmmu(source: str | Path = "MMMU/MMMU", split: str = "validation", subjects=MEDICAL_SUBJECTS,
              image_size: int | None = None, limit: int | None = None,
              image_root: str | Path | None = None) -> RowStream:
    """The medical subjects of MMMU from the hub layout in the module docstring (hub id or its local folder)."""
    name = "mmmu_medical"
    sp = resolve_split(name, split, _SPLITS)
    unknown = sorted(set(subjects) - set(MEDICAL_SUBJECTS))
    if unknown:
        raise ValueError(f"{name}: {unknown} are not medical subjects; valid: {', '.join(MEDICAL_SUBJECTS)}")

    def make(stats: Counter):
        for subject in subjects:
            found = locate(name, source, sp, ("{config}/{split}-*.parquet", "{config}/{split}/*.parquet"), subject)
            images = ImageFolders.under(name, image_root, found.root)
            for i, rec in enumerate(found.records()):
                rid = rec.get("id", f"{subject}-{i}")
                question = text(rec, "question", name, rid)
                if any(rec.get(f"image_{k}") is not None for k in range(2, 8)):
                    stats["multi_image_rows"] += 1
                    if stats["multi_image_rows"] == 1:
                        warnings.warn(f"{name}: row {rid!r} has several images; only image_1 is kept", stacklevel=2)
                ok, img = images.open(rec.get("image_1"), rid, "image_1", image_size, stats)
                if not ok:
                    continue
                modality = modality_from_img_type(str(rec.get("img_type") or ""), question)
                answer = reference(rec, "answer", name, rid)
                if rec.get("question_type") == "open":
                    yield make_row(name, rid, sp, question, answer, modality, "open", img)
                    continue
                try:
                    options = [as_text(o, name, rid, "options") for o in ast.literal_eval(text(rec, "options",
                                                                                             name, rid))]
                except (ValueError, SyntaxError) as err:
                    raise DataError(name, rid, "options", f"not a list literal ({err})") from None
                letter = answer.upper()
                if len(letter) != 1 or not 0 <= ord(letter) - 65 < len(options):
                    raise DataError(name, rid, "answer", f"{answer!r} is not a letter of the {len(options)} options")
                row = mcq_row(name, rid, sp, question, options, ord(letter) - 65, stats, True, modality, img)
                if row:
                    yield row

    return RowStream(name, make, limit)
