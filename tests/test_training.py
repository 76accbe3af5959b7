"""The format warm-up makes the output contract reachable, which is what gives GRPO a non-zero advantage."""

import datasets
import pytest

from medix_lib import params, policy, training
from medix_lib.contract import OutputContract
from medix_lib.data import to_grpo

ROWS = [
    ("What is the lay term for myocardial infarction?", "heart attack"),
    ("What is the lay term for epistaxis?", "nosebleed"),
    ("What is the lay term for pruritus?", "itching"),
    ("What is the lay term for syncope?", "fainting"),
    ("What is the lay term for cephalalgia?", "headache"),
    ("What is the lay term for pyrexia?", "fever"),
]


@pytest.mark.slow
def test_format_warmup_teaches_the_contract(tmp_path):
    cfg = params.load("03", "smoke", tmp_path / "03_train_grpo" / "t",
                      {"warmup_steps": 16, "warmup_learning_rate": 2e-3, "per_device_train_batch_size": 4,
                       "num_generations": 4})
    contract = OutputContract()
    rows = to_grpo(datasets.Dataset.from_list([
        {"id": str(i), "question": q, "answer": a, "modality": "OTHER", "task_type": "open"}
        for i, (q, a) in enumerate(ROWS)]), contract)
    model, tokenizer = training._load_plain(cfg, use_gpu=False)
    before = policy.generate(policy.Policy(model, tokenizer, False), rows["prompt"], max_new_tokens=40,
                             progress=False)
    losses = training.format_warmup(model, tokenizer, rows, cfg, progress=False)
    after = policy.generate(policy.Policy(model, tokenizer, False), rows["prompt"], max_new_tokens=40,
                            progress=False)
    assert len(losses) == 16 and losses[-1] < losses[0] / 2

    def tagged(completions):  # completions that open with the modality tag the contract asks for
        return sum(contract.parse(c[0]).modality == "OTHER" for c in completions)

    # The base model never opens with the tag; after the warm-up most completions do - enough for GRPO's groups to
    # differ in reward, which is all the warm-up is for.
    assert tagged(before) == 0
    assert tagged(after) >= len(ROWS) // 2, after
