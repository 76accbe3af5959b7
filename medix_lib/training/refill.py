"""DAPO's dynamic sampling with refill. DAPO (and the MediX-R1 recipe, bounds 0.01 / 0.99) keeps drawing prompts
until the batch holds only groups whose rewards differ: a group that all scored the same has zero advantage and
teaches nothing. TRL has no such loop; here the trainer generates further batches of prompts of the same kind,
keeps their informative groups in place of the dropped ones, and stops when the batch is full or after
``group_refill`` extra batches (what is still missing stays masked out, as without refill).

The batch is TRL's rollout dict: prompts left-padded, completions right-padded, one picture per image row; merging
two of them re-pads to the longer of each."""

from __future__ import annotations

# right-padded per-token tensors that may be in a rollout batch; the prompt's are left-padded
COMPLETION_KEYS = ("completion_ids", "completion_mask", "old_per_token_logps", "ref_per_token_logps",
                   "sampling_per_token_logps", "tool_mask")
PROMPT_KEYS = ("prompt_ids", "prompt_mask")
ROW_KEYS = ("advantages", "pixel_values")
MERGEABLE = {*COMPLETION_KEYS, *PROMPT_KEYS, *ROW_KEYS, "num_images", "num_items_in_batch"}


def group_keep(composite, num_generations: int, low: float, high: float):
    """Per completion, whether its group's mean composite reward is strictly between ``low`` and ``high``.

    >>> import torch
    >>> group_keep(torch.tensor([1., 1., 0., 1.]), 2, 0.01, 0.99).tolist()
    [False, False, True, True]
    """
    means = composite.view(-1, num_generations).mean(dim=1)
    return ((means > low) & (means < high)).repeat_interleave(num_generations)


def mergeable(batch: dict) -> bool:
    """Whether :func:`merge` knows every field of ``batch`` (Qwen-VL's patch rows and the like it does not)."""
    return set(batch) <= MERGEABLE


def _pad(tensor, length: int, left: bool, value):
    import torch

    missing = length - tensor.size(1)
    if missing <= 0:
        return tensor
    filler = tensor.new_full((tensor.size(0), missing, *tensor.shape[2:]), value)
    return torch.cat([filler, tensor] if left else [tensor, filler], dim=1)


def merge(batch: dict, keep, extra: dict, extra_keep, pad_token_id: int) -> tuple[dict, object]:
    """``batch`` with as many of its dropped completions as there are replaced by kept completions of ``extra``
    (whole groups: both keep masks are per group), the rows re-padded; returns it with its new keep mask."""
    import torch

    n = keep.numel()
    rows_a, rows_b = keep.nonzero().flatten(), extra_keep.nonzero().flatten()
    taken = rows_b[:n - rows_a.numel()]
    filler = (~keep).nonzero().flatten()[:n - rows_a.numel() - taken.numel()]  # still dropped, still masked
    merged = {}
    for key, value in batch.items():
        other = extra[key]
        if key == "num_items_in_batch":
            continue
        if key == "num_images":
            merged[key] = [value[i] for i in rows_a.tolist()] + [other[i] for i in taken.tolist()] + [
                value[i] for i in filler.tolist()]
            continue
        if key in PROMPT_KEYS or key in COMPLETION_KEYS:
            length = max(value.size(1), other.size(1))
            fill = pad_token_id if key.endswith("_ids") else 0
            value, other = (_pad(t, length, key in PROMPT_KEYS, fill) for t in (value, other))
        merged[key] = torch.cat([value[rows_a], other[taken], value[filler]])
    new_keep = torch.cat([keep[rows_a], extra_keep[taken], keep[filler]])
    merged["num_items_in_batch"] = merged["completion_mask"].sum()
    return merged, new_keep


STATE_FILE = "refill_state.json"


class RefillSource:
    """Rows of the training dataset by kind (with or without a picture), drawn in a seeded order, each repeated
    ``num_generations`` times as TRL's sampler repeats a prompt for its group."""

    def __init__(self, dataset, num_generations: int, seed: int):
        import random

        import pyarrow.compute as pc

        self.dataset, self.num_generations = dataset, num_generations
        # pictures counted from the list lengths, never read (a large dataset would be read whole)
        counts = (pc.list_value_length(dataset.with_format("arrow")["images"]).to_pylist()
                  if "images" in dataset.column_names else [0] * len(dataset))
        self.pools = {kind: [i for i, n in enumerate(counts) if bool(n) == kind] for kind in (True, False)}
        self.rng = random.Random(seed)
        self.position = {kind: 0 for kind in self.pools}
        for pool in self.pools.values():
            self.rng.shuffle(pool)

    def save(self, folder) -> None:
        """Where each kind's draw has got to, beside a checkpoint's weights: a resumed run draws on from there."""
        import json
        from pathlib import Path

        (Path(folder) / STATE_FILE).write_text(json.dumps({"position": {str(k): v for k, v in self.position.items()}}))

    def restore(self, folder) -> None:
        import json
        from pathlib import Path

        path = Path(folder) / STATE_FILE
        if path.is_file():  # a checkpoint written before refill kept its state starts the draws afresh, as it did
            saved = json.loads(path.read_text())["position"]
            self.position = {kind: saved.get(str(kind), 0) for kind in self.pools}

    def draw(self, n_prompts: int, with_image: bool) -> list[dict]:
        pool = self.pools[with_image]
        if not pool:
            return []
        rows = []
        for _ in range(n_prompts):
            rows.append(self.dataset[pool[self.position[with_image] % len(pool)]])
            self.position[with_image] += 1
        return [row for row in rows for _ in range(self.num_generations)]


def checkpoint_callback(source: RefillSource):
    """A trainer callback that saves ``source``'s draw positions into each checkpoint as it is written."""
    from pathlib import Path

    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class RefillCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                source.save(folder)

    return RefillCheckpoint()
