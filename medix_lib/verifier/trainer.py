"""Training the verifier: a low-rank adapter on SmolLM2's middle layers, trained to say YES/NO on gold pairs with
exactly the judge's prompt and P(YES) rule, shipped as a small weight file (:mod:`medix_lib.artifacts`).

Deterministic and resumable: the work is bounded by a pair count, never by a clock; the order of batches and
prompts is fixed by the seed; a checkpoint every ``checkpoint_every`` batches lets an interrupted run continue where
it stopped (same config) instead of starting over, and nothing is shipped until the run is complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from medix_lib import artifacts, judge, models
from medix_lib.verifier.pairs import (PAIR_TYPES, PAIRS_VERSION, Pair, PairConfig, build_pairs, clinical_pairs,
                                      pair_counts)

def answer_ids(tokenizer) -> tuple[int, int]:
    """The training targets: the first casing whose YES and NO forms are both single tokens the backend pools
    (SmolLM2 splits "YES" into "Y"+"ES", so it learns "Yes"/"No").

    >>> from medix_lib import models
    >>> tok = models.load_tokenizer("smollm2-135m-instruct")
    >>> [tok.decode([i]) for i in answer_ids(tok)]
    ['Yes', 'No']
    """
    yes_ids, no_ids = judge.yes_no_token_ids(tokenizer)
    for yes, no in (("YES", "NO"), ("Yes", "No"), ("yes", "no")):
        y, n = (tokenizer.encode(w, add_special_tokens=False) for w in (yes, no))
        if len(y) == len(n) == 1 and y[0] in yes_ids and n[0] in no_ids:
            return y[0], n[0]
    raise ValueError(f"tokenizer {type(tokenizer).__name__} has no single-token YES/NO pair the judge pools")


def prompt_ids(tokenizer, item: judge.JudgeItem, template: str,
               show_question: bool = False) -> tuple[list[int], list[int]]:
    """(template prefix, item part) token ids exactly as the transformers backend builds them."""
    return judge.encode_prompt(tokenizer, judge.TEMPLATES[template].messages(item, show_question))


def score(model_name: str, items: list[judge.JudgeItem], template: str = judge.REWARD_TEMPLATE,
          batch_size: int = judge.TransformersJudge.BATCH_SIZE, progress: bool = False, device: str = "auto",
          dtype: str = "auto") -> list[float]:
    """P(YES) per item from the transformers judge backend (no rules, no cache): what the rewards see.
    ``model_name`` is anything ``models.load_causal_lm`` takes (alias, path, hub id)."""
    backend = judge.TransformersJudge(model_name, batch_size=batch_size, device=device, dtype=dtype)
    return backend.p_yes([judge.TEMPLATES[template].messages(it, False) for it in items], progress=progress)


def _auc(labels: list[bool], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else None


ARTIFACT = "medix-verifier-135m"  # the smoke preset's artifact (medix_lib/assets/medix-verifier-135m)
# The offline judge as shipped: the smoke and gemma presets' verifiers, their YES-NO margins averaged (combine())
JUDGE = "medix-verifier"
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class VerifierConfig:
    base_model: str = "smollm2-135m-instruct"
    pairs: PairConfig = field(default_factory=PairConfig)
    # One drawn per training batch (a batch shares its prompt's prefix): both judge prompts work.
    templates: tuple[str, ...] = (judge.REWARD_TEMPLATE, judge.EVAL_TEMPLATE)
    max_pairs: int = 12000  # training pairs seen (the training split, oversampled and repeated as needed)
    batch_size: int = 16
    learning_rate: float = 1e-3
    vocab_loss_weight: float = 0.1
    balance_classes: bool = True  # weight YES pairs by #NO/#YES so P(YES) = 0.5 stays a sensible default threshold
    # Extra copies of a pair type's training pairs, for the types that are hardest to learn.
    oversample: tuple[tuple[str, int], ...] = ()
    warmup_steps: int = 20
    lr_schedule: str = "linear"  # after warm-up: "linear" decay to 0 over max_pairs, or "constant"
    keep_layers: int | None = 20  # keep only the bottom N decoder layers of the base (None: all): N/30 the cost
    train_layers: tuple[int, int] = (10, 20)  # [first, last) decoder layers that get the low-rank adapter
    lora_rank: int = 32  # rank of the adapter on every linear map of the trained layers
    lora_alpha: float = 64.0
    # Rank of what ships: each trained delta B @ A truncated by SVD. Measured on the rank-32 adapter: rank 16 (3.3 MB)
    # and 8 (1.65 MB) keep validation AUC 0.975 and 0.974 (0.975 at 32, 6.5 MB) and clinical AUC 0.817 / 0.819.
    ship_rank: int = 8
    # bf16 autocast (weights stay fp32): None uses it on GPUs and CPUs with native bf16 (AVX512-BF16, AMX), where it
    # is faster; emulated bf16 trained at 5.2 pairs/s where fp32 ran 13.3 (2 Xeon cores without it).
    bf16: bool | None = None
    val_pairs: int = 440  # validation pairs scored after training (threshold + recorded AUC)
    seed: int = 0
    device: str = "auto"
    # Intra-op CPU threads (fixed: float results depend on how a reduction is split between threads, so the thread
    # count is part of what makes a rerun bit-identical).
    threads: int = 2
    checkpoint_every: int = 100  # batches between resumable checkpoints

    def key(self) -> str:
        """Hash of everything that changes the trained weights (not the device or checkpoint interval).

        >>> VerifierConfig().key() == VerifierConfig(device="cpu", checkpoint_every=10).key()
        True
        """
        payload = {k: v for k, v in asdict(self).items() if k not in ("device", "checkpoint_every")}
        payload["pairs_version"] = PAIRS_VERSION
        payload["prompt_encoding"] = "prefix-split"  # judge.encode_prompt: template prefix and item tokenised apart
        payload["templates_hash"] = [judge.TEMPLATES[t].hash for t in self.templates]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# The shipped offline judge's first verifier: the bottom 20 of SmolLM2-135M's 30 layers with a rank-32 adapter on
# layers 10-19. (Measured with full fine-tuning at 3,000 pairs: training the middle of the truncated stack reached
# validation AUC 0.945 where the top 10 of all 30 layers reached 0.72, and judging is 1.6x faster.)
_SMOKE = VerifierConfig(pairs=PairConfig(per_type=(1500, 40, 60)), max_pairs=12000,
                        oversample=(("sibling", 2), ("parent-child", 3), ("synonym", 2), ("synonym-synonym", 2),
                                    ("organ-swap", 2), ("cross-negation", 2)))

PRESETS: dict[str, VerifierConfig] = {
    "smoke": _SMOKE,
    # The same recipe on a second base, Gemma-3-270M (18 layers, all kept; the adapter on the top half). Alone it is
    # a weaker verifier than the smoke preset's (validation AUC 0.875 vs 0.965, clinical 0.77 vs 0.82), but its
    # errors differ: averaged with it, the judge's clinical AUC rises above either (outputs/verifier/).
    "gemma": replace(_SMOKE, base_model="gemma3-270m", keep_layers=None, train_layers=(9, 18)),
    # Sized for the test suite: the same code path on 400 pairs (about a minute on 2 cores).
    "ci": VerifierConfig(pairs=PairConfig(per_type=(200, 12, 30)), max_pairs=400, val_pairs=132,
                         checkpoint_every=10),
    # One GPU: a larger base of the same family (same tokenizer and YES/NO tokens), all layers, many more pairs.
    "gpu": VerifierConfig(base_model="HuggingFaceTB/SmolLM2-1.7B-Instruct", pairs=PairConfig(per_type=(6000, 100, 200)),
                          max_pairs=120000, batch_size=32, learning_rate=2e-4, keep_layers=None,
                          train_layers=(0, 24), val_pairs=1000, threads=16),
}

# Where each preset's run ships by default (the ci preset is for tests: it writes where it is told)
PRESET_ARTIFACTS = {"smoke": ARTIFACT, "gemma": "medix-verifier-270m"}


def preset(name: str) -> VerifierConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown verifier preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def best_threshold(labels: list[bool], scores: list[float]) -> float:
    """The P(YES) cut that maximises balanced accuracy (Youden's J) on these labels.

    >>> best_threshold([False, False, True, True], [0.1, 0.3, 0.6, 0.9])
    0.6
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(labels, scores)
    i = max(range(len(thr)), key=lambda j: (tpr[j] - fpr[j], -abs(thr[j] - 0.5)))
    return float(min(1.0, thr[i]))


def length_batches(lengths: list[int], batch_size: int, rng: random.Random, window: int = 64) -> list[list[int]]:
    """Row indices in batches of similar length, in random order: rows are sorted by length within windows of
    ``window`` batches, so a batch pads to its own longest row rather than to the longest of a random draw (a third of
    the tokens of random batches of judge pairs were padding), and the order of batches stays shuffled.

    >>> sorted(length_batches([5, 1, 4, 2, 3, 6], batch_size=2, rng=random.Random(0)))
    [[0, 5], [1, 3], [4, 2]]
    """
    span = batch_size * window
    batches = []
    for start in range(0, len(lengths), span):
        rows = sorted(range(start, min(start + span, len(lengths))), key=lengths.__getitem__)
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    rng.shuffle(batches)
    return batches


def _pairs_hash(pairs: list[Pair]) -> str:
    return hashlib.sha256(json.dumps([[p.reference, p.prediction, p.label, p.kind] for p in pairs]).encode()
                          ).hexdigest()[:16]


def _adapter(model, cfg: VerifierConfig):
    """The model with a LoRA adapter on every linear map of the trained layers and a trainable final norm."""
    from peft import LoraConfig, get_peft_model

    first, last = cfg.train_layers
    if not 0 <= first < last <= len(model.model.layers):
        raise ValueError(f"train_layers={cfg.train_layers} must lie in 0..{len(model.model.layers)}")
    peft_model = get_peft_model(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                  target_modules=list(LORA_MODULES),
                                                  layers_to_transform=list(range(first, last))))
    model.model.norm.weight.requires_grad_(True)  # the truncated stack's last layer feeds the final norm
    return peft_model


