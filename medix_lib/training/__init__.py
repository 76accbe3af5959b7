"""Group-relative RL (GRPO / DAPO / Dr.GRPO / GSPO) of the policy on the composite reward, with TRL.

- :mod:`~medix_lib.training.loading`: the policy with its LoRA adapter (Unsloth 4-bit on a GPU, PEFT elsewhere);
- :mod:`~medix_lib.training.rows`: RL, warm-up and held-out check rows; batches of one kind (image or text);
- :mod:`~medix_lib.training.warmup`: the format warm-up, stopped when the policy writes the contract;
- :mod:`~medix_lib.training.grpo`: TRL's GRPOTrainer with group filtering and a time split per step;
- :mod:`~medix_lib.training.run`: one run, with checkpoints, resume and model cards;
- :mod:`~medix_lib.training.logs`: a run's logs as tables (what moved per step, what the policy wrote).
"""

from medix_lib.training.logs import rollout_group, step_table
from medix_lib.training.run import ResumeError, config_hash, learning_effect, train

__all__ = ["ResumeError", "config_hash", "learning_effect", "rollout_group", "step_table", "train"]
