"""What a GRPO run's logs say, as tables a reader can scan: what moved per step, and what the policy wrote."""

from __future__ import annotations

# TRL's log keys -> the table's columns, in reading order
STEP_COLUMNS = {
    "reward": "composite",
    "reward_std": "spread",
    "frac_reward_zero_std": "zero-spread groups",
    "completions/mean_length": "length",
    "completions/clipped_ratio": "truncated",
    "kl": "KL",
    "clip_ratio/region_mean": "clipped",
    "loss": "loss",
    "step_time": "seconds",
}


def step_table(history: list[dict]):
    """One row per logged step: the composite reward's mean and spread within groups, the share of groups whose
    completions all scored the same (no advantage, nothing learned from them), mean completion length in tokens, the
    share cut at ``max_completion_length``, KL to the reference, the share of tokens clipped, the loss and the step's
    seconds. Columns TRL did not log (KL with ``beta`` 0) are left out.

    >>> table = step_table([{"step": 1, "reward": 0.5, "reward_std": 0.1, "loss": 0.0}, {"train_runtime": 3.0}])
    >>> table.to_dict("index")
    {1: {'composite': 0.5, 'spread': 0.1, 'loss': 0.0}}
    """
    import pandas as pd

    rows = [{"step": h["step"], **{name: h[key] for key, name in STEP_COLUMNS.items() if key in h}}
            for h in history if "reward" in h]
    return pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame()


def rollout_group(rollouts: list[dict], which: str = "first"):
    """The ``first`` or ``last`` group written to rollouts.jsonl as a table (one completion per row, full text, with
    its reward components), and a one-line caption naming its step, kind, question and reference.

    >>> rows = [{"step": s, "kind": "text", "id": "r", "prompt": "Q?", "reference": "A", "completion": c,
    ...          "accuracy": 1.0, "composite": 0.5} for s, c in ((0, "x"), (0, "y"), (3, "z"))]
    >>> table, caption = rollout_group(rows, "last")
    >>> caption, table["completion"].tolist()
    ('step 3 · text prompt r: Q? · reference: A', ['z'])
    """
    import pandas as pd

    if not rollouts:
        return pd.DataFrame(), "no rollouts were written (rollouts_every: 0)"
    step = rollouts[0]["step"] if which == "first" else rollouts[-1]["step"]
    group = [r for r in rollouts if r["step"] == step]
    head = group[0]
    caption = f"step {step} · {head['kind']} prompt {head['id']}: {head['prompt']} · reference: {head['reference']}"
    meta = {"step", "kind", "id", "prompt", "reference", "reference_modality"}
    return pd.DataFrame([{k: v for k, v in r.items() if k not in meta} for r in group]), caption
