"""Reference-based evaluation with an LLM judge, under the paper's protocol, over the benchmark registry.

- :mod:`~medix_lib.evaluation.protocol`: prompts (no system prompt, options for MCQ-origin items), the final answer
  the judge sees, the restated-prompt rule;
- :mod:`~medix_lib.evaluation.store`: the results store (SQLite, a row per model, task and item, resumable);
- :mod:`~medix_lib.evaluation.runner`: generation and judging into the store;
- :mod:`~medix_lib.evaluation.image_control`: image tasks asked again with the picture replaced (blank or another
  source's), stored under their own key;
- :mod:`~medix_lib.evaluation.report`: per-task and macro results with bootstrap intervals, recomputed from the store,
  accuracy by question type (open, closed, report), by modality and by question family, accuracy with and without
  the picture, every stored response exported as JSON lines and in the MediX-R1 release's results layout;
- :mod:`~medix_lib.evaluation.training_reward`: notebook 03's reward and its components on the stored responses,
  paired between candidates (modality accuracy on image rows);
- :mod:`~medix_lib.evaluation.gallery`: a few held-out rows in full, each candidate's answer with its verdict and
  reward components;
- :mod:`~medix_lib.evaluation.stats`: bootstrap, paired bootstrap, exact match, token F1, chosen option.
"""

from medix_lib.evaluation.gallery import gallery, gallery_html
from medix_lib.evaluation.image_control import IMAGE_CONTROLS, control_task, controlled_rows
from medix_lib.evaluation.protocol import final_answer, prompt_messages, restates_prompt
from medix_lib.evaluation.report import (breakdown_table, export_responses, export_submissions, reliance_table, report,
                                        table, task_prompt_hash)
from medix_lib.evaluation.runner import Candidate, Protocol, evaluate, judge_key
from medix_lib.evaluation.stats import (bootstrap_ci, bootstrap_difference, chosen_option, exact_match,
                                       paired_bootstrap, token_f1)
from medix_lib.evaluation.store import ResultsStore, StoreError
from medix_lib.evaluation.training_reward import reward_report, reward_scores, reward_table

__all__ = ["IMAGE_CONTROLS", "Candidate", "Protocol", "ResultsStore", "StoreError", "bootstrap_ci",
           "bootstrap_difference", "breakdown_table", "chosen_option", "control_task", "controlled_rows", "evaluate",
           "exact_match", "export_responses", "export_submissions", "final_answer", "gallery", "gallery_html",
           "judge_key", "paired_bootstrap", "prompt_messages", "reliance_table", "report", "restates_prompt",
           "reward_report", "reward_scores", "reward_table", "table", "task_prompt_hash", "token_f1"]
