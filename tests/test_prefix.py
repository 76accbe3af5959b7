"""A group's prompt computed once (training/prefix.py) gives what TRL's way gives: the same sampled tokens, the same
per-token log-probabilities and gradients, and through the trainer the same rewards and adapter; and it is used."""

import pytest
import torch

from medix_lib.training import prefix


def _tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, eos_token_id=1,
                                        pad_token_id=0)).eval()


def _group_batch():
    """Two prompts of different lengths (left-padded), three completions each, right-padded after an EOS."""
    prompts = [[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]]
    prompt_mask = [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    completions = [[20, 21, 22, 1], [23, 1, 0, 0], [24, 25, 26, 27], [30, 31, 1, 0], [32, 33, 34, 35],
                   [36, 1, 0, 0]]
    completion_mask = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
    rows = [0, 0, 0, 1, 1, 1]
    ids = torch.tensor([prompts[r] + c for r, c in zip(rows, completions)])
    mask = torch.tensor([prompt_mask[r] + m for r, m in zip(rows, completion_mask)])
    return ids, mask, torch.tensor(completion_mask).bool()


def test_each_distinct_prompt_is_found_once_pictures_included():
    ids = torch.tensor([[0, 5, 6], [4, 5, 6], [0, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]])
    first, inverse = prefix.distinct_rows(ids, mask)
    assert first.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2]
    pixels = torch.zeros(4, 3, 2, 2)
    pixels[2] += 1  # the same question about another picture is another prompt
    first, inverse = prefix.distinct_rows(ids, mask, pixels)
    assert first.tolist() == [0, 1, 2, 3] and inverse.tolist() == [0, 1, 2, 3]


def test_update_logps_and_gradients_match_the_full_forward():
    model = _tiny_llama()
    ids, mask, completion_mask = _group_batch()
    keep, temperature = completion_mask.size(1), 0.7
    logits = model(input_ids=ids, attention_mask=mask).logits[:, -keep - 1:-1] / temperature
    full = logits.log_softmax(-1).gather(-1, ids[:, -keep:].unsqueeze(-1)).squeeze(-1)
    full[completion_mask].sum().backward()
    full_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    shared, entropy = prefix.logps_and_entropies(model, ids, mask, keep, temperature, compute_entropy=True)
    shared[completion_mask].sum().backward()
    assert torch.allclose(full[completion_mask], shared[completion_mask], atol=1e-5)
    assert entropy.shape == shared.shape and bool((entropy[completion_mask] > 0).all())
    for name, param in model.named_parameters():  # gradients reach the prompt's layers through the shared cache
        assert torch.allclose(full_grads[name], param.grad, atol=1e-5), name


def test_rollouts_sample_the_same_tokens_with_the_prompt_prefilled_once():
    model = _tiny_llama(1)
    ids, mask, _ = _group_batch()
    n_prompt = 5
    ids, mask = ids[:, :n_prompt], mask[:, :n_prompt]
    settings = {"do_sample": True, "max_new_tokens": 6, "temperature": 1.0, "top_k": 0, "pad_token_id": 0}
    torch.manual_seed(3)
    plain = model.generate(input_ids=ids, attention_mask=mask, **settings)
    with prefix.SharedPrefixGeneration(model) as sharing:
        torch.manual_seed(3)
        shared = model.generate(input_ids=ids, attention_mask=mask, **settings)
    assert sharing.shared == 1 and torch.equal(plain, shared)
    assert "generate" not in vars(model)  # the model's own method again after the block


def test_nothing_to_share_falls_back_to_the_models_own_way():
    model = _tiny_llama()
    ids = torch.tensor([[2, 3, 4], [5, 6, 7]])
    assert prefix.logps_and_entropies(model, ids, torch.ones_like(ids), 1, 1.0) is None


@pytest.mark.slow
def test_the_offline_vlm_trains_the_same_policy_either_way():
    """Two GRPO steps of medix-vlm-135m (an image batch and a text batch), TRL's way and with shared prompts, same
    seed: the same completions are paid the same, and the adapters, which training moved, end within float rounding
    of each other. The reward is any function of the text (a short budget leaves the composite at 0 for all, and
    nothing would train); what is compared is the trainer's two paths."""
    from medix_lib.contract import completion_text
    from medix_lib.training import bench

    def spread(completions, **_):
        return [sum(map(ord, completion_text(c))) % 97 / 96 for c in completions]

    result = bench.grpo_step(steps=2, warmup_steps=2, reward_funcs=[spread],
                             overrides={"per_device_train_batch_size": 8, "max_completion_length": 12})
    assert result["trl"]["adapter_moved"] > 1e-4 and result["medix"]["adapter_moved"] > 1e-4
    assert result["trl"]["prefix_shared"] == {"generation": 0, "logps": 0}
    shared = result["medix"]["prefix_shared"]
    assert shared["generation"] == 2 and shared["logps"] >= 2
    assert {s["kind"] for s in result["medix"]["per_step"]} == {"image", "text"}
    assert result["identical_rewards"] == result["completions"] == 16
    assert result["relative_adapter_difference"] < 0.05, result
