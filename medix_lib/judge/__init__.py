"""The LLM judge: is a predicted answer equivalent to the reference? Strictly YES or NO.

Used by the accuracy reward (RL) and by the evaluator. A verdict carries P(YES) where the backend can give it, the
judge model, the prompt hash and the backend, and an ``error`` instead of a silent NO when anything failed.

One call of :class:`Judge` does, in order: rule decisions without a model (normalised exact match -> YES; empty
prediction, a prediction that addresses the judge or one without content (:mod:`~medix_lib.judge.content`) -> NO;
two names of one HPO term or drug -> YES, two different drugs -> NO, :mod:`~medix_lib.judge.terms`), deduplication
of identical (question, reference, normalised prediction) items, lookups in a persistent SQLite cache, then one
model call per remaining unique item through a backend (``JUDGE_BACKENDS``): ``transformers``
(:mod:`~medix_lib.judge.local`: a local causal LM, P(YES) from next-token logits) or ``openai``
(:mod:`~medix_lib.judge.http`: any OpenAI-compatible server, async, bounded concurrency, timeouts, retries).
Failures are never cached, so a rerun retries exactly them. A verifier trained on a prompt of its own
(CompassVerifier: ``judge_model: compassverifier-3b``) is asked with it through either backend and replies A/B/C
(:mod:`~medix_lib.judge.letters`): A is YES, B and C are NO, and C (invalid) is counted apart.
"""

from medix_lib.judge.cache import VerdictCache, machine_cache_path
from medix_lib.judge.core import (DEFAULT_BACKEND, DEFAULT_MODEL, JUDGE_BACKENDS, YES_RULES, Judge, JudgeStats,
                                  backend_options, judge_file, judge_settings, make_backend, rule_decision,
                                  screen_prediction)
from medix_lib.judge.http import CONSTRAIN_MODES, OpenAIJudge, run_sync
from medix_lib.judge.letters import LetterScore, parse_letter
from medix_lib.judge.local import TransformersJudge, encode_prompt, next_token_logits, prefix_cache, yes_no_token_ids
from medix_lib.judge.meta import meta_evaluate
from medix_lib.judge.protocol import (EVAL_QUESTION_TEMPLATE, EVAL_TEMPLATE, REWARD_TEMPLATE, RUBRIC_TEMPLATE,
                                      TEMPLATES, JudgeConfigError, JudgeItem, PromptTemplate, Score, Verdict,
                                      looks_like_injection, parse_grade, parse_reply, quote)

__all__ = ["CONSTRAIN_MODES", "DEFAULT_BACKEND", "DEFAULT_MODEL", "EVAL_QUESTION_TEMPLATE", "EVAL_TEMPLATE",
           "JUDGE_BACKENDS", "REWARD_TEMPLATE", "RUBRIC_TEMPLATE", "TEMPLATES", "Judge", "JudgeConfigError",
           "JudgeItem", "JudgeStats", "LetterScore", "OpenAIJudge", "PromptTemplate", "Score", "TransformersJudge",
           "Verdict", "VerdictCache", "backend_options", "encode_prompt", "judge_file", "judge_settings",
           "looks_like_injection", "machine_cache_path", "make_backend", "meta_evaluate", "next_token_logits",
           "parse_grade", "parse_letter", "parse_reply", "prefix_cache", "quote", "rule_decision", "run_sync",
           "screen_prediction", "YES_RULES", "yes_no_token_ids"]
