"""A trained answer verifier: SmolLM2 fine-tuned to say YES/NO on gold answer pairs built from HPO and ICD-10.

Why it exists: as a zero-shot YES/NO judge the 135M model is near chance on the near-misses that matter clinically
(siblings, parent/child, laterality, negation; AUC ~0.56) and MiniLM cosine only separates random pairs (~0.53), so an
offline accuracy reward built on either is noise. Fine-tuned on concept-disjoint ontology pairs with exactly the
judge's prompt and scoring rule, the same model becomes a usable offline judge: ``Judge(model="medix-verifier-135m")``.

Pipeline: :func:`build_pairs` (gold pairs, split by concept) -> :func:`train` (answer-token loss, CPU-time budget)
-> :func:`ensure` (cached full checkpoint under ``models.cache_dir()/verifier/<key>``) -> :func:`meta_evaluation`
(ROC / per-type AUC / calibration against the zero-shot judge and embedding cosine).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import math
import os
import random
import re
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medix_lib import data, judge, models

PAIRS_VERSION = "pairs-v5"  # bump when pair generation changes: it is part of every cached verifier's key
SPLITS = ("train", "validation", "test")
YES_TYPES = ("synonym", "synonym-synonym", "paraphrase")
NO_TYPES = ("sibling", "parent-child", "random", "laterality", "negation", "contrast")
# Both classes, reported on their own: asymmetric negation (the known weak spot) and answers given as a sentence,
# a hedge or filler (what a policy actually writes; v1 verifiers said YES to any long text).
MIXED_TYPES = ("negation-asym", "verbose")
PAIR_TYPES = YES_TYPES + NO_TYPES + MIXED_TYPES
PHENOTYPIC_ABNORMALITY = "HP:0000118"


@dataclass(frozen=True)
class Pair:
    reference: str
    prediction: str
    label: bool
    kind: str  # one of PAIR_TYPES, or "clinical" for the hand-written set
    concepts: tuple[str, ...]  # ontology ids the texts come from; the split guarantees none crosses splits
    source: str  # hpo, icd10, hpo+icd10 or hand-written

    def item(self) -> judge.JudgeItem:
        return judge.JudgeItem(self.reference, self.prediction)

    def as_gold(self) -> dict:
        """The gold-pair dict ``judge.meta_evaluate`` and the data stage's ``paraphrase_pairs`` use."""
        return {"a": self.reference, "b": self.prediction, "label": self.label, "pair_type": self.kind,
                "concept": ",".join(self.concepts)}


# Hand-written clinical pairs: an out-of-ontology check that the verifier learned meaning, not HPO/ICD phrasing.
CLINICAL_PAIRS: tuple[tuple[str, str, bool], ...] = (
    ("atrial fibrillation", "AF", True),
    ("atrial fibrillation", "atrial flutter", False),
    ("myocardial infarction", "heart attack", True),
    ("myocardial infarction", "angina pectoris", False),
    ("left lower lobe pneumonia", "pneumonia in the left lower lobe", True),
    ("left lower lobe pneumonia", "right lower lobe pneumonia", False),
    ("no pneumothorax", "pneumothorax absent", True),
    ("no pneumothorax", "pneumothorax", False),
    ("no pleural effusion", "no pneumothorax", False),
    ("pleural effusion", "fluid in the pleural space", True),
    ("hypokalemia", "low potassium", True),
    ("hypokalemia", "hyperkalemia", False),
    ("hypertension", "high blood pressure", True),
    ("hypertension", "hypotension", False),
    ("type 2 diabetes mellitus", "diabetes mellitus, type 2", True),
    ("type 2 diabetes mellitus", "type 1 diabetes mellitus", False),
    ("fracture of the right femur", "right femoral fracture", True),
    ("fracture of the right femur", "fracture of the left femur", False),
    ("fracture of the right femur", "fracture of the right tibia", False),
    ("increased intracranial pressure", "raised intracranial pressure", True),
    ("increased intracranial pressure", "decreased intracranial pressure", False),
    ("deep vein thrombosis", "DVT", True),
    ("deep vein thrombosis", "pulmonary embolism", False),
    ("appendicitis", "inflammation of the appendix", True),
    ("appendicitis", "cholecystitis", False),
    ("renal failure", "kidney failure", True),
    ("acute kidney injury", "chronic kidney disease", False),
    ("melanoma", "malignant melanoma of the skin", True),
    ("melanoma", "basal cell carcinoma", False),
    ("no acute intracranial hemorrhage", "intracranial hemorrhage absent", True),
    ("no acute intracranial hemorrhage", "acute intracranial hemorrhage", False),
    ("cardiomegaly", "enlarged heart", True),
    ("cardiomegaly", "pericardial effusion", False),
    ("bradycardia", "slow heart rate", True),
    ("bradycardia", "tachycardia", False),
    ("iron deficiency anemia", "anaemia due to iron deficiency", True),
    ("iron deficiency anemia", "vitamin B12 deficiency anemia", False),
    ("left ventricular hypertrophy", "LVH", True),
    ("left ventricular hypertrophy", "right ventricular hypertrophy", False),
    ("negative for malignancy", "no evidence of malignancy", True),
)


def clinical_pairs() -> list[Pair]:
    """The hand-written clinical set as :class:`Pair` rows (kind ``clinical``).

    >>> sum(p.label for p in clinical_pairs()), len(clinical_pairs())
    (20, 40)
    """
    return [Pair(a, b, label, "clinical", (), "hand-written") for a, b, label in CLINICAL_PAIRS]


# ----------------------------------------------------------------------------------------------------------------------
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


