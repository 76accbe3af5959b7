"""MediX-R1's composite reward as TRL reward functions: ``fn(completions, **columns) -> list[float | None]``.

- :mod:`~medix_lib.rewards.rules`: comparisons that need no model (closed forms, sides, numbers, negation);
- :mod:`~medix_lib.rewards.guards`: refusals of answers that game the judge, ``check_answer``, and the release's
  answer rules (``answer_rules: release``);
- :mod:`~medix_lib.rewards.components`: the four components, the composite, threshold calibration;
- :mod:`~medix_lib.rewards.registry`: names -> reward functions built from a stage's settings;
- :mod:`~medix_lib.rewards.probes`: reward-hacking probes with the most each component may pay.
"""

from medix_lib.rewards.components import (COMPONENTS, DEFAULT_EMBEDDER, MEDIX_WEIGHTS, AccuracyReward, Calibration,
                                          CompositeReward, FormatReward, ModalityReward, SemanticReward,
                                          calibrate_threshold, score_components)
from medix_lib.rewards.guards import (ANSWER_RULES, GUARD_NAMES, GUARDS, MAX_ANSWER_WORDS, AnswerCheck, check_answer,
                                      check_release, explain, release_answer, screen)
from medix_lib.rewards.registry import REWARDS, build, make, score_file, weight
from medix_lib.rewards.rules import closed_form, laterality, negated, numbers, rule_verdict

__all__ = ["ANSWER_RULES", "COMPONENTS", "DEFAULT_EMBEDDER", "GUARDS", "GUARD_NAMES", "MAX_ANSWER_WORDS",
           "MEDIX_WEIGHTS", "REWARDS", "AccuracyReward", "AnswerCheck", "Calibration", "CompositeReward",
           "FormatReward", "ModalityReward", "SemanticReward", "build", "calibrate_threshold", "check_answer",
           "check_release", "closed_form", "explain", "laterality", "make", "negated", "numbers", "release_answer",
           "rule_verdict", "score_components", "score_file", "screen", "weight"]