def delta_tensors(peft_model, rank: int) -> dict:
    """What ships: each adapted weight's delta ``B @ A`` (scaling folded in) truncated to ``rank`` by SVD, as
    ``lora_A`` (rank x in) and ``lora_B`` (out x rank), and the final norm."""
    import torch
    from peft.tuners.lora import Linear as LoraLinear

    tensors = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLinear):
            target = name.removeprefix("base_model.model.") + ".weight"
            delta = (module.lora_B["default"].weight.detach().float() * module.scaling["default"]) \
                @ module.lora_A["default"].weight.detach().float()
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            tensors[target + ".lora_A"] = (s[:rank, None] * vh[:rank]).contiguous()
            tensors[target + ".lora_B"] = u[:, :rank].contiguous()
    tensors["model.norm.weight"] = peft_model.base_model.model.model.norm.weight.detach().float()
    return tensors


def checkpoint_path(cfg: VerifierConfig, output: Path) -> Path:
    """Where a run of ``cfg`` writing to ``output`` keeps its resumable state (outside the repository)."""
    where = hashlib.sha256(str(Path(output).resolve()).encode()).hexdigest()[:8]
    return models.cache_dir() / "verifier-runs" / f"{cfg.key()}-{where}" / "checkpoint.pt"


def train(cfg: VerifierConfig | str = "smoke", output: Path | None = None, progress: bool = True) -> dict:
    """Train the verifier for ``cfg`` (a config or preset name) and write it as a shipped artifact to ``output``
    (default: the preset's folder under ``medix_lib/assets/``, :data:`PRESET_ARTIFACTS`); returns its record.

    Loss on the answer token only, after the judge's exact prompt (completion-only: nothing is spent learning to
    reproduce prompts): cross-entropy of YES vs NO as the backend pools them, plus ``vocab_loss_weight`` times the
    full-vocabulary cross-entropy of the "Yes"/"No" token. The record's validation figures are measured on the
    artifact as shipped (bf16 factors, assembled over the base), scored in fp32 by the unchanged judge backend.
    """
    import torch

    name = PRESET_ARTIFACTS.get(cfg, ARTIFACT) if isinstance(cfg, str) else ARTIFACT
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, Path(output) if output else artifacts.directory(name), progress, name)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: VerifierConfig, output: Path, progress: bool, name: str = ARTIFACT) -> dict:
    import torch
    from medix_lib.progress import bar as progress_bar
    from transformers import AutoModelForCausalLM

    if cfg.lr_schedule not in ("linear", "constant"):
        raise ValueError(f"lr_schedule={cfg.lr_schedule!r}; valid: linear, constant")
    copies = dict(cfg.oversample)
    unknown = set(copies) - set(PAIR_TYPES)
    if unknown:
        raise ValueError(f"oversample names unknown pair types {sorted(unknown)}; valid: {', '.join(PAIR_TYPES)}")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    splits = build_pairs(cfg.pairs)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    autocast = cfg.bf16 if cfg.bf16 is not None else models.inference_dtype(device) == torch.bfloat16
    tokenizer = models.load_tokenizer(cfg.base_model)
    base = AutoModelForCausalLM.from_pretrained(models.resolve_path(cfg.base_model), dtype=torch.float32).to(device)
    if cfg.keep_layers is not None:
        models.truncate(base, cfg.keep_layers)
    model = _adapter(base, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=0.01)
    yes_id, no_id = answer_ids(tokenizer)
    yes_ids, no_ids = judge.yes_no_token_ids(tokenizer)

    train_pairs = [p for p in splits["train"] for _ in range(copies.get(p.kind, 1))]
    rng.shuffle(train_pairs)
    train_pairs = (train_pairs * math.ceil(cfg.max_pairs / max(1, len(train_pairs))))[:cfg.max_pairs]
    n_yes = sum(p.label for p in train_pairs)
    pos_weight = torch.tensor((len(train_pairs) - n_yes) / max(1, n_yes) if cfg.balance_classes else 1.0,
                              device=device)
    lengths = [len(ids) for ids in tokenizer([f"{p.reference} {p.prediction}" for p in train_pairs],
                                              add_special_tokens=False)["input_ids"]]
    batches = length_batches(lengths, cfg.batch_size, rng)
    templates = [rng.choice(cfg.templates) for _ in batches]  # fixed up front, so a resumed run draws the same
    steps = len(batches)
    decay = (lambda s: max(0.0, 1 - s / steps)) if cfg.lr_schedule == "linear" else (lambda s: 1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * decay(s))

    checkpoint = checkpoint_path(cfg, output)
    done, losses, seconds = 0, [], 0.0
    if checkpoint.is_file():  # an interrupted run of this very config: continue it
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        done, losses, seconds = state["done"], state["losses"], state["seconds"]
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = progress_bar(total=steps, initial=done, desc="train verifier", unit="batch", progress=progress)
    for step in range(done, steps):
        batch = [train_pairs[i] for i in batches[step]]
        seqs = [prompt_ids(tokenizer, p.item(), templates[step]) for p in batch]
        prefix = seqs[0][0]  # one template per batch: the same prefix for every pair
        target = torch.tensor([yes_id if p.label else no_id for p in batch], device=device)
        label = torch.tensor([float(p.label) for p in batch], device=device)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            # the prefix runs through the layers being trained, so it is recomputed (with gradients) every batch
            logits = judge.next_token_logits(model, [tail for _, tail in seqs], len(prefix),
                                             judge.prefix_cache(model, prefix), tokenizer.pad_token_id or 0).float()
        # The judge reads only the YES-vs-NO margin, so that is the main loss (cross-entropy over the answer
        # tokens); a little full-vocabulary cross-entropy keeps "Yes"/"No" the generated reply for text backends.
        margin = torch.logsumexp(logits[:, yes_ids], -1) - torch.logsumexp(logits[:, no_ids], -1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(margin, label, pos_weight=pos_weight) \
            + cfg.vocab_loss_weight * torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            trained = {k: v for k, v in model.state_dict().items() if "lora_" in k or k.endswith("model.norm.weight")}
            torch.save({"model": trained, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "done": step + 1, "losses": losses, "seconds": seconds + time.perf_counter() - start},
                       checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
    bar.close()
    train_seconds, train_cpu_seconds = seconds + time.perf_counter() - start, time.process_time() - cpu_start
    tensors = delta_tensors(model, cfg.ship_rank)
    del model, base

    val = splits["validation"][:cfg.val_pairs]
    record = {
        "name": name, "base_model": cfg.base_model, "keep_layers": cfg.keep_layers, "config_key": cfg.key(),
        "config": asdict(cfg), "pairs_version": PAIRS_VERSION, "pair_counts": pair_counts(splits),
        "train_pairs_hash": _pairs_hash(splits["train"]), "validation_pairs_hash": _pairs_hash(val),
        "steps": steps, "train_pairs_seen": len(train_pairs), "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1), "loss_first20": sum(losses[:20]) / max(1, len(losses[:20])),
        "loss_last20": sum(losses[-20:]) / max(1, len(losses[-20:])), "seed": cfg.seed,
        "code_commit": artifacts.git_commit(), "machine": {"cpu_count": os.cpu_count(), "device": device,
                                                           "torch_threads": cfg.threads, "bf16_autocast": autocast},
    }
    # Measure the artifact exactly as it ships: bf16 factors over the base, scored in fp32.
    with tempfile.TemporaryDirectory(prefix="medix-verifier-") as scratch:
        staged = artifacts.save(Path(scratch) / "artifact", tensors, record)
        tensors_bf16, _ = artifacts.load_tensors(staged)
        checkpoint_dir = models.assemble(cfg.base_model, cfg.keep_layers, tensors_bf16, Path(scratch) / "model")
        val_scores = score(str(checkpoint_dir), [p.item() for p in val], progress=progress, device=device,
                           dtype="float32")
        clinical = clinical_pairs()
        clinical_scores = score(str(checkpoint_dir), [p.item() for p in clinical], progress=progress, device=device,
                                dtype="float32")
    labels = [p.label for p in val]
    record["threshold"] = best_threshold(labels, val_scores)
    record["validation"] = {"n": len(val), "auc": _auc(labels, val_scores), "threshold": record["threshold"]}
    record["clinical_heldout"] = clinical_summary(clinical, clinical_scores)
    validation_rows = "".join(json.dumps({"reference": p.reference, "prediction": p.prediction, "label": p.label,
                                          "kind": p.kind, "p_yes": round(x, 6)}) + "\n"
                              for p, x in zip(val, val_scores))
    artifacts.save(output, tensors, record, {"validation.jsonl": validation_rows})
    checkpoint.unlink(missing_ok=True)
    return record


def clinical_summary(pairs: list[Pair], scores: list[float]) -> dict:
    """AUC on the hand-written held-out clinical pairs, overall and per class (each class has both labels)."""
    classes = sorted({p.kind for p in pairs})
    per_class = {c.removeprefix("clinical/"): _auc([p.label for p in pairs if p.kind == c],
                                                   [s for p, s in zip(pairs, scores) if p.kind == c]) for c in classes}
    return {"n": len(pairs), "auc": _auc([p.label for p in pairs], scores), "per_class_auc": per_class}
