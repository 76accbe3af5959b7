"""Terminology rules: answers that are whole names of one concept in a curated vocabulary are decided by lookup.

A reference and a prediction that are both names of the same concept (HPO: a term's name and its exact synonyms,
layperson words, abbreviations and UK spellings among them; the drug dictionary: a drug's generic name, its brand
names and international variants) are equivalent: YES, without asking a model. Two drugs with different DrugBank
ids are different answers: NO. Nothing else is decided here: two different HPO terms may still be near-equivalents a
grader would accept, and a text that names no single concept (a sentence, a hedge, an ambiguous abbreviation) goes to
the model. A 135M verifier cannot know that "Losec" is omeprazole or that "COPD" is chronic obstructive pulmonary
disease; the vocabularies do.
"""

from __future__ import annotations

import functools
import re

from medix_lib.text import normalise

SAME_CONCEPT, DIFFERENT_DRUGS = "same_concept", "different_drugs"
_CLEAN_NAME = re.compile(r"[^\W_][\w' -]*")
# Drug codes and acronyms ("5-FU", "ACTH") stay lookups for YES, never grounds for NO: short names collide
_MIN_DRUG_NO_CHARS = 5


@functools.lru_cache(maxsize=1)
def term_index() -> dict[str, frozenset[str]]:
    """Normalised name -> the concept ids it names: ``HP:...`` for HPO terms; for drugs ``DRUGBANK:<id>``, or
    ``DRUG:<generic name>`` for the dictionary's entries without a DrugBank id (its NHS-sourced ones, which can repeat
    a drug under a second name: "glyceryl trinitrate" beside nitroglycerin, DB00727).

    Built once per process from the installed wheels: about 4 s on 2 cores, most of it unpickling the drug
    dictionary; 112k names.
    """
    from medix_lib.data.ontologies import drug_dictionary, read_hpo

    index: dict[str, set[str]] = {}
    for term in read_hpo():
        exact = [s.text for s in term.synonyms if s.scope == "EXACT" and s.kind != "obsolete_synonym"]
        for name in (term.name, *exact):
            index.setdefault(normalise(name), set()).add(term.id)
    drugs = drug_dictionary()
    drug_data = drugs["drug_canonical_to_data"]
    for variant, canonical in drugs["drug_variant_to_canonical"].items():
        if not _CLEAN_NAME.fullmatch(variant):
            continue  # the dictionary carries scraped fragments ("alcohol," -> benzyl alcohol, "[he]" -> helium)
        ids = index.setdefault(normalise(variant), set())
        for generic in canonical:
            bank_id = drug_data.get(generic, {}).get("drugbank_id")
            ids.add(f"DRUGBANK:{bank_id}" if bank_id else f"DRUG:{normalise(generic)}")
    index.pop("", None)
    return {name: frozenset(ids) for name, ids in index.items()}


def terminology_rule(reference: str, prediction: str) -> str | None:
    """``same_concept`` (YES), ``different_drugs`` (NO) or None (for the model), for two *normalised* answers.

    Each text must name exactly one concept: an abbreviation that HPO gives to two terms decides nothing.

    >>> terminology_rule(normalise("Losec"), normalise("omeprazole")), terminology_rule("losec", "lasix")
    ('same_concept', 'different_drugs')
    >>> terminology_rule("heart attack", "myocardial infarction"), terminology_rule("tachycardia", "bradycardia")
    ('same_concept', None)
    """
    index = term_index()
    ref, pred = index.get(reference), index.get(prediction)
    if not ref or not pred or len(ref) != 1 or len(pred) != 1:
        return None
    if ref == pred:
        return SAME_CONCEPT
    # only drugs both identified by DrugBank are known to differ
    if all(i.startswith("DRUGBANK:") for i in ref | pred) \
            and min(len(reference), len(prediction)) >= _MIN_DRUG_NO_CHARS:
        return DIFFERENT_DRUGS
    return None
