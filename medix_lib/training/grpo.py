"""TRL's GRPOTrainer with what the MediX-R1 recipes need and TRL lacks: DAPO's dynamic group filtering, one kind of
row (image or text) per generation batch, each group's prompt computed once, and the seconds of each step split into
generation, reward and update."""

from __future__ import annotations

import time

from medix_lib.training import loading  # noqa: F401  (imports unsloth first where it applies)
from medix_lib.training import prefix, refill


def trainer_class():
    """``MedixGRPOTrainer`` built on whatever ``trl.GRPOTrainer`` is importable (Unsloth's patched one on a GPU)."""
    from trl import GRPOTrainer

    class MedixGRPOTrainer(GRPOTrainer):
        """GRPOTrainer plus:

        - ``group_filter=(low, high)``: after the rewards of a generation batch are in, a group whose mean composite
          reward is not strictly between ``low`` and ``high`` is dropped from the loss (its completions' mask and
          advantages are zeroed). With ``group_refill=N`` (DAPO's dynamic sampling, the paper's recipe) up to N
          further batches of prompts of the same kind are generated and their informative groups take the dropped
          ones' places (:mod:`medix_lib.training.refill`; one process). ``group_filter/dropped`` (in the first
          batch), ``group_filter/refill_batches`` and ``group_filter/kept_fraction`` (at the end) are logged.
        - a text-only generation batch of a vision-language policy is passed on without its ``images`` key (TRL would
          hand empty picture lists to the processor); mixed batches never occur because the dataset is ordered into
          batches of one kind (:func:`medix_lib.training.rows.homogeneous_order`) and shuffling is left off.
        - ``time/generation``, ``time/reward`` and ``time/update`` seconds per step, logged with the rewards.
        - ``rewards_path``: per generated completion, the step, its prompt's kind (image or text) and every reward
          component, appended as they come, so a run's learning can be tested with a confidence interval.
        - ``rollouts_path``: every ``rollouts_every`` steps (and at the last step) one group's completions as text
          with their rewards, so a reader can see what the policy wrote and what it was paid.
        - ``shared_prefix``: each group's prompt is run once in the rollout's prefill and in the update's forward and
          backward (:mod:`medix_lib.training.prefix`); off, every completion runs its prompt, as in TRL. It applies
          on the transformers generation path of a single process without gradient checkpointing (the CPU path).
        """

        def __init__(self, *args, group_filter: tuple[float, float] | None = None, rewards_path=None,
                     rollouts_path=None, rollouts_every: int = 0, shared_prefix: bool = False,
                     group_refill: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.group_refill = group_refill
            self._refill_source = refill.RefillSource(self.train_dataset, self.num_generations, self.args.seed + 1) \
                if group_refill and group_filter else None
            if self._refill_source is not None:
                self.add_callback(refill.checkpoint_callback(self._refill_source))
            self.shared_prefix = shared_prefix
            self.prefix_shared = {"generation": 0, "logps": 0}  # calls that ran each prompt once (bench, tests)
            self.group_filter = group_filter
            self.rewards_path = rewards_path  # completion rewards are appended here as they come (a JSONL file)
            self.rollouts_path = rollouts_path  # one group's completions as text, every ``rollouts_every`` steps
            self.rollouts_every = rollouts_every
            self._seconds = {"generation": 0.0, "reward": 0.0}

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            start = time.perf_counter()
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._seconds["reward"] += time.perf_counter() - start
            self._last_rewards = rewards
            self._last_completions = completions
            return rewards

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations,
                                  has_tool_images=False):
            args = (prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
            if not self.shared_prefix or self.use_vllm or self.use_transformers_continuous_batching:
                return super()._generate_single_turn(*args)
            with prefix.SharedPrefixGeneration(self.accelerator.unwrap_model(self.model_wrapped)) as sharing:
                out = super()._generate_single_turn(*args)
            self.prefix_shared["generation"] += sharing.shared
            return out

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **fields):
            if (self.shared_prefix and not compute_aux_loss and not self.args.gradient_checkpointing
                    and self.accelerator.num_processes == 1):  # several processes: DDP's forward syncs gradients
                given = {k: v for k, v in fields.items() if v is not None}
                per_row = int("pixel_values" in given)  # one picture per image row, none per text row
                if all(n == per_row for n in given.pop("num_images", None) or []):
                    with self.accelerator.autocast():
                        out = prefix.logps_and_entropies(self.accelerator.unwrap_model(model), input_ids,
                                                         attention_mask, logits_to_keep, self.temperature,
                                                         compute_entropy, **given)
                    if out is not None:
                        self.prefix_shared["logps"] += 1
                        return (*out, None)
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              batch_size, compute_entropy, compute_aux_loss,
                                                              **fields)

        def train(self, resume_from_checkpoint=None, *args, **kwargs):
            if resume_from_checkpoint and self._refill_source is not None:  # refill draws on where it stopped
                self._refill_source.restore(resume_from_checkpoint)
            return super().train(resume_from_checkpoint, *args, **kwargs)

        def _generate_and_score_completions(self, inputs):
            output = self._rollouts(inputs)
            if self.model.training and self.group_filter:
                output = self._filter_groups(output, inputs)
            return output

        def _rollouts(self, inputs):
            if "images" in inputs[0] and not any(x.get("images") for x in inputs):
                inputs = [{k: v for k, v in x.items() if k != "images"} for x in inputs]
            start = time.perf_counter()
            reward_before = self._seconds["reward"]
            output = super()._generate_and_score_completions(inputs)
            self._seconds["generation"] += time.perf_counter() - start - (self._seconds["reward"] - reward_before)
            if self.model.training:
                self._record_rewards(inputs)
            return output

        def _record_rewards(self, inputs) -> None:
            import json

            if not self.accelerator.is_main_process or self.rewards_path is None:
                return
            weights = self.reward_weights.tolist()
            kinds = ["image" if x.get("images") else "text" for x in inputs]
            kinds = kinds * (len(self._last_rewards) // max(1, len(kinds)))  # other processes' rows: same kinds
            records = [{"step": self.state.global_step, "kind": kind, **dict(zip(self.reward_func_names, row)),
                        "composite": sum(w * v for w, v in zip(weights, row) if v == v)}  # NaN (failed judge): 0
                       for row, kind in zip(self._last_rewards.tolist(), kinds)]
            with open(self.rewards_path, "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in records)
            step, last = self.state.global_step, self.state.max_steps - 1
            if self.rollouts_path is not None and self.rollouts_every and (step % self.rollouts_every == 0
                                                                           or step == last):
                self._record_rollouts(inputs, records[:self.num_generations])

        def _record_rollouts(self, inputs, records) -> None:
            """The first group of this generation batch as text: its prompt (the question, not the system prompt),
            reference, and each completion with its reward components, so a reader sees what RL paid for."""
            import json

            row = inputs[0]
            with open(self.rollouts_path, "a") as fh:
                for record, completion in zip(records, self._last_completions):
                    text = completion[-1]["content"] if isinstance(completion, list) else completion
                    fh.write(json.dumps({**record, "id": row.get("id"), "prompt": row.get("question"),
                                         "reference": row.get("answer"), "reference_modality": row.get("modality"),
                                         "completion": text}, ensure_ascii=False) + "\n")

        def _group_keep(self):
            weights = self.reward_weights.to(self._last_rewards.device)
            composite = (self._last_rewards * weights.unsqueeze(0)).nansum(dim=1)
            return refill.group_keep(composite, self.num_generations, *self.group_filter)

        def _filter_groups(self, output, inputs):
            import torch

            keep = self._group_keep()
            dropped = float((~keep).sum().item()) / self.num_generations
            drawn = 0
            if self._refill_source is not None and self.accelerator.num_processes == 1 and refill.mergeable(output):
                with_image = bool(inputs[0].get("images"))
                while not bool(keep.all()) and drawn < self.group_refill:
                    more = self._refill_source.draw(len(inputs) // self.num_generations, with_image)
                    if not more:
                        break
                    extra = self._rollouts(more)
                    output, keep = refill.merge(output, keep, extra, self._group_keep(), self._tokenizer.pad_token_id)
                    drawn += 1
            n_local = output["completion_mask"].size(0)
            local = keep[self.accelerator.process_index * n_local:(self.accelerator.process_index + 1) * n_local]
            local = local.to(output["completion_mask"].device)
            mask = output["completion_mask"]
            output["completion_mask"] = mask * local.unsqueeze(1).to(mask.dtype)
            output["advantages"] = torch.where(local, output["advantages"], torch.zeros_like(output["advantages"]))
            self._metrics["train"]["group_filter/dropped"].append(dropped)
            self._metrics["train"]["group_filter/refill_batches"].append(float(drawn))
            self._metrics["train"]["group_filter/kept_fraction"].append(float(keep.float().mean().item()))
            return output

        def training_step(self, model, inputs, num_items_in_batch=None):
            start = time.perf_counter()
            before = dict(self._seconds)
            loss = super().training_step(model, inputs, num_items_in_batch)
            spent = {k: self._seconds[k] - before[k] for k in self._seconds}
            self._step_seconds = getattr(self, "_step_seconds", {"generation": 0.0, "reward": 0.0, "update": 0.0})
            self._step_seconds["generation"] += spent["generation"]
            self._step_seconds["reward"] += spent["reward"]
            self._step_seconds["update"] += time.perf_counter() - start - spent["generation"] - spent["reward"]
            return loss

        def log(self, logs: dict, start_time: float | None = None) -> None:
            if "loss" in logs and getattr(self, "_step_seconds", None):  # a training log: the step's time split
                steps = max(1, self.args.logging_steps)
                logs.update({f"time/{k}": v / steps for k, v in self._step_seconds.items()})
                self._step_seconds = {"generation": 0.0, "reward": 0.0, "update": 0.0}
            super().log(logs, start_time)

    return MedixGRPOTrainer