def concepts() -> dict[str, Concept]:
    """HPO phenotypic abnormalities and ICD-10 categories/subcategories with short, self-contained titles.

    ICD titles with "other", "unspecified", "and/or", "with/without" are left out: they are either equal to their
    parent in meaning ("Asthma, unspecified") or conjunctions, so their gold label would be noise.
    """
    terms = {t.id: t for t in data.read_hpo()}
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
    icd = {c.code: c for c in data.read_icd10()}
    for c in icd.values():
        if c.kind not in ("category", "subcategory") or _ICD_VAGUE.search(c.description) \
                or len(c.description.split()) > _MAX_WORDS:
            continue
        parent = icd.get(c.parent) if c.parent else None
        parents = (f"ICD10:{parent.code}",) if parent and parent.kind in ("category", "subcategory") else ()
        out[f"ICD10:{c.code}"] = Concept(f"ICD10:{c.code}", c.description, (), parents)
    # A parent dropped above (vague title) leaves no edge: siblings still share the dropped parent's id.
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Surface forms
# ----------------------------------------------------------------------------------------------------------------------

_CONTRAST = {"increased": "decreased", "decreased": "increased", "elevated": "reduced", "reduced": "elevated",
             "high": "low", "low": "high", "upper": "lower", "lower": "upper", "proximal": "distal",
             "distal": "proximal", "anterior": "posterior", "posterior": "anterior", "tall": "short",
             "short": "tall"}
_CONTRAST_PREFIX = {"hyper": "hypo", "hypo": "hyper", "macro": "micro", "micro": "macro"}
_SYNONYMOUS_WORDS = {"increased": ["elevated", "raised", "high"], "decreased": ["reduced", "low", "diminished"],
                     "elevated": ["increased", "raised"], "reduced": ["decreased", "diminished"],
                     "abnormality": ["anomaly"], "enlarged": ["large"]}
_PAIRED_ORGANS = re.compile(r"\b(kidney|renal|lung|pulmonary|eye|ocular|ear|hand|foot|arm|leg|hip|knee|breast|ovary|"
                            r"ovarian|testis|testicular|shoulder|elbow|wrist|ankle|femur|femoral|tibia|radius|ulna|"
                            r"humerus|clavicle|adrenal|ureter|ureteral|thumb|retina|retinal|cornea|corneal|iris|"
                            r"lens|eyelid|hemithorax|atrium|ventricle|ventricular|carotid)\b", re.I)
_NEG_PREFIX = ("no {x}", "without {x}", "negative for {x}", "absence of {x}", "no evidence of {x}")
_NEG_SUFFIX = ("{x} absent", "{x} not present", "{x} ruled out", "{x} not seen")
_AFFIRMED = ("{x}", "{x} present", "evidence of {x}", "positive for {x}", "{x} seen")


# Answers as a policy writes them. Each split draws from its own share of these phrasings (``_split_share``), so the
# held-out pairs also test carriers and fillers the verifier never saw.
_CARRIERS = ("The most likely diagnosis is {x}.", "Findings are consistent with {x}.", "This is {x}.",
             "The answer is {x}.", "The image shows {x}.", "Diagnosis: {x}.", "The patient has {x}.",
             "These features indicate {x}.", "Most consistent with {x}.", "I think it is {x}.",
             "The final answer is {x}.", "{x} is the best answer.", "This presentation suggests {x}.",
             "The correct answer is {x}.", "Overall, {x}.", "It is {x}.", "Findings represent {x}.",
             "The abnormality is {x}.")
_HEDGES = ("It could be {x}, {y} or {z}.", "Either {x} or {y}.", "{x} or {y}, possibly {z}.",
           "Differential diagnosis: {x}, {y}, {z}.", "Possibly {x}, but {y} cannot be excluded.",
           "Consider {x} versus {y}.", "{x}, {y} and {z} are all possible.", "Likely {y} rather than {x}.")
_FILLERS = ("Recall the relevant medical knowledge and reason step by step before answering.",
            "Let me think about the anatomy, the imaging findings and the differential diagnosis.",
            "I cannot determine the answer from the information given.",
            "Further workup is needed to establish the diagnosis.",
            "The answer depends on the clinical context and the patient's history.",
            "Consult a qualified physician for an accurate diagnosis.",
            "Based on the findings described, the most likely answer follows from the history.",
            "There are several possibilities to consider here.", "Unknown.", "Not enough information.",
            "The image quality is insufficient to answer.", "A careful review of the findings is required.",
            "Please provide more details about the patient.", "First, identify the modality and the region.",
            "This requires correlation with laboratory results.", "I am not sure.")

# Reasoning that precedes an answer, and talk about other conditions that never gives one: a base policy's
# multi-sentence replies. Without them in training, a reply three times longer than any training text read as YES.
_LEADS = ("Let me think about the anatomy and the findings first.", "Considering the history and the examination.",
          "Based on the features described above.", "After weighing the differential diagnosis.",
          "The key finding here points to one diagnosis.", "Looking at the location and the pattern of the lesion.",
          "Taking the patient's age and sex into account.", "Reviewing the typical presentation.",
          "Step by step, the findings narrow the options.", "Putting the clinical picture together.")
_TOPICS = ("{y} is a condition that can affect several organ systems.", "{y} should also be kept in mind.",
           "{y} is a common finding in such patients.", "This is often associated with {y}.",
           "Patients with {y} may present similarly.", "{y} has characteristic clinical features.",
           "The history is relevant to {y}.", "{y} belongs to the same group of disorders.",
           "Treatment of {y} depends on its severity.", "{y} is usually diagnosed clinically.")


def _split_share(pool: tuple[str, ...], split: str) -> tuple[str, ...]:
    """This split's share of a phrasing pool: every 5th phrasing (offset 1) is validation's, every 5th (offset 3) is
    test's, the rest are train's. Never empty for pools of 4 or more.

    >>> _split_share(tuple("abcdefghij"), "test")
    ('d', 'i')
    """
    offset = {"validation": 1, "test": 3}.get(split)
    return tuple(p for i, p in enumerate(pool) if (i % 5 == offset if offset is not None
                                                   else i % 5 not in (1, 3)))


def lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word is an abbreviation.

    >>> lower_first("Atrial flutter"), lower_first("DVT of the leg")
    ('atrial flutter', 'DVT of the leg')
    """
    first = text.split(" ", 1)[0]
    return text if sum(ch.isupper() for ch in first) > 1 else text[:1].lower() + text[1:]


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


def swap_side(text: str) -> str | None:
    """Swap left and right, or None when the text names no side.

    >>> swap_side("Left ventricular failure")
    'right ventricular failure'
    """
    low = lower_first(text)
    swapped = re.sub(r"\b(left|right)\b", lambda m: "right" if m.group(1) == "left" else "left", low)
    return swapped if swapped != low else None


# ----------------------------------------------------------------------------------------------------------------------
# Concept-disjoint split and pair generation
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairConfig:
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, validation, test share of concept units
    per_type: tuple[int, int, int] = (1500, 40, 60)  # pairs generated per pair type and split


class _Units:
    """Union-find over concept ids: concepts that must land in the same split (same text, contrast partners)."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def concept_splits(concepts_: dict[str, Concept], cfg: PairConfig) -> dict[str, str]:
    """Concept id -> split. Concepts sharing a normalised name or synonym, and real contrast/laterality partners,
    are one unit, so no answer text and no partner pair straddles two splits."""
    units = _Units()
    by_text: dict[str, str] = {}
    for c in concepts_.values():
        units.find(c.id)
        for text in (c.name, *c.synonyms):
            key = judge.normalise(text)
            if key in by_text:
                units.union(c.id, by_text[key])
            else:
                by_text[key] = c.id
    for c in concepts_.values():
        for partner in (contrast(c.name), swap_side(c.name)):
            if partner and judge.normalise(partner) in by_text:
                units.union(c.id, by_text[judge.normalise(partner)])
    cut_val = cfg.fractions[0]
    cut_test = cfg.fractions[0] + cfg.fractions[1]
    out = {}
    for cid in concepts_:
        u = int(hashlib.sha1(f"{cfg.seed}\x1f{units.find(cid)}".encode()).hexdigest()[:12], 16) / 16 ** 12
        out[cid] = "train" if u < cut_val else "validation" if u < cut_test else "test"
    return out


