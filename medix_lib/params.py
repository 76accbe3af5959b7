"""Every stage's parameters, with their defaults: the one place a default lives.

A notebook's ``parameters`` cell mirrors its dataclass here (a test fails on drift); ``params/NN_slug/<variant>.yaml``
files hold only what a variant changes; the CLI and the library read the same defaults. The defaults are the offline
``smoke`` profile, so a notebook opened in JupyterLab runs as ``make demo`` does.

Following a setting from a params file to its use is one hop per layer: YAML -> :func:`load` -> the stage dataclass
-> ``cfg.judge()`` / ``rewards.build(cfg)`` / ``training.train(cfg, ...)`` -> the library object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import yaml

from medix_lib import config, models, progress
from medix_lib.config import ParamsError, StageParams
from medix_lib.contract import OutputContract
from medix_lib.data import SYNTH_SOURCES
from medix_lib.evaluation.image_control import IMAGE_CONTROLS
from medix_lib.judge import (DEFAULT_BACKEND, DEFAULT_MODEL, EVAL_QUESTION_TEMPLATE, EVAL_TEMPLATE, JUDGE_BACKENDS,
                              REWARD_TEMPLATE, Judge, machine_cache_path)
from medix_lib.rewards import COMPONENTS, DEFAULT_EMBEDDER, MEDIX_WEIGHTS, REWARDS, SemanticReward

POLICY_MODEL = "medix-vlm-135m"  # the offline policy of the smoke profile: a vision-language model (medix_lib.vlm)
# Models notebook 04 compares: name -> LoRA adapter written by notebook 03, relative to the outputs root ("": the base)
SMOKE_CANDIDATES = {"base": "", "warmup": "03_train_grpo/smoke/sft_model", "grpo": "03_train_grpo/smoke/model"}


@dataclass
class SynthesisParams(StageParams):
    """Notebook 01: the offline set's size and make-up."""

    n_text: int = 120  # text-only rows, spread evenly over the 13 text question families
    n_image: int = 200  # image rows, spread evenly over the bundled pictures
    image_size: int = 224  # images are RGB, letterboxed to image_size x image_size pixels
    test_fraction: float = 0.2  # share of concepts (and of pictures) held out for test
    sources: list[str] = field(default_factory=lambda: list(SYNTH_SOURCES))  # subset of data.SYNTH_SOURCES
    n_example_images: int = 12  # images in the example grid
    release_data: str = ""  # a copy of the MediX-R1 release (MBZUAI/medix-rl-data layout): its rows, not synthesised
    release_rows: int = 0  # with release_data: rows per split at most (0: all)

    def check(self) -> None:
        for key in ("n_text", "n_image", "n_example_images", "release_rows"):
            if getattr(self, key) < 0:
                raise ParamsError(f"parameter {key!r} must be >= 0, got {getattr(self, key)}")
        if self.n_text + self.n_image == 0:
            raise ParamsError("parameters 'n_text' and 'n_image' are both 0: the dataset would be empty")
        if not 16 <= self.image_size <= 2048:
            raise ParamsError(f"parameter 'image_size' must be in [16, 2048], got {self.image_size}")
        if not 0 < self.test_fraction < 1:
            raise ParamsError(f"parameter 'test_fraction' must be in (0, 1), got {self.test_fraction}")
        unknown = [s for s in self.sources if s not in SYNTH_SOURCES]
        if unknown:
            raise ParamsError(f"parameter 'sources' has unknown {unknown}; valid: {', '.join(SYNTH_SOURCES)}")


