"""Modality tags inferred from free text, for datasets without a modality field (VQA-RAD's hub copy, PMC-VQA, MMMU).

Inference is deliberately conservative: a text must name exactly one modality and hold no negation, because a
negated phrase ("what type of imaging does this NOT represent?") names what the image is not.
"""

from __future__ import annotations

import re

_MODALITY_WORDS = (
    ("CT_SCAN", r"\bct\b|computed tomograph|\bcat scan"),
    ("MRI_SCAN", r"\bmri?\b|magnetic resonance|\bflair\b|\bt[12][- ]?weighted|\bt[12]\b|diffusion[- ]weighted"),
    ("X_RAY", r"\bx[- ]?rays?\b|\bxray|radiograph|plain film|\bcxr\b"),
    ("ULTRASOUND", r"ultrasound|ultrasonograph|sonograph|\bus\b|doppler|echocardiogra"),
    ("PET_SCAN", r"\bpet\b|positron emission"),
    ("MAMMOGRAPHY", r"mammogra"),
    ("ANGIOGRAPHY", r"angiogra"),
    ("FUNDUS_PHOTOGRAPHY", r"fundus|fundoscop"),
    ("OCT_SCAN", r"\boct\b|optical coherence"),
    ("ENDOSCOPY", r"endoscop|colonoscop|gastroscop|bronchoscop"),
    ("MICROSCOPY", r"microscop|histolog|histopatholog|\bstain(ed|ing)?\b|\bh&e\b|cytolog|immunohisto"),
    ("FLUOROSCOPY", r"fluoroscop|barium (swallow|enema|meal)"),
    ("SPECT", r"\bspect\b"),
)
# A modality named inside a negated phrase ("what imaging does this NOT represent?") says what the image is not.
_NEGATION = re.compile(r"\b(not|no|never|neither|nor|without|except|other than|rather than|instead of)\b|n't\b",
                       re.I)


def negated(text: str) -> bool:
    """Whether ``text`` has a negation (then a modality it names is what the image is not, or is uncertain)."""
    return bool(_NEGATION.search(text))


def infer_modality(text: str) -> str | None:
    """The one modality tag ``text`` names; None when it names none or several, or has a negation anywhere.

    >>> infer_modality("Is this an axial CT of the abdomen?"), infer_modality("CT or MRI?")
    ('CT_SCAN', None)
    >>> infer_modality("What type of imaging does this not represent? ultrasound") is None
    True
    """
    if negated(text):
        return None
    found = named_modalities(text)
    return found.pop() if len(found) == 1 else None


def named_modalities(text: str) -> set[str]:
    """Every modality tag ``text`` names, negated or not.

    >>> sorted(named_modalities("CT or MRI?")), named_modalities("not an ultrasound")
    (['CT_SCAN', 'MRI_SCAN'], {'ULTRASOUND'})
    """
    return {tag for tag, pattern in _MODALITY_WORDS if re.search(pattern, text, re.I)}