def _source(ids) -> str:
    kinds = sorted({"icd10" if i.startswith("ICD10:") else "hpo" for i in ids})
    return "+".join(kinds)


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the normalised words of two texts.

    >>> word_overlap("Contracture of the 2nd toe", "contracture of the 5th toe")
    0.6666666666666666
    """
    wa, wb = set(judge.normalise(a).split()), set(judge.normalise(b).split())
    return len(wa & wb) / max(1, len(wa | wb))


def _pairs_for_split(pool: dict[str, Concept], names: dict[str, str], n: int, rng: random.Random,
                     split: str) -> list[Pair]:
    """Up to ``n`` pairs of every type from the concepts (and the share of answer phrasings) of one split only."""
    ids = sorted(pool)
    children = defaultdict(list)
    for c in pool.values():
        for p in c.parents:
            children[p].append(c.id)
    sib_groups = [sorted(v) for _, v in sorted(children.items()) if len(v) >= 2]
    edges = [(c.id, p) for c in pool.values() for p in c.parents if p in pool]
    with_syn = [i for i in ids if pool[i].synonyms]
    with_two = [i for i in ids if len(pool[i].synonyms) >= 2]
    para = [(i, t) for i in ids for t in (pool[i].name, *pool[i].synonyms) if paraphrase(t, random.Random(0))]
    real_contrast = [(i, names[judge.normalise(contrast(pool[i].name))]) for i in ids
                     if contrast(pool[i].name) and names.get(judge.normalise(contrast(pool[i].name))) in pool]
    any_contrast = [i for i in ids if contrast(pool[i].name)]
    sided = [i for i in ids if swap_side(pool[i].name)]
    organ = [i for i in ids if _PAIRED_ORGANS.search(pool[i].name) and not swap_side(pool[i].name)]
    # Negation reads naturally on findings and diagnoses of a few words.
    negatable = [i for i in ids if len(pool[i].name.split()) <= 5]

    def form(cid: str) -> str:
        c = pool[cid]
        return rng.choice((c.name,) * 2 + c.synonyms)

    def negated(x: str, suffix: bool | None = None) -> str:
        forms = _NEG_SUFFIX if suffix else _NEG_PREFIX if suffix is False else _NEG_PREFIX + _NEG_SUFFIX
        return rng.choice(forms).format(x=lower_first(x))

    siblings = {c: [s for p in pool[c].parents for s in children[p] if s != c] for c in ids}

    def sibling_of(cid: str) -> str | None:
        return rng.choice(siblings[cid]) if siblings[cid] else None

    def draw(kind: str) -> tuple[str, str, bool, tuple[str, ...]] | None:
        if kind == "synonym" and with_syn:
            c = pool[rng.choice(with_syn)]
            return c.name, rng.choice(c.synonyms), True, (c.id,)
        if kind == "synonym-synonym" and with_two:
            c = pool[rng.choice(with_two)]
            a, b = rng.sample(c.synonyms, 2)
            return a, b, True, (c.id,)
        if kind == "paraphrase" and para:
            cid, text = rng.choice(para)
            return text, paraphrase(text, rng), True, (cid,)
        if kind == "sibling" and sib_groups:
            a, b = rng.sample(rng.choice(sib_groups), 2)
            if rng.random() < 0.5:  # the near miss: the sibling whose name shares most words ("2nd toe" vs "5th toe")
                b = max(siblings[a], key=lambda s: (word_overlap(pool[a].name, pool[s].name), s))
                return pool[a].name, pool[b].name, False, (a, b)
            return form(a), form(b), False, (a, b)
        if kind == "parent-child" and edges:
            a, b = rng.choice(edges)
            return form(a), form(b), False, (a, b)
        if kind == "random":
            a, b = rng.sample(ids, 2)
            return form(a), form(b), False, (a, b)
        if kind == "laterality":
            if sided and rng.random() < 0.3:
                c = pool[rng.choice(sided)]
                return c.name, swap_side(c.name), False, (c.id,)
            if organ:
                c = pool[rng.choice(organ)]
                x = lower_first(c.name)
                side, other = rng.sample(["left", "right"], 2)
                shape = rng.choice(["{s} {x}", "{x}, {s}", "{x} on the {s}", "{s}-sided {x}"])
                return shape.format(s=side, x=x), rng.choice(["{s} {x}", "{x}, {s}"]).format(s=other, x=x), False, \
                    (c.id,)
        if kind == "contrast":
            if real_contrast and rng.random() < 0.6:
                a, b = rng.choice(real_contrast)
                return form(a), form(b), False, (a, b)
            if any_contrast:
                c = pool[rng.choice(any_contrast)]
                return c.name, contrast(c.name), False, (c.id,)
        if kind == "negation" and negatable:
            cid = rng.choice(negatable)
            x = form(cid)
            return rng.choice(_AFFIRMED).format(x=x), negated(x, suffix=False), False, (cid,)
        if kind == "negation-asym" and negatable:
            cid = rng.choice(negatable)
            x = form(cid)
            roll = rng.random()
            if roll < 0.5:  # same concept, negated two different ways: the pair the zero-shot judge gets wrong
                a = negated(x, suffix=False)
                return a, negated(x, suffix=True), True, (cid,)
            if roll < 0.75:  # the suffix negation vs the bare finding: differs by one trailing word
                return negated(x, suffix=True), x, False, (cid,)
            other = sibling_of(cid)
            if other:
                return negated(x), negated(form(other)), False, (cid, other)
        if kind == "verbose":
            cid = rng.choice(ids)
            roll = rng.random()
            if roll < 0.4:  # the right answer inside a sentence, sometimes after some reasoning
                return form(cid), reasoned(rng.choice(carriers).format(x=form(cid))), True, (cid,)
            if roll < 0.6:  # a wrong answer inside a sentence: a sibling where there is one
                other = sibling_of(cid) or rng.choice(ids)
                return form(cid), reasoned(rng.choice(carriers).format(x=form(other))), False, (cid, other)
            if roll < 0.72:  # a hedge that names the right answer among others is not an answer
                y, z = rng.sample(ids, 2)
                names_ = [form(cid), form(y), form(z)]
                rng.shuffle(names_)
                return form(cid), rng.choice(hedges).format(x=names_[0], y=names_[1], z=names_[2]), False, (cid, y, z)
            if roll < 0.86:  # no answer at all
                return form(cid), " ".join(rng.sample(fillers, rng.choice((1, 1, 2)))), False, (cid,)
            # talk about related or other conditions that never names the answer
            others = [sibling_of(cid) or rng.choice(ids), rng.choice(ids)]
            sentences = [rng.choice(topics).format(y=lower_first(form(o))) for o in others[:rng.choice((1, 2))]]
            sentences += rng.sample(leads, rng.choice((0, 1, 2))) + rng.sample(fillers, rng.choice((0, 1)))
            rng.shuffle(sentences)
            return form(cid), " ".join(s_[:1].upper() + s_[1:] for s_ in sentences), False, (cid, *others)
        return None

    def reasoned(answer: str) -> str:
        return " ".join([*rng.sample(leads, rng.choice((1, 2))), answer]) if rng.random() < 0.4 else answer

    carriers, hedges, fillers, leads, topics = (_split_share(p, split)
                                                for p in (_CARRIERS, _HEDGES, _FILLERS, _LEADS, _TOPICS))
    pairs, seen = [], set()
    for kind in PAIR_TYPES:
        made, attempts = 0, 0
        while made < n and attempts < 20 * n:
            attempts += 1
            got = draw(kind)
            if got is None:
                if attempts > 50 and made == 0:
                    break  # this split has no material for this type
                continue
            a, b, label, cids = got
            key = (judge.normalise(a), judge.normalise(b))
            if not key[0] or not key[1] or key[0] == key[1] or key in seen or key[::-1] in seen:
                continue  # identical texts short-circuit in the judge: nothing to learn
            seen.add(key)
            if kind != "verbose" and rng.random() < 0.5:  # a sentence-long answer is the prediction, not the reference
                a, b = b, a
            a, b = recase(a, rng), recase(b, rng)
            pairs.append(Pair(a, b, label, kind, tuple(cids), _source(cids)))
            made += 1
    rng.shuffle(pairs)
    return pairs


def build_pairs(cfg: PairConfig = PairConfig()) -> dict[str, list[Pair]]:
    """Gold pairs per split; every concept (and every concept sharing its text) belongs to exactly one split."""
    pool = concepts()
    split_of = concept_splits(pool, cfg)
    names: dict[str, str] = {}
    for c in pool.values():
        for text in (c.name, *c.synonyms):
            names.setdefault(judge.normalise(text), c.id)
    out = {}
    for i, split in enumerate(SPLITS):
        sub = {cid: c for cid, c in pool.items() if split_of[cid] == split}
        # Parent ids stay as they are (a parent in another split only groups siblings, it never appears as text).
        out[split] = _pairs_for_split(sub, names, cfg.per_type[i], random.Random(f"{cfg.seed}:{split}"), split)
    check_disjoint(out)
    return out


def check_disjoint(splits: dict[str, list[Pair]]) -> None:
    """Raise when a concept appears in more than one split.

    >>> check_disjoint({"train": [Pair("a", "b", False, "random", ("X:1",), "hpo")],
    ...                 "test": [Pair("c", "d", False, "random", ("X:1",), "hpo")]})
    Traceback (most recent call last):
    ...
    ValueError: concepts in more than one split: X:1 (train, test)
    """
    where = defaultdict(set)
    for split, pairs in splits.items():
        for p in pairs:
            for c in p.concepts:
                where[c].add(split)
    bad = sorted(c for c, s in where.items() if len(s) > 1)
    if bad:
        shown = ", ".join(f"{c} ({', '.join(s for s in splits if s in where[c])})" for c in bad[:5])
        raise ValueError(f"concepts in more than one split: {shown}" + (f" and {len(bad) - 5} more" if len(bad) > 5
                                                                          else ""))


def pair_counts(splits: dict[str, list[Pair]]) -> dict:
    """{split: {kind: {"yes": n, "no": n}}} for the record and the notebook's table."""
    out = {}
    for split, pairs in splits.items():
        c = Counter((p.kind, p.label) for p in pairs)
        out[split] = {k: {"yes": c[(k, True)], "no": c[(k, False)]} for k in sorted({p.kind for p in pairs})}
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Scoring with the judge's own prompt and rule, sharing the prompt's common prefix across a batch
# ----------------------------------------------------------------------------------------------------------------------