@dataclass
class JudgeSettings:
    """The judge, wherever one is used (rewards, evaluation, ``python -m medix_lib judge``)."""

    judge_backend: str = DEFAULT_BACKEND  # "transformers" (local logits) or "openai" (any OpenAI-compatible server)
    judge_model: str = DEFAULT_MODEL  # the shipped offline judge (2 verifiers); release: Qwen3-4B-Instruct-2507
    judge_threshold: float | Literal["auto"] = "auto"  # P(YES) at or above this is YES; auto: the model's own
    judge_show_question: bool = False  # the release never shows the judge the question
    judge_terminology: bool = True  # names of one HPO term or drug are YES and two drugs NO by lookup (judge.terms)

    def judge(self, template: str = REWARD_TEMPLATE) -> Judge:
        return Judge(backend=self.judge_backend, model=self.judge_model, template=template,
                     threshold=self.judge_threshold, show_question=self.shows_question(),
                     terminology=self.judge_terminology, cache_path=machine_cache_path())

    def shows_question(self) -> bool:
        """``judge_show_question``, with "auto" (evaluation's default) resolved: an instruction-tuned judge is shown
        the question with its options, as in the paper's evaluation; a trained verifier (a model with a training
        record, such as the shipped one) never is: it learned from answer pairs alone."""
        if self.judge_show_question != "auto":
            return self.judge_show_question
        return models.artifact_record(self.judge_model) is None

    def check_judge(self) -> None:
        if self.judge_backend not in JUDGE_BACKENDS:
            raise ParamsError(f"parameter 'judge_backend': unknown {self.judge_backend!r}; valid: "
                              f"{', '.join(JUDGE_BACKENDS)}")
        if self.judge_backend == "transformers":  # a server's model name is whatever the server calls it
            models.check_model_name(self.judge_model, "causal_lm")
        if self.judge_threshold != "auto" and not 0.0 <= self.judge_threshold <= 1.0:
            raise ParamsError(f"parameter 'judge_threshold' must be 'auto' or in [0, 1], got {self.judge_threshold}")


@dataclass
class ContractSettings:
    reasoning_tag: str = OutputContract.reasoning_tag  # reasoning block tag (the paper's figures say "think")
    answer_tag: str = OutputContract.answer_tag  # answer block tag

    def contract(self) -> OutputContract:
        try:
            return OutputContract(self.reasoning_tag, self.answer_tag)
        except ValueError as err:
            raise ParamsError(f"parameters 'reasoning_tag'/'answer_tag': {err}") from None


@dataclass
class PictureSettings:
    """How many pixels a picture may take for a dynamic-resolution policy (Qwen2-VL family), the same wherever the
    policy sees pictures (02 samples, 03 trains, 04 evaluates), so it is evaluated at the resolution it trained at."""

    image_min_pixels: int = 0  # pixels of a picture at least (0: the processor's own; Qwen2.5-VL 3136)
    image_max_pixels: int = 0  # at most: caps a picture's tokens, one per 28x28 pixels (0: the processor's own)

    def check_pixels(self) -> None:
        if self.image_min_pixels < 0 or self.image_max_pixels < 0 or (
                self.image_max_pixels and self.image_min_pixels > self.image_max_pixels):
            raise ParamsError(f"parameters 'image_min_pixels' = {self.image_min_pixels} and 'image_max_pixels' = "
                              f"{self.image_max_pixels}: both >= 0 (0: the processor's own), min at most max")

    def limit_pixels(self, processing_class):
        """``processing_class`` with these bounds (:func:`medix_lib.models.limit_image_pixels`)."""
        return models.limit_image_pixels(processing_class, self.image_min_pixels, self.image_max_pixels)


