"""The offline judge: answer verifiers (SmolLM2-135M and Gemma-3-270M) fine-tuned to say YES/NO on gold answer pairs
built from HPO and ICD-10, their YES-NO margins averaged.

Why it exists: as a zero-shot YES/NO judge the 135M model is near chance on the near-misses that matter clinically
(siblings, parent/child, laterality, negation; AUC ~0.56) and MiniLM cosine only separates random pairs (~0.53), so an
offline accuracy reward built on either is noise. Fine-tuned on concept-disjoint ontology pairs with exactly the
judge's prompt and scoring rule, the same model becomes a usable offline judge; two bases err apart, so the shipped
judge averages both: ``Judge(model="medix-verifier")``, the default.

- :mod:`~medix_lib.verifier.concepts`: ontology concepts and their surface forms;
- :mod:`~medix_lib.verifier.pairs`: gold pairs, split by concept (``build_pairs``);
- :mod:`~medix_lib.verifier.trainer`: training, written as the shipped artifact (``train-verifier``);
- :mod:`~medix_lib.verifier.ensemble`: the judge's record, members and threshold (``combine-verifiers``);
- :mod:`~medix_lib.verifier.evaluate`: ROC / per-type AUC / calibration against the zero-shot judge and cosine
  (``evaluate-verifier``).
"""

from medix_lib.verifier.concepts import Concept, concepts, contrast, paraphrase, recase, swap_side
from medix_lib.verifier.evaluate import (TERMINOLOGY_METHOD, YES_RATES, heldout_pairs, judging_speed, meta_evaluation,
                                         reliability, report, summary_table, with_terminology)
from medix_lib.verifier.pairs import (MIXED_TYPES, NO_TYPES, PAIR_TYPES, PAIRS_VERSION, SPLITS, YES_TYPES, Pair,
                                      PairConfig, build_pairs, check_disjoint, clinical_pairs, concept_splits,
                                      pair_counts, word_overlap)
from medix_lib.verifier.trainer import (ARTIFACT, JUDGE, PRESET_ARTIFACTS, PRESETS, VerifierConfig, answer_ids,
                                      best_threshold, delta_tensors, length_batches, preset, prompt_ids, score, train)
from medix_lib.verifier.ensemble import combine

__all__ = ["ARTIFACT", "JUDGE", "MIXED_TYPES", "NO_TYPES", "PAIRS_VERSION", "PAIR_TYPES", "PRESETS", "PRESET_ARTIFACTS",
           "SPLITS",
           "TERMINOLOGY_METHOD", "YES_RATES", "YES_TYPES",
           "Concept", "Pair", "PairConfig", "VerifierConfig", "answer_ids",
           "best_threshold", "build_pairs", "combine", "check_disjoint", "clinical_pairs", "concept_splits", "concepts",
           "contrast", "delta_tensors", "heldout_pairs", "judging_speed", "length_batches", "meta_evaluation",
           "pair_counts", "paraphrase", "preset", "prompt_ids", "recase", "reliability", "report", "score",
           "summary_table", "swap_side", "train", "with_terminology", "word_overlap"]