def yes_no_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The token ids the transformers judge backend pools into P(YES) and P(NO): its scoring rule, not a copy."""
    return judge.TransformersJudge._token_ids(tokenizer)


def answer_ids(tokenizer) -> tuple[int, int]:
    """The training targets: the first casing whose YES and NO forms are both single tokens the backend pools
    (SmolLM2 splits "YES" into "Y"+"ES", so it learns "Yes"/"No").

    >>> from medix_lib import models
    >>> tok = models.load_tokenizer("smollm2-135m-instruct")
    >>> [tok.decode([i]) for i in answer_ids(tok)]
    ['Yes', 'No']
    """
    yes_ids, no_ids = yes_no_ids(tokenizer)
    for yes, no in (("YES", "NO"), ("Yes", "No"), ("yes", "no")):
        y, n = (tokenizer.encode(w, add_special_tokens=False) for w in (yes, no))
        if len(y) == len(n) == 1 and y[0] in yes_ids and n[0] in no_ids:
            return y[0], n[0]
    raise ValueError(f"tokenizer {type(tokenizer).__name__} has no single-token YES/NO pair the judge pools")


def prompt_ids(tokenizer, item: judge.JudgeItem, template: str,
               show_question: bool = False) -> tuple[list[int], list[int]]:
    """(template prefix, item part) token ids exactly as the transformers backend builds them."""
    return judge.encode_prompt(tokenizer, judge.TEMPLATES[template].messages(item, show_question))


def score(model_name: str, items: list[judge.JudgeItem], template: str = judge.REWARD_TEMPLATE,
          batch_size: int = judge.TransformersJudge.BATCH_SIZE,
          progress: bool = False, device: str = "auto") -> list[float]:
    """P(YES) per item from the transformers judge backend (no rules, no cache): what the rewards see.
    ``model_name`` is anything ``models.load_causal_lm`` takes (alias, path, hub id)."""
    backend = judge.TransformersJudge(model_name, batch_size=batch_size, device=device)
    return backend.p_yes([judge.TEMPLATES[template].messages(it, False) for it in items], progress=progress)


# ----------------------------------------------------------------------------------------------------------------------
# Training and the cached artifact
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifierConfig:
    base_model: str = "smollm2-135m-instruct"
    pairs: PairConfig = field(default_factory=PairConfig)
    # One drawn per training batch (a batch shares its prompt's prefix): both judge prompts work.
    templates: tuple[str, ...] = (judge.REWARD_TEMPLATE, judge.EVAL_TEMPLATE)
    time_budget_s: float = 720.0  # wall-clock training budget; training stops at the budget or max_pairs
    max_pairs: int = 12000
    batch_size: int = 8
    learning_rate: float = 1e-4
    vocab_loss_weight: float = 0.1
    balance_classes: bool = True  # weight YES pairs by #NO/#YES so P(YES) = 0.5 stays a sensible default threshold
    # Extra copies of a pair type's training pairs, for the types that are hardest to learn (asymmetric negation;
    # sentence answers; siblings, half of them near misses).
    oversample: tuple[tuple[str, int], ...] = (("negation-asym", 3),)
    warmup_steps: int = 10
    lr_schedule: str = "linear"  # after warm-up: "linear" decay to 0 over max_pairs, or "constant"
    keep_layers: int | None = None  # keep only the bottom N decoder layers of the base (None: all): N/30 the cost
    train_top_layers: int = 30  # decoder layers (from the top of those kept) that are trained; embeddings frozen
    bf16: bool = True  # autocast: faster on CPUs with AVX512-BF16 and on GPUs; weights stay fp32
    val_pairs: int = 400  # validation pairs scored after training (threshold + recorded AUC)
    seed: int = 0
    device: str = "auto"
    # Intra-op CPU threads while training (None: torch's default). On a 2-core machine shared with other model jobs,
    # 1 thread trained 12x faster than 2 (4.5 vs 0.37 pairs/s): OpenMP threads stall each other on busy cores.
    threads: int | None = None

    def key(self) -> str:
        """Cache key over everything that changes the trained weights (not the device or thread count).

        >>> VerifierConfig().key() == VerifierConfig(device="cpu", threads=1).key()
        True
        """
        payload = {k: v for k, v in asdict(self).items() if k not in ("device", "threads")}
        payload["pairs_version"] = PAIRS_VERSION
        payload["prompt_encoding"] = "prefix-split"  # judge.encode_prompt: template prefix and item tokenised apart
        payload["templates_hash"] = [judge.TEMPLATES[t].hash for t in self.templates]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, VerifierConfig] = {
    # The demo's default judge, trained once per machine then a cache hit: the bottom 20 of 30 layers, of which the
    # upper 10 (layers 10-19) are trained. Measured at 3,000 training pairs: training the middle layers of the
    # truncated stack reached validation AUC 0.945 (clinical 0.97) where training the top 10 of all 30 reached 0.72
    # (clinical 0.76), and it judges 1.6x faster. max_pairs bounds the work so the artifact does not depend on machine
    # load; the time budget is a safety cap for very busy machines.
    "smoke": VerifierConfig(pairs=PairConfig(per_type=(1500, 40, 60)), keep_layers=20, train_top_layers=10,
                            max_pairs=12000, batch_size=16, learning_rate=3e-4, time_budget_s=1500.0, val_pairs=440,
                            oversample=(("negation-asym", 2), ("sibling", 2), ("parent-child", 3), ("synonym", 2),
                                        ("synonym-synonym", 2))),
    # Sized for the test suite: a real but short run (~2 min on 2 cores), enough to beat zero-shot by a clear margin
    # (validation AUC 0.81 on its 132 validation pairs; zero-shot 0.60).
    "ci": VerifierConfig(pairs=PairConfig(per_type=(300, 12, 30)), keep_layers=20, train_top_layers=10,
                         time_budget_s=300.0, max_pairs=1600, batch_size=16, learning_rate=3e-4, val_pairs=132,
                         oversample=()),
    # One GPU: a larger base of the same family (same tokenizer and YES/NO tokens), all layers, many more pairs.
    "gpu": VerifierConfig(base_model="HuggingFaceTB/SmolLM2-1.7B-Instruct",
                          pairs=PairConfig(per_type=(6000, 100, 200)), time_budget_s=1800.0, max_pairs=120000,
                          batch_size=32, learning_rate=1e-5, train_top_layers=24, val_pairs=1000),
}


def preset(name: str) -> VerifierConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown verifier preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def verifier_dir(cfg: VerifierConfig) -> Path:
    return models.cache_dir() / "verifier" / cfg.key()


def _auc(labels: list[bool], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else None


def best_threshold(labels: list[bool], scores: list[float]) -> float:
    """The P(YES) cut that maximises balanced accuracy (Youden's J) on these labels.

    >>> best_threshold([False, False, True, True], [0.1, 0.3, 0.6, 0.9])
    0.6
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(labels, scores)
    i = max(range(len(thr)), key=lambda j: (tpr[j] - fpr[j], -abs(thr[j] - 0.5)))
    return float(min(1.0, thr[i]))


def truncate(model, n_layers: int) -> None:
    """Keep the bottom ``n_layers`` decoder layers (and the final norm and tied head): a smaller causal LM that saves
    and loads like any other. Lower and middle layers carry most of what a pair classifier needs; fine-tuning adapts
    the head to the shortened stack."""
    total = len(model.model.layers)
    if not 1 <= n_layers <= total:
        raise ValueError(f"keep_layers={n_layers} must be in 1..{total}")
    model.model.layers = model.model.layers[:n_layers]
    model.config.num_hidden_layers = n_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n_layers]