@dataclass
class RewardSettings(ContractSettings, JudgeSettings):
    """Reward knobs shared by notebook 02 (design) and 03 (training); ``rewards.build(settings)`` turns them into
    TRL reward functions and weights."""

    rewards: list[str] = field(default_factory=lambda: list(COMPONENTS))  # components used (any subset) or composite
    reward_weights: dict[str, float] = field(default_factory=lambda: dict(MEDIX_WEIGHTS))  # MediX-R1 weights
    answer_guards: bool = True  # refuse hacked answers (judge instructions, candidate lists, ...) before scoring
    answer_rules: Literal["strict", "release"] = "strict"  # "release": first block, whole reply if none, ":" "?" zeroed
    semantic_model: str = DEFAULT_EMBEDDER  # sentence-transformers embedder (release: MedEmbed-large-v0.1)
    semantic_mode: Literal["threshold", "continuous"] = SemanticReward.MODE  # "threshold" (paper) or "continuous"
    semantic_threshold: float = SemanticReward.THRESHOLD  # cosine at or above this scores 1 (paper: 0.8)
    semantic_floor: float = SemanticReward.FLOOR  # continuous mode: cosine mapped from [floor, 1] to [0, 1]

    def check_rewards(self) -> None:
        for name in self.rewards:
            if name not in REWARDS:
                raise ParamsError(f"parameter 'rewards': unknown reward {name!r}; valid: {', '.join(REWARDS)}")
        if not self.rewards or len(set(self.rewards)) != len(self.rewards):
            raise ParamsError(f"parameter 'rewards' must list distinct rewards, got {self.rewards}")
        if "composite" in self.rewards and len(self.rewards) > 1:
            raise ParamsError("parameter 'rewards': 'composite' already contains every component; use it alone or "
                              "list components")
        extra = set(self.reward_weights) - set(COMPONENTS)
        if extra:
            raise ParamsError(f"parameter 'reward_weights': unknown reward(s) {sorted(extra)}; "
                              f"valid: {', '.join(COMPONENTS)}")
        if not self.semantic_floor < 1.0:
            raise ParamsError(f"parameter 'semantic_floor' must be below 1, got {self.semantic_floor}")
        self.contract()
        used = set(COMPONENTS) if self.rewards == ["composite"] else set(self.rewards)
        if "accuracy" in used:
            self.check_judge()
        if "semantic" in used:
            models.check_model_name(self.semantic_model, "embedder")


@dataclass
class RewardDesignParams(PictureSettings, RewardSettings, StageParams):
    """Notebook 02: score base-policy completions, meta-evaluate every answer check, probe for reward hacking."""

    dataset_dir: str = "01_synthesize_data/smoke/dataset"  # notebook 01's DatasetDict, relative to the outputs root
    policy_model: str = POLICY_MODEL  # base policy that writes the sample completions
    n_prompts: int = 12  # training questions to sample
    completions_per_prompt: int = 2  # sampled completions per question
    max_new_tokens: int = 64  # generation budget per completion
    temperature: float = 1.0  # sampling temperature (the RL rollout temperature)
    n_gold_pairs: int = 120  # held-out gold answer pairs (verifier test split) for calibration and judge checks
    verifier_test_pairs: int = 150  # held-out pairs for the verifier vs zero-shot vs cosine comparison (0: skip)

    def check(self) -> None:
        self.check_rewards()
        self.check_pixels()
        models.check_model_name(self.policy_model, "causal_lm")
        if self.n_prompts < 1 or self.completions_per_prompt < 1:
            raise ParamsError("parameters 'n_prompts' and 'completions_per_prompt' must be >= 1")
        if self.n_gold_pairs < 4:
            raise ParamsError("parameter 'n_gold_pairs' must be >= 4: calibration needs both labels")


