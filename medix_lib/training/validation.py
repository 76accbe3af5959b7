"""Validation during training: every ``validation_every`` GRPO steps (and before the first, and after the last) the
policy answers a fixed set of held-out training rows greedily, the answers are scored by the run's own rewards
(composite and each component, the judge included), and the adapter of the best step so far is kept in
``best_model/``. The rows are never trained on (held out of RL and of the warm-up), and validating neither draws
from nor reseeds the training's random stream: a run trains the same policy with validation on or off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import TrainerCallback


class ValidationCallback(TrainerCallback):
    """A transformers ``TrainerCallback``; records go to ``path`` (JSONL, one per validation) and the best adapter
    to ``best_dir`` with ``best_dir/validation.json`` naming its step."""

    def __init__(self, rows, processing_class, is_vision: bool, cfg, reward_funcs: list, weights: list[float],
                 path: Path, best_dir: Path):
        self.rows, self.processing_class, self.is_vision, self.cfg = rows, processing_class, is_vision, cfg
        self.funcs, self.weights = reward_funcs, weights
        self.path, self.best_dir = Path(path), Path(best_dir)
        kept = [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.is_file() else []
        self.best = max(kept, key=lambda r: r["composite"], default=None)
        if self.best is None or self._best_step() != self.best["step"]:
            shutil.rmtree(self.best_dir, ignore_errors=True)  # an adapter of a step no longer on record

    def _best_step(self) -> int | None:
        record = self.best_dir / "validation.json"
        return json.loads(record.read_text())["step"] if record.is_file() else None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self.validate(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step % self.cfg.validation_every == 0 or step == state.max_steps:
            self.validate(model, step)

    def validate(self, model, step: int) -> dict:
        import torch

        from medix_lib import data, policy
        from medix_lib.rewards import score_components

        rng, training = torch.random.get_rng_state(), model.training
        model.eval()
        try:
            prompts = data.to_grpo(self.rows, self.cfg.contract())["prompt"]
            texts = policy.generate(policy.Policy(model, self.processing_class, self.is_vision), prompts,
                                    images=data.row_pictures(self.rows) if self.is_vision else None,
                                    max_new_tokens=self.cfg.max_completion_length, progress=False)
            scores = score_components(self.funcs, self.weights, [t[0] for t in texts], answer=self.rows["answer"],
                                      modality=self.rows["modality"], question=self.rows["question"])
        finally:
            torch.random.set_rng_state(rng)  # policy.generate seeds torch: training's stream is left as it was
            model.train(training)
        record = {"step": step, "n": len(texts),
                  **{k: sum(x for x in v if x is not None) / max(1, sum(x is not None for x in v))
                     for k, v in scores.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.best is None or record["composite"] > self.best["composite"]:
            self.best = record
            model.save_pretrained(str(self.best_dir))
            (self.best_dir / "validation.json").write_text(json.dumps(record, indent=1))
        return record


def held_out(rows, n: int):
    """(kept, validation): the last ``n`` of ``rows`` held out (the warm-up pool's end, so RL rows stay as they
    were)."""
    n = min(n, len(rows))
    return rows.select(range(len(rows) - n)), rows.select(range(len(rows) - n, len(rows)))
