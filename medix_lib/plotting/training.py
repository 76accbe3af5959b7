"""Figures of a training run beside its rollouts: validation during training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from medix_lib.plotting import COMPONENT_COLORS


def validation_curve(validation: list[dict], rollouts: list[dict], components: list[str], title: str):
    """Held-out greedy answers scored at each validation (composite and each component, markers) over the mean
    composite of each step's training rollouts (thin grey); the best validation step marked."""
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    steps = sorted({r["step"] for r in rollouts})
    # a rollout generated at step s (before its update) is the policy of validation step s
    ax.plot(steps, [np.nanmean([r["composite"] for r in rollouts if r["step"] == s]) for s in steps], color="0.6",
            lw=1, label="training rollouts, composite (sampled)")
    at = [v["step"] for v in validation]
    for name in [*components, "composite"]:
        if name in validation[0]:
            ax.plot(at, [v[name] for v in validation], marker="s" if name == "composite" else "o", ms=4,
                    lw=2.5 if name == "composite" else 1.2, color=COMPONENT_COLORS.get(name),
                    label=f"held-out {name} (greedy)")
    best = max(validation, key=lambda v: v["composite"])
    ax.axvline(best["step"], color="k", ls=":", lw=1)
    ax.annotate(f"best: step {best['step']}", (best["step"], 1.0), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward")
    ax.set_ylim(-0.02, 1.08)
    ax.legend(fontsize=7, ncols=2, loc="lower right")
    ax.set_title(f"{title}\n{validation[0]['n']} held-out rows, validated at {len(validation)} steps", fontsize=10)
    fig.tight_layout()
    return fig