@dataclass
class TrainParams(PictureSettings, RewardSettings, StageParams):
    """Notebook 03: format warm-up until the policy writes the contract, then group-relative RL on the composite."""

    dataset_dir: str = "01_synthesize_data/smoke/dataset"  # notebook 01's DatasetDict, relative to the outputs root
    policy_model: str = POLICY_MODEL  # offline alias, hub id or local path; a vision-language policy trains on images
    use_unsloth: bool = True  # on a CUDA GPU load through Unsloth (4-bit + LoRA); ignored on CPU
    load_in_4bit: bool = True  # Unsloth only: 4-bit base weights
    max_train_rows: int = 64  # RL prompts (after shuffling); the rest of the training split warms up the format
    max_answer_words: int = 12  # keep rows whose reference fits in this many words (0: all)
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling (alpha / r)
    lora_last_layers: int = 8  # CPU path: adapt only the top N layers (backprop stops there; 0: all layers)
    learning_rate: float = 1e-4  # CPU LoRA on a 135M model; paper: 1e-6 full fine-tuning, GPU LoRA ~5e-6
    lr_scheduler_type: str = "constant"  # transformers scheduler name (paper: constant)
    weight_decay: float = 0.01  # AdamW weight decay, as in the paper
    max_grad_norm: float = 1.0  # gradient clipping, as in the paper
    max_steps: int = 12  # optimizer steps (paper: ~200 steps of 512 prompts)
    num_generations: int = 4  # group size (paper: 5)
    per_device_train_batch_size: int = 8  # completions per micro-batch; x accumulation must divide by the group size
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    steps_per_generation: int = 0  # micro-batches one rollout batch feeds (0: gradient_accumulation_steps)
    num_iterations: int = 1  # updates per rollout batch (GRPO's mu): above 1 the clip ranges act
    max_completion_length: int = 40  # new tokens per completion
    temperature: float = 1.0  # rollout temperature (paper: 1.0)
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "grpo"  # TRL's loss variants
    importance_sampling_level: Literal["token", "sequence"] = "token"  # "token" (GRPO/DAPO) or "sequence" (GSPO)
    beta: float = 0.0  # KL weight (paper's GRPO: 1e-2); 0 after a warm-up: the PEFT reference is the pre-warm-up base
    epsilon: float = 0.2  # lower clip range
    epsilon_high: float = 0.28  # upper clip range (DAPO's clip-higher; equal to epsilon for symmetric clipping)
    group_filter: list[float] | None = None  # DAPO's dynamic filter: keep groups of mean reward strictly in (low, high)
    group_refill: int = 0  # DAPO's dynamic sampling: extra prompt batches a step may draw to replace dropped groups
    logging_steps: int = 1  # log rewards every N steps
    rollouts_every: int = 1  # write one group's completions as text to rollouts.jsonl every N steps (0: never)
    checkpoint_every: int = 0  # save a resumable checkpoint every N optimizer steps (0: none)
    validation_every: int = 0  # every N GRPO steps score greedy answers to held-out rows, keep the best (0: never)
    validation_rows: int = 16  # training rows held out of RL and warm-up for that validation
    keep_checkpoints: int = 2  # checkpoints kept on disk, the newest (save_total_limit; 0: all)
    resume: bool = False  # continue from the last checkpoint in output_dir (set by run --resume)
    shared_prefix: bool = True  # CPU: run each group's prompt once in rollouts and update (same numbers; false: TRL's)
    bf16: bool | None = None  # bf16 autocast over fp32 weights (None: on a GPU only; see training.loading.use_bf16)
    use_vllm: bool = False  # GPU: generate rollouts with vLLM (TRL's use_vllm)
    vllm_mode: Literal["colocate", "server"] = "colocate"  # vLLM in the trainer's process, or a trl vllm-serve server
    warmup_max_steps: int = 80  # format warm-up (cold-start SFT) steps at most; 0 skips it
    warmup_target_format: float = 0.9  # stop the warm-up once held-out prompts score this format reward
    warmup_check_every: int = 5  # warm-up steps between checks of the format reward
    warmup_check_prompts: int = 8  # held-out training prompts the check generates for (never trained on)
    warmup_learning_rate: float = 2e-3  # warm-up learning rate (LoRA only)
    warmup_batch_size: int = 8  # warm-up rows per step, apart from the RL batch (cpu_long: 16 doubled its 15 min)
    warmup_image_tags: Literal["random", "true"] = "random"  # image rows' tag in the warm-up: RL teaches it if random

    def check(self) -> None:
        self.check_rewards()
        self.check_pixels()
        models.check_model_name(self.policy_model, "causal_lm")
        if self.num_generations < 2:
            raise ParamsError("parameter 'num_generations' must be >= 2: advantages are relative to a group")
        steps_per_generation = self.steps_per_generation or self.gradient_accumulation_steps
        generation_batch = self.per_device_train_batch_size * steps_per_generation
        if generation_batch % self.num_generations:
            raise ParamsError(
                f"per_device_train_batch_size * steps_per_generation = {self.per_device_train_batch_size} * "
                f"{steps_per_generation} = {generation_batch} must be divisible by num_generations = "
                f"{self.num_generations}")
        if steps_per_generation % self.gradient_accumulation_steps:
            raise ParamsError(f"parameter 'steps_per_generation' = {self.steps_per_generation} must be a multiple of "
                              f"gradient_accumulation_steps = {self.gradient_accumulation_steps}")
        cycle = steps_per_generation // self.gradient_accumulation_steps * self.num_iterations
        if self.checkpoint_every and self.checkpoint_every % cycle:
            raise ParamsError(f"parameter 'checkpoint_every' = {self.checkpoint_every} must be a multiple of {cycle} "
                              f"optimizer steps (a rollout batch's updates), so a resumed run regenerates nothing")
        if self.group_filter is not None and not (
                len(self.group_filter) == 2 and 0 <= self.group_filter[0] < self.group_filter[1] <= 1):
            raise ParamsError(f"parameter 'group_filter' must be [low, high] with 0 <= low < high <= 1, got "
                              f"{self.group_filter}")
        if not 0 <= self.warmup_target_format <= 1 or self.warmup_check_every < 1 or self.max_answer_words < 0:
            raise ParamsError("parameters 'warmup_target_format' in [0, 1], 'warmup_check_every' >= 1, "
                              "'max_answer_words' >= 0")
        if self.group_refill < 0 or (self.group_refill and self.group_filter is None):
            raise ParamsError(f"parameter 'group_refill' = {self.group_refill} must be >= 0, and above 0 only with "
                              f"'group_filter' (it replaces the groups the filter drops)")
        if self.validation_every < 0 or self.validation_rows < 1:
            raise ParamsError(f"parameters 'validation_every' (>= 0, got {self.validation_every}) and "
                              f"'validation_rows' (>= 1, got {self.validation_rows})")
        if self.keep_checkpoints < 0:
            raise ParamsError(f"parameter 'keep_checkpoints' must be >= 0 (0: keep all), got {self.keep_checkpoints}")
        if self.rollouts_every < 0:
            raise ParamsError(f"parameter 'rollouts_every' must be >= 0 (0: no rollouts.jsonl), got "
                              f"{self.rollouts_every}")
        if self.warmup_batch_size < 1:
            raise ParamsError(f"parameter 'warmup_batch_size' must be >= 1, got {self.warmup_batch_size}")


