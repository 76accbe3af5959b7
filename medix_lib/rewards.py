"""MediX-R1's composite reward as TRL reward functions: ``fn(completions, **columns) -> list[float | None]``.

Four components, each in [0, 1], combined with the paper's weights (TRL ``reward_weights``)::

    overall = 0.5175 accuracy (LLM judge) + 0.3375 semantic (embedding) + 0.045 modality + 0.10 format

A component returns ``None`` for a completion it cannot score (a judge failure); TRL then ignores that component for
that completion instead of punishing the policy for the judge's fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medix_lib import config, models
from medix_lib.contract import OutputContract, completion_text
from medix_lib.judge import Judge, JudgeItem, normalise

MEDIX_WEIGHTS: dict[str, float] = {"accuracy": 0.5175, "semantic": 0.3375, "modality": 0.045, "format": 0.10}


def _texts(completions) -> list[str]:
    return [completion_text(c) for c in completions]


class FormatReward:
    """1 when the completion is exactly: modality tag, reasoning block, answer block, nothing else.

    >>> FormatReward()(["<X_RAY>\\n<thinking>ok</thinking>\\n<answer>pneumonia</answer>", "pneumonia"])
    [1.0, 0.0]
    """

    __name__ = "format"

    def __init__(self, contract: OutputContract | None = None):
        self.contract = contract or OutputContract()

    def __call__(self, completions, **_) -> list[float]:
        return [float(self.contract.parse(t).well_formed) for t in _texts(completions)]


class ModalityReward:
    """1 when the tag before the reasoning block names the row's modality (case-insensitive).

    >>> ModalityReward()(["<ct_scan><thinking>.</thinking><answer>x</answer>", "<MRI_SCAN>"], modality=["CT_SCAN"] * 2)
    [1.0, 0.0]
    """

    __name__ = "modality"

    def __init__(self, contract: OutputContract | None = None):
        self.contract = contract or OutputContract()

    def __call__(self, completions, modality, **_) -> list[float]:
        found = [self.contract.parse(t).modality for t in _texts(completions)]
        return [float(f is not None and f.upper() == m.strip("<>").upper()) for f, m in zip(found, modality)]


class SemanticReward:
    """Cosine similarity of the answer block and the reference under a sentence-transformers model.

    ``mode="threshold"`` is the paper's rule (1 if cosine >= threshold); ``mode="continuous"`` maps cosine linearly
    from [floor, 1] to [0, 1]. A missing answer block scores 0; an exact normalised match scores 1 with no model.

    >>> SemanticReward(model="minilm-l6-v2")(["<OTHER><thinking>.</thinking><answer>Heart attack</answer>"],
    ...                                      answer=["heart attack"])
    [1.0]
    """

    __name__ = "semantic"

    def __init__(self, model: str = "minilm-l6-v2", mode: Literal["threshold", "continuous"] = "threshold",
                 threshold: float = 0.8, floor: float = 0.2, contract: OutputContract | None = None,
                 batch_size: int = 64):
        if mode not in ("threshold", "continuous"):
            raise ValueError(f"unknown semantic mode {mode!r}; valid: threshold, continuous")
        self.model = models.check_model_name(model, "embedder")
        self.mode, self.threshold, self.floor, self.batch_size = mode, threshold, floor, batch_size
        self.contract = contract or OutputContract()

    def similarities(self, predictions: list[str], references: list[str]) -> list[float]:
        """Cosine similarity per pair; each distinct string is embedded once per call."""
        unique = sorted(set(predictions) | set(references))
        vectors = models.load_embedder(self.model).encode(
            unique, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        index = {text: vectors[i] for i, text in enumerate(unique)}
        return [float(index[p] @ index[r]) for p, r in zip(predictions, references)]

    def __call__(self, completions, answer, **_) -> list[float]:
        answers = [self.contract.parse(t).answer for t in _texts(completions)]
        rewards: list[float] = [0.0] * len(answers)
        to_embed = []
        for i, (pred, ref) in enumerate(zip(answers, answer)):
            if pred and normalise(pred) == normalise(ref):
                rewards[i] = 1.0
            elif pred and pred.strip():
                to_embed.append(i)
        if to_embed:
            sims = self.similarities([answers[i] for i in to_embed], [answer[i] for i in to_embed])
            for i, sim in zip(to_embed, sims):
                if self.mode == "threshold":
                    rewards[i] = float(sim >= self.threshold)
                else:
                    rewards[i] = min(1.0, max(0.0, (sim - self.floor) / (1.0 - self.floor)))
        return rewards


class AccuracyReward:
    """The LLM judge's verdict on the answer block vs the reference: 1 YES, 0 NO, None when the judge failed.

    A completion without an answer block scores 0 without asking the judge (the documented rule: no answer tag,
    no answer).
    """

    __name__ = "accuracy"

    def __init__(self, judge: Judge, contract: OutputContract | None = None, failure_value: float | None = None):
        self.judge = judge
        self.contract = contract or OutputContract()
        self.failure_value = failure_value

    def __call__(self, completions, answer, question=None, **_) -> list[float | None]:
        predictions = [self.contract.parse(t).answer for t in _texts(completions)]
        questions = question if question is not None else [""] * len(predictions)
        asked = [i for i, p in enumerate(predictions) if p is not None]
        rewards: list[float | None] = [0.0] * len(predictions)
        verdicts = self.judge([JudgeItem(answer[i], predictions[i], questions[i]) for i in asked])
        for i, verdict in zip(asked, verdicts):
            rewards[i] = self.failure_value if verdict.label is None else float(verdict.label)
        return rewards


REWARDS = {"accuracy": AccuracyReward, "semantic": SemanticReward, "modality": ModalityReward,
           "format": FormatReward}


@dataclass
class RewardSettings:
    """Reward knobs shared by notebook 02 (design) and 03 (training)."""

    rewards: list[str]
    reward_weights: dict[str, float]
    reasoning_tag: str
    answer_tag: str
    judge_backend: str
    judge_model: str
    judge_threshold: float
    judge_show_question: bool
    semantic_model: str
    semantic_mode: str
    semantic_threshold: float

    def check_rewards(self) -> None:
        for name in self.rewards:
            if name not in REWARDS:
                raise config.ParamsError(f"parameter 'rewards': unknown reward {name!r}; valid: {', '.join(REWARDS)}")
        extra = set(self.reward_weights) - set(REWARDS)
        if extra:
            raise config.ParamsError(f"parameter 'reward_weights': unknown reward(s) {sorted(extra)}; "
                                     f"valid: {', '.join(REWARDS)}")
        if "accuracy" in self.rewards:
            models.check_model_name(self.judge_model, "causal_lm")
        if "semantic" in self.rewards:
            models.check_model_name(self.semantic_model, "embedder")

    def contract(self) -> OutputContract:
        return OutputContract(self.reasoning_tag, self.answer_tag)

    def make_judge(self, template: str = "reward-v1") -> Judge:
        return Judge(backend=self.judge_backend, model=self.judge_model, template=template,
                     threshold=self.judge_threshold, show_question=self.judge_show_question)

    def build(self) -> tuple[list, list[float]]:
        """The reward functions and their weights, in TRL's ``reward_funcs`` / ``reward_weights`` form."""
        contract = self.contract()
        built = {
            "accuracy": lambda: AccuracyReward(self.make_judge(), contract),
            "semantic": lambda: SemanticReward(self.semantic_model, self.semantic_mode, self.semantic_threshold,
                                               contract=contract),
            "modality": lambda: ModalityReward(contract),
            "format": lambda: FormatReward(contract),
        }
        funcs = [built[name]() for name in self.rewards]
        return funcs, [float(self.reward_weights.get(name, MEDIX_WEIGHTS[name])) for name in self.rewards]


def score(funcs: list, weights: list[float], completions, **columns) -> dict[str, list[float | None]]:
    """Every component plus the weighted ``composite`` (skipping None components, as TRL does)."""
    table = {f.__name__: f(completions, **columns) for f in funcs}
    composite = []
    for i in range(len(completions)):
        parts = [(w, table[f.__name__][i]) for f, w in zip(funcs, weights)]
        composite.append(sum(w * v for w, v in parts if v is not None))
    table["composite"] = composite
    return table


@dataclass
class RewardDesignParams(config.StageParams, RewardSettings):
    dataset_dir: str
    policy_model: str
    n_prompts: int
    completions_per_prompt: int
    max_new_tokens: int
    temperature: float

    def check(self) -> None:
        self.check_rewards()
        models.check_model_name(self.policy_model, "causal_lm")
        if self.n_prompts < 1 or self.completions_per_prompt < 1:
            raise config.ParamsError("parameters 'n_prompts' and 'completions_per_prompt' must be >= 1")
