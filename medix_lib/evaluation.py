"""Reference-based evaluation: generate answers, extract the final answer, screen it with the rewards' answer guards
(optional), ask the judge, report accuracy with a bootstrap confidence interval and the judge's failure rate
(failures are retried, never scored as wrong)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medix_lib.contract import OutputContract
from medix_lib.judge import Judge, JudgeItem, Verdict
from medix_lib.params import EvalParams
from medix_lib.rewards import GUARD_NAMES, screen


def final_answer(text: str, contract: OutputContract) -> str:
    """The part of a response the judge sees: the answer block, else whatever follows the last reasoning block.

    >>> final_answer("<thinking>hmm</thinking> It is asthma.", OutputContract())
    'It is asthma.'
    """
    parsed = contract.parse(text)
    if parsed.answer is not None:
        return parsed.answer
    closing = f"</{contract.reasoning_tag}>"
    return text.rsplit(closing, 1)[-1].strip() if closing in text else text.strip()


def bootstrap_ci(correct: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of 0/1 outcomes.

    >>> bootstrap_ci(np.array([1, 1, 1, 1]), 200, 0)
    (1.0, 1.0)
    """
    if len(correct) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = rng.choice(correct, size=(n_boot, len(correct)), replace=True).mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def eval_rows(cfg: EvalParams):
    from datasets import load_from_disk

    ds = load_from_disk(str(cfg.upstream(cfg.dataset_dir)))["test"]
    if cfg.text_only:
        ds = ds.filter(lambda row: row["image"] is None)
    return ds.select(range(min(cfg.max_eval_rows, len(ds))))


def candidate_adapters(cfg: EvalParams) -> dict[str, str | None]:
    """Name -> adapter path (None for the base policy); a missing adapter fails naming the candidate."""
    adapters = {}
    for name, path in cfg.candidates.items():
        adapters[name] = str(cfg.upstream(path)) if path else None
        if path and not (cfg.upstream(path) / "adapter_config.json").exists():
            raise FileNotFoundError(f"candidate {name!r}: no adapter at {cfg.upstream(path)} "
                                    f"(run notebook 03 first, or remove it from 'candidates')")
    return adapters


def generate_answers(cfg: EvalParams, rows, adapter_dir: str | None) -> list[str]:
    from medix_lib import data, policy

    prompts = data.to_grpo(rows, cfg.contract())["prompt"]
    if not cfg.system_prompt:
        prompts = [[m for m in p if m["role"] != "system"] for p in prompts]
    model = policy.load(cfg.policy_model, adapter_dir)
    texts = policy.generate(model, prompts, images=rows["image"], n=1, max_new_tokens=cfg.max_new_tokens,
                            temperature=0.0, batch_size=cfg.batch_size, seed=cfg.seed)
    return [t[0] for t in texts]


def judge_answers(cfg: EvalParams, judge: Judge, rows, responses: list[str]) -> list[dict]:
    """One record per response: the final answer, and the judge's verdict on it, or, with ``answer_guards``, a NO
    from the guard that refused it (``rule`` names it: ``overlong``, ``candidate_list``, ...) without asking the
    judge, as the accuracy reward does. A small judge is validated on answers of a few words to a few sentences; a
    paragraph is outside what its figures say about it."""
    contract = cfg.contract()
    predictions = [final_answer(r, contract) for r in responses]
    items = [JudgeItem(ref, pred, q) for ref, pred, q in zip(rows["answer"], predictions, rows["question"])]
    refused = [screen(it.prediction, it.reference, it.question) if cfg.answer_guards and it.prediction.strip()
               else None for it in items]
    asked = [i for i, guard in enumerate(refused) if guard is None]
    verdicts: list[Verdict] = [Verdict(label=False, p_yes=None, error=None, cached=False, judge=judge.model,
                                       prompt_hash=judge.prompt_hash, backend=judge.backend, rule=guard)
                               for guard in refused]
    for i, v in zip(asked, judge([items[i] for i in asked], progress=True)):
        verdicts[i] = v
    failed = [i for i, v in enumerate(verdicts) if v.error is not None]
    if failed:  # one retry of the failures only; what still fails is reported, not scored
        for i, v in zip(failed, judge([items[i] for i in failed])):
            verdicts[i] = v
    return [{"id": row_id, "question": q, "reference": ref, "response": resp, "prediction": pred,
             **verdict.to_dict()}
            for row_id, q, ref, resp, pred, verdict in zip(rows["id"], rows["question"], rows["answer"], responses,
                                                         predictions, verdicts)]


def summarise(records: list[dict], n_boot: int, seed: int) -> dict:
    scored = np.array([r["label"] for r in records if r["label"] is not None], dtype=float)
    low, high = bootstrap_ci(scored, n_boot, seed)
    failures = sum(r["error"] is not None for r in records)
    return {"n": len(records), "accuracy": float(scored.mean()) if len(scored) else float("nan"),
            "ci_low": low, "ci_high": high, "judge_failures": failures,
            "judge_fail_rate": failures / max(1, len(records)),
            "refused_by_guard": sum(r["rule"] in GUARD_NAMES for r in records),
            "mean_p_yes": float(np.mean([r["p_yes"] for r in records if r["p_yes"] is not None] or [np.nan]))}


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