@dataclass
class EvalParams(PictureSettings, RewardSettings, StageParams):
    """Notebook 04: candidates answer benchmark tasks; a reference-based judge grades the final answers. The reward
    settings score the same responses with notebook 03's training reward (``evaluation.reward_report``)."""

    dataset_dir: str = "01_synthesize_data/smoke/dataset"  # notebook 01's DatasetDict (the synthetic_* tasks' source)
    tasks: list[str] = field(default_factory=lambda: ["synthetic_text", "synthetic_image"])  # benchmarks.TASKS names
    task_sources: dict[str, str] = field(default_factory=dict)  # task -> local copy in its published layout
    policy_model: str = POLICY_MODEL  # base policy: offline alias, hub id or local path
    candidates: dict[str, str] = field(default_factory=lambda: dict(SMOKE_CANDIDATES))  # name -> notebook 03 adapter
    max_eval_rows: int = 24  # rows per task (0: all)
    max_new_tokens: int = 64  # generation budget per answer (paper: 2048)
    batch_size: int = 8  # generation batch size
    system_prompt: bool = True  # the output-contract system prompt; the paper's protocol gives none (gpu: false)
    with_choices: bool = True  # append "Choices: A. ..." to MCQ-origin items, as the paper does
    judge_rounds: int = 1  # rounds of a majority vote (paper: 3); needs independent rounds, see check()
    replace_changed: bool = True  # a candidate retrained since the store saw it is evaluated afresh; false: refuse
    judge_temperature: float = 0.0  # HTTP judges: rounds sampled at this temperature, seeded by round
    extra_judge_models: list[str] = field(default_factory=list)  # more judges for the majority (same backend)
    compare: list[list[str]] = field(default_factory=lambda: [["warmup", "grpo"], ["base", "grpo"]])  # paired CIs
    n_bootstrap: int = 2000  # bootstrap resamples for every confidence interval
    gallery_rows: int = 4  # held-out rows per task shown in full as every candidate answered them (first by item id)
    judge_show_question: bool | Literal["auto"] = "auto"  # auto: an LLM judge sees it (paper), a verifier never
    image_control: Literal[IMAGE_CONTROLS] = "blank"  # image rows asked again: picture grey (blank), swapped (shuffled)

    def check(self) -> None:
        from medix_lib import benchmarks

        models.check_model_name(self.policy_model, "causal_lm")
        self.check_rewards()
        self.check_judge()
        self.check_pixels()
        for task in [*self.tasks, *self.task_sources]:
            try:
                benchmarks.get_task(task)
            except KeyError as err:
                raise ParamsError(f"parameter 'tasks': {err.args[0]}") from None
        if not self.candidates:
            raise ParamsError("parameter 'candidates' needs at least one model, e.g. {'base': ''}")
        for pair in self.compare:
            if len(pair) != 2 or not set(pair) <= set(self.candidates):
                raise ParamsError(f"parameter 'compare': {pair} must name two of the candidates "
                                  f"{', '.join(self.candidates)}")
        if self.max_eval_rows < 0 or self.n_bootstrap < 100 or self.judge_rounds < 1 or self.gallery_rows < 0:
            raise ParamsError("parameters 'max_eval_rows' >= 0, 'n_bootstrap' >= 100, 'judge_rounds' >= 1 and "
                              "'gallery_rows' >= 0")
        if self.judge_rounds > 1 and not self.extra_judge_models and not (
                self.judge_backend == "openai" and self.judge_temperature > 0):
            raise ParamsError("parameter 'judge_rounds' > 1 needs independent rounds: 'extra_judge_models', or an "
                              "HTTP judge ('judge_backend: openai') sampled at 'judge_temperature' > 0; rounds of one "
                              "judge at temperature 0 repeat the same verdict")

    def judges(self) -> list[Judge]:
        """The judges of the majority vote, one per round (the evaluation prompt; the machine's verdict cache)."""
        import dataclasses

        first = self.judge(EVAL_QUESTION_TEMPLATE if self.shows_question() else EVAL_TEMPLATE)
        if self.extra_judge_models:
            return [first, *(dataclasses.replace(first, model=m) for m in self.extra_judge_models)]
        if self.judge_rounds > 1:
            return [dataclasses.replace(first, backend_options={"temperature": self.judge_temperature, "seed": r})
                    for r in range(self.judge_rounds)]
        return [first]

    def protocol(self):
        from medix_lib.evaluation import Protocol

        return Protocol(self.contract(), self.system_prompt, self.with_choices, self.max_new_tokens, self.batch_size,
                        self.answer_guards, self.seed, self.image_control, self.image_min_pixels,
                        self.image_max_pixels)

    def task_rows(self) -> dict:
        """Task name -> a function returning its rows (loaded only when the task is run)."""
        from medix_lib import benchmarks

        def rows_of(task):
            source = self.task_sources.get(task) or (str(self.upstream(self.dataset_dir))
                                                     if task.startswith("synthetic_") else None)
            return lambda: list(benchmarks.load_task(task, source, limit=self.max_eval_rows or None))

        return {task: rows_of(task) for task in self.tasks}

    def candidate_list(self):
        """The candidates, with their adapters resolved against the outputs root; a missing one fails by name."""
        from medix_lib.evaluation import Candidate

        out = []
        for name, path in self.candidates.items():
            adapter = str(self.upstream(path)) if path else None
            if adapter and not (self.upstream(path) / "adapter_config.json").exists():
                raise FileNotFoundError(f"candidate {name!r}: no adapter at {self.relative(adapter)} "
                                        f"(run notebook 03 first, or remove it from 'candidates')")
            out.append(Candidate(name, self.policy_model, adapter))
        return out


