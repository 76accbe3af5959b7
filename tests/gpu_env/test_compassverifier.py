"""CompassVerifier through the local backend, end to end at tiny size: a random Qwen2 model (its architecture) saved as
``CompassVerifier-3B``, which name selects its prompt, with its head set so that it answers chosen letters for chosen
items. The judge must carry each prompt through the prefix cache and the padded batches to those letters' P(A), the
verdicts and the count of invalid answers. Tiny and fast: it runs in every venv (``any_env``)."""

import pytest
import torch

from medix_lib.judge import EVAL_QUESTION_TEMPLATE, TEMPLATES, Judge, JudgeItem, encode_prompt
from medix_lib.judge.letters import LETTERS, letter_token_ids
from tests.gpu_env.tiny import build_letter_judge

pytestmark = pytest.mark.any_env

TEMPLATE = TEMPLATES["compassverifier-v1"]
# item -> the letter the tiny verifier is made to answer: correct, incorrect, truncated, a refusal
ANSWERS = {JudgeItem("myocardial infarction", "a heart attack", "What is the diagnosis?"): "A",
           JudgeItem("asthma", "COPD", "Which airway disease is this?"): "B",
           JudgeItem("left lower lobe pneumonia", "left lower lo", "Where is the consolidation?"): "C",
           JudgeItem("gout", "I cannot answer that.", "What causes this joint pain?"): "C"}


def _prompt_ids(tokenizer, item: JudgeItem) -> list[int]:
    prefix, tail = encode_prompt(tokenizer, TEMPLATE.messages(item, True))
    return prefix + tail


@pytest.fixture(scope="module")
def verifier(tmp_path_factory):
    """The tiny verifier's folder. Its head's letter rows are solved (least squares over the items' last hidden
    states) so that each item's letter logits are +8 for its answer and -8 for the other two letters."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_letter_judge(tmp_path_factory.mktemp("verifier") / "CompassVerifier-3B")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        hidden = torch.stack([model.model(input_ids=torch.tensor([_prompt_ids(tokenizer, item)]))
                              .last_hidden_state[0, -1] for item in ANSWERS])
        wanted = torch.tensor([[8.0 if letter == answer else -8.0 for letter in LETTERS]
                               for answer in ANSWERS.values()])
        rows = torch.linalg.lstsq(hidden, wanted).solution.T
        for row, ids in zip(rows, letter_token_ids(tokenizer)):
            model.lm_head.weight[ids] = row
    model.save_pretrained(folder)
    return folder


def test_its_prompt_renders_as_the_releases_lone_user_message(verifier):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(verifier)
    messages = TEMPLATE.messages(next(iter(ANSWERS)), True)

    def render(conversation):
        return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    assert render(messages) == render(messages[1:])  # the system prompt is the one Qwen2.5 gives a lone user turn


def test_a_local_verifier_carries_each_prompt_to_its_letters_and_verdict(verifier):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # an evaluation judge as notebook 04 makes one; batches of two rows, 8-token buckets: pads and several batches
    judge = Judge(backend="transformers", model=str(verifier), template=EVAL_QUESTION_TEMPLATE, show_question=True,
                  terminology=False, threshold=0.5,
                  backend_options={"device": "cpu", "dtype": "float32", "batch_size": 2, "width_step": 8})
    assert judge.describe()["template"] == "compassverifier-v1"  # the folder's name selects its prompt
    verdicts = judge(list(ANSWERS))
    assert [v.label for v in verdicts] == [answer == "A" for answer in ANSWERS.values()]
    assert all(v.error is None and v.rule is None for v in verdicts)
    assert verdicts[0].p_yes > 0.99 and max(v.p_yes for v in verdicts[1:]) < 0.01
    assert judge.last_stats.model_calls == 4 and judge.last_stats.invalid == 2
    # P(A) as an independent reckoning has it: one plain forward of the whole prompt, the letters' full-softmax mass
    tokenizer = AutoTokenizer.from_pretrained(verifier)
    model = AutoModelForCausalLM.from_pretrained(verifier, dtype=torch.float32).eval()
    for item, verdict in zip(ANSWERS, verdicts):
        with torch.no_grad():
            probs = model(input_ids=torch.tensor([_prompt_ids(tokenizer, item)])).logits[0, -1].softmax(-1)
        mass = torch.stack([probs[ids].sum() for ids in letter_token_ids(tokenizer)])
        assert verdict.p_yes == pytest.approx((mass[0] / mass.sum()).item(), abs=1e-4)
