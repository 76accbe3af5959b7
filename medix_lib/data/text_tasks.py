"""Open-ended text questions from the ontologies: one generator per question family, each yielding
:class:`~medix_lib.data.schema.Candidate` rows grouped by concept (an HPO term, an ICD-10 block, a disease, a drug)."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from medix_lib.data.ontologies import (DiseaseAnnotation, IcdCode, drug_dictionary, icd_block_of, phenotypic_terms,
                                       read_hpo, read_hpo_annotations, read_icd10)
from medix_lib.data.schema import Candidate
from medix_lib.text import lower_first, normalise

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


def _first_sentences(text: str, max_chars: int = 300) -> str:
    """Trim long source text at a sentence boundary so references stay answer-sized."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    stop = cut.rfind(". ")
    return cut[: stop + 1] if stop > 60 else cut.rsplit(" ", 1)[0] + "..."


def _gen_hpo(rng: random.Random) -> dict[str, Iterator[Candidate]]:
    terms = phenotypic_terms()
    order = list(terms)
    rng.shuffle(order)

    def definition():
        for tid in order:
            t = terms[tid]
            if t.definition:
                q = rng.choice(_TEMPLATES["hpo_definition"]).format(name=lower_first(t.name))
                yield Candidate("hpo_definition", "hpo", tid, q, _first_sentences(t.definition))

    def from_definition():
        for tid in reversed(order):
            t = terms[tid]
            if t.definition and len(t.definition) <= 300 and t.name.lower() not in t.definition.lower():
                q = rng.choice(_TEMPLATES["hpo_from_definition"]).format(definition=t.definition)
                yield Candidate("hpo_from_definition", "hpo", tid, q, t.name)

    def lay_term():
        for tid in order:
            t = terms[tid]
            lays = [s.text for s in t.synonyms if s.kind == "layperson" and s.scope == "EXACT"
                    and normalise(s.text) != normalise(t.name)]
            if lays:
                q = rng.choice(_TEMPLATES["hpo_lay_term"]).format(lay=rng.choice(lays))
                yield Candidate("hpo_lay_term", "hpo", tid, q, t.name)

    def synonym():
        for tid in order[len(order) // 2:] + order[: len(order) // 2]:
            t = terms[tid]
            syns = [s.text for s in t.synonyms if s.scope == "EXACT" and s.kind is None
                    and normalise(s.text) != normalise(t.name)]
            if syns:
                q = rng.choice(_TEMPLATES["hpo_synonym"]).format(synonym=rng.choice(syns))
                yield Candidate("hpo_synonym", "hpo", tid, q, t.name)

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


def _gen_hpo_annotations(rng: random.Random) -> dict[str, Iterator[Candidate]]:
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
            answer = ", ".join(lower_first(names[a.hpo_id]) for a in pos[:5])
            yield Candidate("disease_phenotypes", "hpo_annotations", did, q, answer[0].upper() + answer[1:])

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
                disease=a.disease_name, phenotype=lower_first(names[a.hpo_id]))
            yield Candidate("disease_phenotype_yes_no", "hpo_annotations", did, q, "yes" if want_yes else "no",
                             task_type="yes_no", choices=["yes", "no"])

    return {"disease_phenotypes": phenotypes(), "disease_phenotype_yes_no": yes_no()}


def _alternate(yes_items: list, no_items: list) -> Iterator[tuple[bool, Any]]:
    used = set()
    for a, b in zip(yes_items, no_items):
        for flag, item in ((True, a), (False, b)):
            if (flag, item) not in used:
                used.add((flag, item))
                yield flag, item


def _gen_icd10(rng: random.Random) -> dict[str, Iterator[Candidate]]:
    codes = [c for c in read_icd10() if c.kind in ("category", "subcategory")]
    by_code = {c.code: c for c in read_icd10()}
    rng.shuffle(codes)

    def group_of(c: IcdCode) -> str:
        # The whole block is one concept: a block question quotes a category's description, which another row of
        # the same block has as its answer.
        return "icd:" + icd_block_of(c.code)

    def code_to_desc():
        for c in codes:
            q = rng.choice(_TEMPLATES["icd_code_to_description"]).format(code=c.code)
            yield Candidate("icd_code_to_description", "icd10", group_of(c), q, c.description)

    def desc_to_code():
        for c in reversed(codes):
            if "," in c.description and "unspecified" in c.description.lower():
                continue  # "X, unspecified" descriptions are ambiguous without their parent
            q = rng.choice(_TEMPLATES["icd_description_to_code"]).format(description=lower_first(c.description))
            yield Candidate("icd_description_to_code", "icd10", group_of(c), q, c.code)

    def block():
        for c in codes[len(codes) // 2:]:
            if c.kind != "category" or c.parent is None or c.parent not in by_code:
                continue
            q = rng.choice(_TEMPLATES["icd_block"]).format(description=lower_first(c.description))
            parent = by_code[c.parent]
            yield Candidate("icd_block", "icd10", group_of(c), q, f"{parent.description} ({parent.code})")

    return {"icd_code_to_description": code_to_desc(), "icd_description_to_code": desc_to_code(),
            "icd_block": block()}


def _gen_disease_correlations(rng: random.Random) -> dict[str, Iterator[Candidate]]:
    from faker_healthcare.disease_correlations import DISEASE_CORRELATIONS

    diseases = sorted(DISEASE_CORRELATIONS)
    rng.shuffle(diseases)

    def group(d: str) -> str:
        code = DISEASE_CORRELATIONS[d].get("icd10", "")
        return "icd:" + icd_block_of(code) if code else "disease:" + d

    def family(name: str, key: str, fmt: Callable[[Any], str]):
        def gen():
            for d in diseases:
                value = DISEASE_CORRELATIONS[d].get(key)
                if value:
                    q = rng.choice(_TEMPLATES[name]).format(disease=d)
                    yield Candidate(name, "disease_correlations", group(d), q, fmt(value))
        return gen()

    def listing(values: list[str]) -> str:
        return ", ".join(values)

    return {"disease_symptoms": family("disease_symptoms", "symptoms", listing),
            "disease_medications": family("disease_medications", "medications", listing),
            "disease_specialty": family("disease_specialty", "medical_specialty", str)}


def _gen_drugs(rng: random.Random) -> dict[str, Iterator[Candidate]]:
    d = drug_dictionary()
    variant_data, to_canonical, canonical = (d["drug_variant_to_variant_data"], d["drug_variant_to_canonical"],
                                             d["drug_canonical_to_data"])
    brands = sorted(v for v, info in variant_data.items()
                    if info.get("is_brand") and len(to_canonical.get(v, [])) == 1 and v.isalpha() and len(v) > 3)
    rng.shuffle(brands)

    def gen():
        for brand in brands:
            generic = to_canonical[brand][0]
            if normalise(generic) == normalise(brand) or generic not in canonical:
                continue
            q = rng.choice(_TEMPLATES["drug_brand_generic"]).format(brand=brand.title())
            yield Candidate("drug_brand_generic", "drugs", "drug:" + generic, q, canonical[generic]["name"].lower())

    return {"drug_brand_generic": gen()}


TEXT_SOURCES: dict[str, Callable[[random.Random], dict[str, Iterator[Candidate]]]] = {
    "hpo": _gen_hpo,
    "hpo_annotations": _gen_hpo_annotations,
    "icd10": _gen_icd10,
    "disease_correlations": _gen_disease_correlations,
    "drugs": _gen_drugs,
}