STAGE_PARAMS: dict[str, type[StageParams]] = {
    "01_synthesize_data": SynthesisParams,
    "02_design_rewards": RewardDesignParams,
    "03_train_grpo": TrainParams,
    "04_evaluate_with_judge": EvalParams,
}


def params_class(stage: str) -> type[StageParams]:
    return STAGE_PARAMS[config.stage_name(stage)]


def defaults(stage: str) -> dict:
    """Every parameter of a stage with its default (what the notebook's parameters cell mirrors)."""
    return params_class(stage)().to_dict()


def build(stage: str, values: dict) -> StageParams:
    """Validate ``values`` (a notebook namespace or a merged dict) into the stage's dataclass; unknown keys in a
    namespace are ignored (a notebook's globals hold more than its parameters)."""
    cls = params_class(stage)
    names = [f.name for f in fields(cls)]
    if values.get("output_dir") and not Path(values["output_dir"]).is_absolute():
        # A notebook opened in JupyterLab runs in notebooks/; outputs still belong under the repository root.
        values = {**values, "output_dir": str(config.REPO_ROOT / values["output_dir"])}
    return cls(**{n: values[n] for n in names if n in values})


def from_notebook(stage: str, namespace: dict) -> StageParams:
    """Used in each notebook's validation cell: ``cfg = params.from_notebook("03", globals())``. Also quiets the
    kernel's libraries (:func:`medix_lib.progress.quiet_libraries`) before the first of them loads."""
    progress.quiet_libraries()
    return build(stage, namespace)


