"""Concepts from the ontologies (HPO phenotypic abnormalities, ICD-10 categories) and the surface forms gold pairs
are built from: rewordings, contrasts, side swaps, re-casing."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass

from medix_lib.data import read_hpo, read_icd10
from medix_lib.text import lower_first

PHENOTYPIC_ABNORMALITY = "HP:0000118"

# Concepts from the ontologies (read through the data stage's readers)
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Concept:
    id: str
    name: str
    synonyms: tuple[str, ...]  # exact synonyms only: RELATED/BROAD/NARROW are not equivalent answers
    parents: tuple[str, ...]


# Long enough that the verifier meets long answers in training (with titles of at most 8 words it learned "long text
# = YES"); longer ICD titles are mostly enumerations that no answer would be compared with.
_MAX_WORDS = 16
_ICD_VAGUE = re.compile(r"\b(other|unspecified|not elsewhere classified|NEC|and|or|without|with)\b", re.I)


SOURCES = ("hpo", "icd10", "drugs", "dicom")


def concepts(sources: tuple[str, ...] = SOURCES) -> dict[str, Concept]:
    """HPO phenotypic abnormalities and ICD-10 categories/subcategories with short, self-contained titles, drugs
    (:func:`drug_concepts`) and imaging vocabulary (:func:`imaging_concepts`), from the ``sources`` named.

    ICD titles with "other", "unspecified", "and/or", "with/without" are left out: they are either equal to their
    parent in meaning ("Asthma, unspecified") or conjunctions, so their gold label would be noise.
    """
    terms = {t.id: t for t in read_hpo()}
    children = defaultdict(list)
    for t in terms.values():
        for p in t.parents:
            children[p].append(t.id)
    keep, stack = set(), [PHENOTYPIC_ABNORMALITY]
    while stack:
        for c in children[stack.pop()]:
            if c not in keep:
                keep.add(c)
                stack.append(c)
    out: dict[str, Concept] = {}
    for tid in sorted(keep):
        t = terms[tid]
        if len(t.name.split()) > _MAX_WORDS:
            continue
        syns = tuple(s.text for s in t.synonyms if s.scope == "EXACT" and s.kind != "obsolete_synonym"
                     and len(s.text.split()) <= _MAX_WORDS)
        out[tid] = Concept(tid, t.name, syns, tuple(p for p in t.parents if p in keep))
    icd = {c.code: c for c in read_icd10()}
    for c in icd.values():
        if c.kind not in ("category", "subcategory") or _ICD_VAGUE.search(c.description) \
                or len(c.description.split()) > _MAX_WORDS:
            continue
        parent = icd.get(c.parent) if c.parent else None
        parents = (f"ICD10:{parent.code}",) if parent and parent.kind in ("category", "subcategory") else ()
        out[f"ICD10:{c.code}"] = Concept(f"ICD10:{c.code}", c.description, (), parents)
    # A parent dropped above (vague title) leaves no edge: siblings still share the dropped parent's id.
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown concept source(s) {sorted(unknown)}; valid: {', '.join(SOURCES)}")
    keep = {k: v for k, v in out.items() if ("icd10" if k.startswith("ICD10:") else "hpo") in sources}
    return {**keep, **(drug_concepts() if "drugs" in sources else {}),
            **(imaging_concepts() if "dicom" in sources else {})}


# WHO INN stems: drugs that share one belong to one class, so two of them are the near miss a grader must not accept
# ("atorvastatin" against "simvastatin"); the stem is their shared parent.
_INN_STEMS = ("statin", "pril", "sartan", "olol", "dipine", "prazole", "tidine", "mab", "tinib", "cillin", "mycin",
              "floxacin", "cycline", "conazole", "vir", "parin", "triptan", "setron", "lukast", "gliptin", "gliflozin",
              "glitazone", "oxetine", "pramine", "azepam", "barbital", "caine", "profen", "dronate", "terol",
              "tropium", "semide", "thiazide", "sone", "solone", "lutamide", "platin", "rubicin", "tecan", "fibrate",
              "azosin", "oxacin", "cef", "sulfa", "navir", "previr", "buvir", "tegravir", "lamide", "xaban", "gatran")


def _stem(name: str) -> str | None:
    word = name.split()[0] if name else ""
    return next((s for s in _INN_STEMS if (word.startswith(s) if s in ("cef", "sulfa") else word.endswith(s))
                 and len(word) > len(s) + 2), None)


def drug_concepts() -> dict[str, Concept]:
    """Single-ingredient drugs of the drug dictionary: the generic name, its brand and variant names as synonyms,
    and its INN stem (class) as parent, so siblings are drugs of one class.

    >>> c = drug_concepts()["drug:atorvastatin"]
    >>> c.parents, "lipitor" in [s.lower() for s in c.synonyms]
    (('stem:statin',), True)
    """
    from medix_lib.data.ontologies import drug_dictionary

    d = drug_dictionary()
    variants = defaultdict(list)
    for variant, canonical in d["drug_variant_to_canonical"].items():
        if len(canonical) == 1:
            variants[canonical[0]].append(variant)
    out = {}
    for canonical, data in d["drug_canonical_to_data"].items():
        if "," in canonical or " and " in canonical or not canonical.replace("-", "").isalpha():
            continue  # combinations and salts with digits are enumerations, not one answer
        stem = _stem(canonical)
        synonyms = tuple(sorted(v for v in variants.get(canonical, ())
                                if v != canonical and v.replace("-", "").isalpha() and len(v) > 3))
        if stem or synonyms:
            out[f"drug:{canonical}"] = Concept(f"drug:{canonical}", canonical, synonyms,
                                               (f"stem:{stem}",) if stem else ())
    return out


# DICOM context groups of imaging vocabulary: acquisition modality, radiographic view, anatomic modifier, common
# anatomic region. Members of one group are siblings (CT and MR, postero-anterior and antero-posterior).
_DICOM_GROUPS = (29, 4010, 2, 4031)


def imaging_concepts() -> dict[str, Concept]:
    """Imaging terms of the DICOM standard's code dictionaries (as pydicom ships them): a concept's meaning in each
    coding scheme, and a modality's own code (CT, MR, US, ...), are synonyms.

    >>> c = imaging_concepts()["dicom:ComputedTomography"]
    >>> "CT" in c.synonyms, c.parents[0]
    (True, 'cid:29')
    """
    import pydicom.sr._cid_dict as cid
    import pydicom.sr._concepts_dict as schemes

    out = {}
    for group in _DICOM_GROUPS:
        for keyword in sorted({k for keywords in cid.cid_concepts[group].values() for k in keywords}):
            names = []
            for scheme in ("SCT", "DCM", "RADLEX"):
                for code, (meaning, _) in schemes.concepts.get(scheme, {}).get(keyword, {}).items():
                    names.append(meaning)
                    if scheme == "DCM" and group == 29 and code.isalpha() and code.upper() == code:
                        names.append(code)
            unique = list(dict.fromkeys(n for n in names if n))
            if unique:
                key = f"dicom:{keyword}"
                parents = out[key].parents + (f"cid:{group}",) if key in out else (f"cid:{group}",)
                out[key] = Concept(key, unique[0], tuple(unique[1:]), parents)
    return out


_CONTRAST = {"benign": "malignant", "malignant": "benign", "increased": "decreased", "decreased": "increased",
             "elevated": "reduced", "reduced": "elevated", "high": "low", "low": "high", "upper": "lower",
             "lower": "upper", "proximal": "distal", "distal": "proximal", "anterior": "posterior",
             "posterior": "anterior", "tall": "short", "short": "tall"}
_CONTRAST_PREFIX = {"hyper": "hypo", "hypo": "hyper", "macro": "micro", "micro": "macro"}
_SYNONYMOUS_WORDS = {"increased": ["elevated", "raised", "high"], "decreased": ["reduced", "low", "diminished"],
                     "elevated": ["increased", "raised"], "reduced": ["decreased", "diminished"],
                     "abnormality": ["anomaly"], "enlarged": ["large"]}


def recase(text: str, rng: random.Random) -> str:
    """Lower- or upper-case the first letter at random (abbreviations stay as they are). Applied to every text of
    every pair: ontology titles are capitalised and rewrites are not, and a verifier trained on raw casing learned
    "both capitalised = YES" (P(YES) 0.9 on random HPO pairs, 0.0 once lower-cased).

    >>> sorted({recase("Atrial flutter", random.Random(i)) for i in range(8)})
    ['Atrial flutter', 'atrial flutter']
    """
    return lower_first(text) if rng.random() < 0.5 else text[:1].upper() + text[1:]


def paraphrase(text: str, rng: random.Random) -> str | None:
    """A reworded equivalent of an ontology title, or None when no rule applies.

    >>> paraphrase("Fracture of the femur", random.Random(0))
    'femur fracture'
    >>> paraphrase("Diabetes mellitus, type 2", random.Random(0))
    'type 2 diabetes mellitus'
    """
    low = lower_first(text)
    m = re.fullmatch(r"(\w+) of (?:the )?([\w\- ]+)", low)
    if m and len(m.group(2).split()) <= 3:
        return f"{m.group(2)} {m.group(1)}"
    m = re.fullmatch(r"([^,]+), ([^,]+)", low)
    if m:
        return f"{m.group(2)} {m.group(1)}"
    words = low.split()
    options = [i for i, w in enumerate(words) if w in _SYNONYMOUS_WORDS]
    if options:
        i = rng.choice(options)
        return " ".join(words[:i] + [rng.choice(_SYNONYMOUS_WORDS[words[i]])] + words[i + 1:])
    m = re.fullmatch(r"abnormal ([\w\- ]+)", low)
    if m:
        return f"{m.group(1)} abnormality"
    return None


def contrast(text: str) -> str | None:
    """Flip the first directional word (increased/decreased, hyper-/hypo-, proximal/distal, ...).

    >>> contrast("Increased serum ferritin"), contrast("Hypokalemia"), contrast("Atrial flutter")
    ('decreased serum ferritin', 'hyperkalemia', None)
    """
    words = lower_first(text).split()
    for i, w in enumerate(words):
        if w in _CONTRAST:
            return " ".join(words[:i] + [_CONTRAST[w]] + words[i + 1:])
        for a, b in _CONTRAST_PREFIX.items():
            if w.startswith(a) and len(w) > len(a) + 3:
                return " ".join(words[:i] + [b + w[len(a):]] + words[i + 1:])
    return None


# Organs and structures with the adjective a report uses for them. Answers that share every word but the organ
# ("left renal mass" / "left adrenal mass") are the near miss a verifier trained on ontology siblings alone missed.
ORGANS: tuple[tuple[str, str], ...] = (
    ("kidney", "renal"), ("adrenal gland", "adrenal"), ("liver", "hepatic"), ("lung", "pulmonary"),
    ("heart", "cardiac"), ("brain", "cerebral"), ("stomach", "gastric"), ("spleen", "splenic"),
    ("pancreas", "pancreatic"), ("thyroid gland", "thyroid"), ("ovary", "ovarian"), ("uterus", "uterine"),
    ("prostate", "prostatic"), ("breast", "mammary"), ("bowel", "intestinal"), ("esophagus", "esophageal"),
    ("colon", "colonic"), ("bladder", "vesical"), ("testis", "testicular"), ("retina", "retinal"),
    ("cornea", "corneal"), ("larynx", "laryngeal"), ("trachea", "tracheal"), ("bronchus", "bronchial"),
    ("aorta", "aortic"), ("pleura", "pleural"), ("pericardium", "pericardial"), ("peritoneum", "peritoneal"),
    ("spine", "spinal"), ("skull", "cranial"), ("nose", "nasal"), ("tongue", "lingual"), ("skin", "cutaneous"),
    ("bone", "osseous"), ("muscle", "muscular"), ("vein", "venous"), ("artery", "arterial"),
    ("duodenum", "duodenal"), ("rectum", "rectal"), ("gallbladder", "gallbladder"), ("ureter", "ureteral"),
    ("urethra", "urethral"), ("eyelid", "palpebral"), ("jaw", "mandibular"), ("rib", "costal"),
)
_ORGAN_WORD = re.compile(r"\b(" + "|".join(sorted({re.escape(w) for pair in ORGANS for w in pair}, key=len,
                                                   reverse=True)) + r")\b", re.I)


def swap_organ(text: str, rng: random.Random) -> str | None:
    """The same text about another organ (noun for noun, adjective for adjective), or None when it names none.

    >>> swap_organ("Left renal mass", random.Random(1)) not in (None, "left renal mass")
    True
    """
    m = _ORGAN_WORD.search(text)
    if not m:
        return None
    word = m.group(1).lower()
    position = next(i for i, pair in enumerate(ORGANS) if word in pair)
    form = 0 if word == ORGANS[position][0] else 1
    other = rng.choice([pair[form] for i, pair in enumerate(ORGANS) if i != position and pair[form] != word])
    return lower_first(text[:m.start()] + other + text[m.end():])


def organ_rephrase(text: str) -> str | None:
    """The organ adjective written as "of the <organ>", or the reverse, or None.

    >>> organ_rephrase("Renal cyst"), organ_rephrase("cyst of the kidney"), organ_rephrase("Hepatic mass, left lobe")
    ('cyst of the kidney', 'renal cyst', None)
    """
    low = lower_first(text)
    m = re.fullmatch(r"([a-z]+) ([a-z]+(?: [a-z]+)?)", low)
    for noun, adjective in ORGANS:
        if m and m.group(1) == adjective and noun != adjective:
            return f"{m.group(2)} of the {noun}"
    m = re.fullmatch(r"([a-z]+(?: [a-z]+)?) of the ([a-z]+(?: gland)?)", low)
    for noun, adjective in ORGANS:
        if m and m.group(2) == noun and noun != adjective:
            return f"{adjective} {m.group(1)}"
    return None


def normal_region(text: str) -> str | None:
    """The body part a concept says is abnormal ("Abnormality of the kidney", "Abnormal heart morphology"), whose
    normal state can be said both as "normal X" and as "no abnormality of X".

    >>> normal_region("Abnormality of the kidney"), normal_region("Abnormal testis morphology")
    ('kidney', 'testis')
    """
    low = lower_first(text)
    m = re.fullmatch(r"abnormality of (?:the )?([a-z ]+)", low) or re.fullmatch(r"abnormal ([a-z ]+?) morphology",
                                                                                 low)
    return m.group(1) if m and len(m.group(1).split()) <= 3 else None


def enlarged_organ(concept: Concept) -> str | None:
    """The organ a concept says is enlarged ("Enlarged kidney", a synonym "Renal enlargement"), else None."""
    for text in (concept.name, *concept.synonyms):
        low = lower_first(text)
        m = re.fullmatch(r"enlarged ([a-z]+(?: gland)?)", low)
        if m and any(m.group(1) == noun for noun, _ in ORGANS):
            return m.group(1)
    return None


def swap_side(text: str) -> str | None:
    """Swap left and right, or None when the text names no side.

    >>> swap_side("Left ventricular failure")
    'right ventricular failure'
    """
    low = lower_first(text)
    swapped = re.sub(r"\b(left|right)\b", lambda m: "right" if m.group(1) == "left" else "left", low)
    return swapped if swapped != low else None