def length_batches(lengths: list[int], batch_size: int, rng: random.Random, window: int = 64) -> list[list[int]]:
    """Row indices in batches of similar length, in random order: rows are sorted by length within windows of
    ``window`` batches, so a batch pads to its own longest row rather than to the longest of a random draw (a third of
    the tokens of random batches of judge pairs were padding), and the order of batches stays shuffled.

    >>> sorted(length_batches([5, 1, 4, 2, 3, 6], batch_size=2, rng=random.Random(0)))
    [[0, 5], [1, 3], [4, 2]]
    """
    span = batch_size * window
    batches = []
    for start in range(0, len(lengths), span):
        rows = sorted(range(start, min(start + span, len(lengths))), key=lengths.__getitem__)
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    rng.shuffle(batches)
    return batches


def train(cfg: VerifierConfig, out_dir: Path, progress: bool = True) -> dict:
    """Fine-tune ``cfg.base_model`` as a YES/NO verifier and save a full checkpoint to ``out_dir``; returns the record.

    Loss on the answer token only, after the judge's exact prompt (completion-only: nothing is spent learning to
    reproduce prompts): cross-entropy of YES vs NO as the backend pools them, plus ``vocab_loss_weight`` times the
    full-vocabulary cross-entropy of the "Yes"/"No" token. The trained model is scored by the unchanged backend.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or threads)
    try:
        return _train(cfg, out_dir, progress)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: VerifierConfig, out_dir: Path, progress: bool) -> dict:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    if cfg.lr_schedule not in ("linear", "constant"):
        raise ValueError(f"lr_schedule={cfg.lr_schedule!r}; valid: linear, constant")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    t_pairs = time.perf_counter()
    splits = build_pairs(cfg.pairs)
    pairs_s = time.perf_counter() - t_pairs
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = models.load_tokenizer(cfg.base_model)
    model = AutoModelForCausalLM.from_pretrained(models.resolve_path(cfg.base_model), dtype=torch.float32).to(device)
    if cfg.keep_layers is not None:
        truncate(model, cfg.keep_layers)
    layers = model.model.layers
    if not 1 <= cfg.train_top_layers <= len(layers):
        raise ValueError(f"train_top_layers={cfg.train_top_layers} must be in 1..{len(layers)} for {cfg.base_model}")
    for p in model.parameters():
        p.requires_grad_(False)
    for module in [*layers[len(layers) - cfg.train_top_layers:], model.model.norm]:
        for p in module.parameters():
            p.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=0.01)
    yes_id, no_id = answer_ids(tokenizer)
    yes_ids, no_ids = yes_no_ids(tokenizer)

    copies = dict(cfg.oversample)
    unknown = set(copies) - set(PAIR_TYPES)
    if unknown:
        raise ValueError(f"oversample names unknown pair types {sorted(unknown)}; valid: {', '.join(PAIR_TYPES)}")
    train_pairs = [p for p in splits["train"] for _ in range(copies.get(p.kind, 1))]
    rng.shuffle(train_pairs)
    train_pairs = (train_pairs * math.ceil(cfg.max_pairs / max(1, len(train_pairs))))[:cfg.max_pairs]
    n_yes = sum(p.label for p in train_pairs)
    pos_weight = torch.tensor((len(train_pairs) - n_yes) / max(1, n_yes) if cfg.balance_classes else 1.0,
                              device=device)
    lengths = [len(ids) for ids in tokenizer([f"{p.reference} {p.prediction}" for p in train_pairs],
                                              add_special_tokens=False)["input_ids"]]
    batches = length_batches(lengths, cfg.batch_size, rng)
    steps = len(batches)
    decay = (lambda s: max(0.0, 1 - s / steps)) if cfg.lr_schedule == "linear" else (lambda s: 1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * decay(s))
    model.train()
    start, cpu_start, seen, losses = time.perf_counter(), time.process_time(), 0, []
    bar = tqdm(total=len(train_pairs), desc="train verifier", unit="pair", disable=not progress)
    for rows in batches:
        if time.perf_counter() - start > cfg.time_budget_s:
            break
        batch = [train_pairs[i] for i in rows]
        template = rng.choice(cfg.templates)
        seqs = [prompt_ids(tokenizer, p.item(), template) for p in batch]
        prefix = seqs[0][0]  # one template per batch: the same prefix for every pair
        target = torch.tensor([yes_id if p.label else no_id for p in batch], device=device)
        label = torch.tensor([float(p.label) for p in batch], device=device)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.bf16):
            # the prefix runs through the layers being trained, so it is recomputed (with gradients) every batch
            logits = judge.next_token_logits(model, [tail for _, tail in seqs], len(prefix),
                                             judge.prefix_cache(model, prefix), tokenizer.pad_token_id or 0).float()
        # The judge reads only the YES-vs-NO margin, so that is the main loss (cross-entropy over the answer
        # tokens); a little full-vocabulary cross-entropy keeps "Yes"/"No" the generated reply for text backends.
        margin = torch.logsumexp(logits[:, yes_ids], -1) - torch.logsumexp(logits[:, no_ids], -1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(margin, label, pos_weight=pos_weight) \
            + cfg.vocab_loss_weight * torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(batch)
        losses.append(loss.item())
        bar.update(len(batch))
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    bar.close()
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()

    partial = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    del model
    val = splits["validation"][:cfg.val_pairs]
    t_val = time.perf_counter()
    val_scores = score(str(partial), [p.item() for p in val], progress=progress, device=device)
    val_s = time.perf_counter() - t_val
    labels = [p.label for p in val]
    record = {
        "key": cfg.key(), "config": asdict(cfg), "pairs_version": PAIRS_VERSION,
        "pair_counts": pair_counts(splits), "pairs_built_seconds": round(pairs_s, 2),
        "train_pairs_seen": seen, "train_pairs_available": len(splits["train"]), "steps": len(losses),
        "train_seconds": round(train_s, 1), "train_cpu_seconds": round(train_cpu_s, 1),
        "stopped_by": "time budget" if seen < len(train_pairs) else "max_pairs",
        "loss_first20": sum(losses[:20]) / max(1, len(losses[:20])),
        "loss_last20": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "validation": {"n": len(val), "auc": _auc(labels, val_scores), "threshold": best_threshold(labels, val_scores),
                       "pairs_per_second": round(len(val) / val_s, 1)},
        "cpu_count": os.cpu_count(), "device": device, "torch_threads": torch.get_num_threads(),
    }
    (partial / "verifier.json").write_text(json.dumps(record, indent=2))
    return {"record": record, "partial": partial}


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive file lock: concurrent demo/test processes train a given verifier once, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(cfg: VerifierConfig | str = "smoke", progress: bool = True) -> Path:
    """The trained verifier's checkpoint directory for ``cfg`` (a config or a preset name): trained on first use,
    a cache hit afterwards. The directory is a plain causal-LM checkpoint plus ``verifier.json``."""
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    target = verifier_dir(cfg)
    if (target / "verifier.json").exists():
        return target
    with _lock(target.with_name(target.name + ".lock")):
        if (target / "verifier.json").exists():
            return target  # another process trained it while we waited
        result = train(cfg, target, progress=progress)
        result["partial"].rename(target)  # atomic: a crash mid-save never leaves a half checkpoint behind
    return target


def record(cfg: VerifierConfig | str = "smoke") -> dict:
    """The JSON record of a trained verifier (counts, config, validation AUC/threshold, training seconds)."""
    path = ensure(cfg) / "verifier.json"
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------------------------------
# Meta-evaluation
# ----------------------------------------------------------------------------------------------------------------------


def _type_auc(pairs: list[Pair], scores: list[float], kind: str) -> float | None:
    """AUC of one pair type: within the type when it has both labels; else its pairs against all pairs of the other
    label (a NO-only type like ``sibling`` is ranked against every YES pair, and vice versa)."""
    mine = [i for i, p in enumerate(pairs) if p.kind == kind]
    labels = {pairs[i].label for i in mine}
    if not mine:
        return None
    if len(labels) == 1:
        (label,) = labels
        mine += [i for i, p in enumerate(pairs) if p.label != label]
    return _auc([pairs[i].label for i in mine], [scores[i] for i in mine])


def reliability(labels: list[bool], scores: list[float], bins: int = 10) -> dict:
    """Reliability-diagram data and expected calibration error over equal-width P(YES) bins.

    >>> r = reliability([True, False], [0.95, 0.05], bins=2)
    >>> r["ece"], r["count"]
    (0.05, [1, 1])
    """
    edges = [i / bins for i in range(bins + 1)]
    conf, freq, count = [], [], []
    for lo, hi in zip(edges, edges[1:]):
        idx = [i for i, s in enumerate(scores) if lo <= s < hi or (hi == 1.0 and s == 1.0)]
        count.append(len(idx))
        conf.append(sum(scores[i] for i in idx) / len(idx) if idx else None)
        freq.append(sum(labels[i] for i in idx) / len(idx) if idx else None)
    ece = sum(n * abs(c - f) for n, c, f in zip(count, conf, freq) if n) / max(1, len(scores))
    return {"edges": edges, "confidence": conf, "frequency": freq, "count": count, "ece": round(ece, 4)}


def judging_speed(model_name: str, items: list[judge.JudgeItem],
                  batch_size: int = judge.TransformersJudge.BATCH_SIZE) -> dict:
    """Pairs/s of the transformers judge backend as the accuracy reward calls it, on distinct pairs: no two share a
    reference, the least favourable case for its prefix cache. Steady state, as in training where the judge is
    called every step: the model is loaded and one batch judged before the clock starts (loading is not judging,
    and the first bf16 call on a CPU pays for oneDNN's kernel selection: 53 vs 60 pairs/s measured)."""
    import torch

    models.load_causal_lm(model_name, "auto")
    score(model_name, items[:batch_size], batch_size=batch_size)
    t = time.perf_counter()
    score(model_name, items, batch_size=batch_size)
    seconds = time.perf_counter() - t
    return {"n": len(items), "batch_size": batch_size, "pairs_per_s": round(len(items) / seconds, 2),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def meta_evaluation(cfg: VerifierConfig | str = "smoke", zero_shot: str | None = "smollm2-135m-instruct",
                    embedder: str | None = "minilm-l6-v2", template: str = judge.REWARD_TEMPLATE,
                    max_test: int | None = None,
                    speed_pairs: int = 256, progress: bool = True) -> dict:
    """Score held-out concept-disjoint test pairs (and the hand-written clinical pairs) with the trained verifier, the
    zero-shot LLM judge and embedding cosine; thresholds are chosen on the validation split, never on test.

    Returns {"methods": {name: {"auc", "per_type_auc", "clinical_auc", "threshold", "test_accuracy",
    "test_balanced_accuracy", "reliability", "roc"}}, "pair_counts", "record", "speed", "targets"}: everything the
    notebook's table, :func:`medix_lib.plotting.verifier_roc` and friends need.
    """
    from sklearn.metrics import balanced_accuracy_score, roc_curve

    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    path = ensure(cfg, progress=progress)
    rec = json.loads((path / "verifier.json").read_text())
    splits = build_pairs(cfg.pairs)
    test = splits["test"][:max_test] if max_test else splits["test"]
    val = splits["validation"][:cfg.val_pairs]
    clinical = clinical_pairs()
    sets = {"test": test, "validation": val, "clinical": clinical}

    scorers = {"trained verifier": lambda items: score(str(path), items, template, progress=progress)}
    if zero_shot:
        scorers[f"zero-shot {zero_shot}"] = lambda items: score(zero_shot, items, template, progress=progress)
    if embedder:
        def cosine(items):
            enc = models.load_embedder(embedder)
            a = enc.encode([it.reference for it in items], normalize_embeddings=True)
            b = enc.encode([it.prediction for it in items], normalize_embeddings=True)
            return [float(x) for x in (a * b).sum(axis=1)]
        scorers[f"cosine {embedder}"] = cosine

    methods = {}
    for name, fn in scorers.items():
        s = {k: fn([p.item() for p in v]) for k, v in sets.items()}
        labels = {k: [p.label for p in v] for k, v in sets.items()}
        thr = best_threshold(labels["validation"], s["validation"])
        fpr, tpr, _ = roc_curve(labels["test"], s["test"])
        methods[name] = {
            "auc": _auc(labels["test"], s["test"]),
            "per_type_auc": {k: _type_auc(test, s["test"], k) for k in PAIR_TYPES},
            "clinical_auc": _auc(labels["clinical"], s["clinical"]),
            "validation_auc": _auc(labels["validation"], s["validation"]),
            "threshold": thr,
            "test_accuracy": sum((x >= thr) == y for x, y in zip(s["test"], labels["test"])) / len(test),
            "test_balanced_accuracy": float(balanced_accuracy_score(labels["test"], [x >= thr for x in s["test"]])),
            "reliability": reliability(labels["test"], s["test"]) if not name.startswith("cosine") else None,
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
            "scores": {k: v for k, v in s.items()},
        }
    speed_items = [p.item() for p in splits["test"][:speed_pairs]]
    speed = judging_speed(str(path), speed_items) if speed_pairs else None
    v = methods["trained verifier"]
    targets = {
        "held-out AUC >= 0.95": v["auc"] is not None and v["auc"] >= 0.95,
        "each pair type AUC >= 0.85": all(a is not None and a >= 0.85 for a in v["per_type_auc"].values()),
        "training <= 15 min on the machine (wall)": rec["train_seconds"] <= 900,
        "judging >= 50 pairs/s": bool(speed) and speed["pairs_per_s"] >= 50,
    }
    return {"methods": methods, "pair_counts": pair_counts({"test": test, "validation": val, "clinical": clinical}),
            "record": rec, "speed": speed, "targets": targets, "template": template,
            "labels": {k: [p.label for p in v_] for k, v_ in sets.items()},
            "kinds": {k: [p.kind for p in v_] for k, v_ in sets.items()}}


def summary_table(result: dict):
    """One row per method: overall/clinical AUC, per-type AUC, validated threshold and test accuracy (a DataFrame)."""
    import pandas as pd

    rows = []
    for name, m in result["methods"].items():
        row = {"method": name, "test AUC": m["auc"], "clinical AUC": m["clinical_auc"], "threshold": m["threshold"],
               "test balanced acc": m["test_balanced_accuracy"]}
        row.update({f"AUC {k}": a for k, a in m["per_type_auc"].items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("method").round(3)


def clear_cache(cfg: VerifierConfig | str) -> None:
    """Delete one cached verifier (to retrain it)."""
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    shutil.rmtree(verifier_dir(cfg), ignore_errors=True)


__all__ = ["Pair", "PairConfig", "VerifierConfig", "PRESETS", "preset", "build_pairs", "check_disjoint",
           "pair_counts", "clinical_pairs", "concepts", "concept_splits", "score", "train", "ensure", "record",
           "meta_evaluation", "summary_table", "reliability", "best_threshold", "judging_speed", "clear_cache"]