def load(stage: str, variant: str, output_dir: str | Path | None = None,
         overrides: dict | None = None) -> StageParams:
    """The stage's defaults, then ``params/<stage>/<variant>.yaml``, then ``overrides`` (``--set``), validated.
    Unknown keys fail here, naming the file and the valid keys, before anything is loaded."""
    stage = config.stage_name(stage)
    path = config.params_path(stage, variant)
    from_file = config.yaml_value(yaml.safe_load(path.read_text()) or {})
    if not isinstance(from_file, dict):
        raise ParamsError(f"{config.shown(path)} must be a mapping of parameter: value")
    valid = sorted(f.name for f in fields(params_class(stage)) if f.name not in config.RUNNER_KEYS)
    for source, keys in ((config.shown(path), from_file), ("--set", overrides or {})):
        for key in keys:
            if key not in valid:
                raise ParamsError(f"{source}: unknown parameter {key!r} for {stage}; valid: {', '.join(valid)}")
    merged = {**from_file, **(overrides or {}), "variant": variant,
              "output_dir": str(output_dir or config.OUTPUTS_DIR / stage / variant)}
    try:
        return build(stage, merged)
    except ParamsError as err:
        raise ParamsError(f"{config.shown(path)}: {err}") from None


def _field_comments(cls: type) -> dict[str, str]:
    """Each field's trailing ``# comment`` in the source of ``cls`` and its bases: the text of the parameters cell."""
    import inspect
    import io
    import tokenize

    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        tokens = list(tokenize.generate_tokens(io.StringIO(inspect.getsource(klass)).readline))
        for i, tok in enumerate(tokens):
            if tok.type == tokenize.COMMENT and tokens[i - 1].start[0] == tok.start[0]:
                line = tok.line.strip()
                name = line.split(":", 1)[0].strip()
                if name.isidentifier() and name in {f.name for f in fields(klass)}:
                    comments[name] = tok.string.lstrip("# ").strip()
    return comments


def parameters_cell(stage: str) -> str:
    """The ``parameters`` cell a stage's notebook carries: every default of its dataclass with its comment."""
    cls = params_class(stage)
    comments = _field_comments(cls)
    values = cls().to_dict()
    values["output_dir"] = f"outputs/{config.stage_name(stage)}/{values['variant']}"
    missing = [name for name in values if name not in comments]
    if missing:
        raise ValueError(f"{cls.__name__}: give these fields a comment: {missing}")
    unparsable = [name for name, text in comments.items() if "=" in text]
    if unparsable:  # papermill reads a parameters line up to its first "=" after the value: it would drop these
        raise ValueError(f"{cls.__name__}: no '=' in the comments of {unparsable}")
    return "\n".join(f"{name} = {value!r}  # {comments[name]}" for name, value in values.items())
