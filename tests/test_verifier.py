"""The trained answer verifier: gold pairs split by concept, training scores pairs exactly as the judge backend does,
the cached artifact is reused, and a real CI-sized training run beats the zero-shot judge."""

import json
from pathlib import Path

import pytest

from medix_lib import judge as J
from medix_lib import models
from medix_lib import verifier as V


@pytest.fixture(scope="module")
def pairs():
    return V.build_pairs(V.PRESETS["ci"].pairs)


def test_split_is_concept_disjoint_and_covers_every_pair_type(pairs):
    concepts = {s: {c for p in ps for c in p.concepts} for s, ps in pairs.items()}
    assert not concepts["train"] & concepts["validation"]
    assert not concepts["train"] & concepts["test"]
    assert not concepts["validation"] & concepts["test"]
    for split, ps in pairs.items():
        assert {p.kind for p in ps} == set(V.PAIR_TYPES), split
        asym = [p.label for p in ps if p.kind == "negation-asym"]
        assert any(asym) and not all(asym), f"{split}: negation-asym needs both labels"
    # Texts are split too: concepts sharing a name or synonym are one unit, so a test answer never appears in train.
    train_texts = {J.normalise(t) for p in pairs["train"] if p.kind in V.YES_TYPES for t in (p.reference,
                                                                                              p.prediction)}
    test_texts = {J.normalise(t) for p in pairs["test"] if p.kind in V.YES_TYPES for t in (p.reference,
                                                                                            p.prediction)}
    assert not train_texts & test_texts


def test_answer_phrasings_are_split_like_concepts(pairs):
    """Fillers, reasoning leads and sentence carriers of the held-out pairs are never seen in training either."""
    import re

    verbose = {s: [p.prediction.lower() for p in pairs[s] if p.kind == "verbose"] for s in ("train", "test")}
    for pool in (V._FILLERS, V._LEADS):
        used = {s: {f for f in pool if any(f.lower() in t for t in verbose[s])} for s in verbose}
        for split in verbose:
            assert used[split] and used[split] <= set(V._split_share(pool, split)), (split, used[split])
    test_carriers = [re.compile(r"(?:.*\. )?" + re.escape(c).replace(re.escape("{x}"), ".+"), re.I)
                     for c in V._split_share(V._CARRIERS, "test")]
    sentences = [p for p in pairs["test"] if p.kind == "verbose" and p.label]
    assert sentences and all(any(c.fullmatch(p.prediction) for c in test_carriers) for p in sentences)


def test_casing_carries_no_label(pairs):
    """Ontology titles are capitalised and rewrites are not: trained on raw casing, a verifier learned "both texts
    capitalised = YES" (P(YES) 0.9 on random HPO pairs)."""
    train = pairs["train"]
    base_rate = sum(p.label for p in train) / len(train)
    for ref_upper in (True, False):
        for pred_upper in (True, False):
            cell = [p for p in train if p.reference[:1].isupper() == ref_upper and
                    p.prediction[:1].isupper() == pred_upper]
            assert len(cell) > len(train) / 8
            assert abs(sum(p.label for p in cell) / len(cell) - base_rate) < 0.05, (ref_upper, pred_upper)


def test_pairs_are_deterministic_and_never_trivially_equal(pairs):
    again = V.build_pairs(V.PRESETS["ci"].pairs)
    assert again == pairs
    for ps in pairs.values():
        assert all(J.normalise(p.reference) != J.normalise(p.prediction) for p in ps)


def test_length_batches_cover_every_row_once_and_pad_less_than_random_batches(pairs):
    import random

    lengths = [len(p.reference) + len(p.prediction) for p in pairs["train"]]
    batches = V.length_batches(lengths, 16, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert len({len(b) for b in batches[:-1]} - {16}) <= 1  # only a window's last batch may be short

    def padding(bs):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)

    rows = list(range(len(lengths)))
    random.Random(0).shuffle(rows)
    assert padding(batches) < padding([rows[i:i + 16] for i in range(0, len(rows), 16)]) / 3
    assert V.length_batches(lengths, 16, random.Random(0)) == batches


def test_check_disjoint_names_the_crossing_concept():
    bad = {"train": [V.Pair("a", "b", False, "random", ("HP:1", "HP:2"), "hpo")],
           "test": [V.Pair("c", "d", False, "random", ("HP:2",), "hpo")]}
    with pytest.raises(ValueError, match=r"HP:2 \(train, test\)"):
        V.check_disjoint(bad)


def test_unknown_preset_and_bad_layer_counts_name_the_problem():
    with pytest.raises(ValueError, match="unknown verifier preset 'fast'.*smoke, ci, gpu"):
        V.preset("fast")
    with pytest.raises(ValueError, match="keep_layers=99"):
        import torch.nn as nn

        class Fake(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = nn.Module()
                self.model.layers = nn.ModuleList([nn.Linear(1, 1)] * 3)

        V.truncate(Fake(), 99)
    with pytest.raises(ValueError, match="lr_schedule='cosine'; valid: linear, constant"):
        V.train(V.VerifierConfig(lr_schedule="cosine"), Path("unused"))


def test_cache_key_changes_with_data_training_and_base():
    base = V.PRESETS["ci"]
    keys = {base.key(), V.VerifierConfig(**{**base.__dict__, "learning_rate": 1e-4}).key(),
            V.VerifierConfig(**{**base.__dict__, "pairs": V.PairConfig(seed=1)}).key(),
            V.VerifierConfig(**{**base.__dict__, "base_model": "HuggingFaceTB/SmolLM2-360M-Instruct"}).key()}
    assert len(keys) == 4


def test_alias_resolves_through_models_to_the_cached_verifier(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(V, "ensure", lambda preset: calls.append(preset) or tmp_path)
    assert models.check_model_name("medix-verifier-135m", "causal_lm") == "medix-verifier-135m"
    assert calls == []  # validating params never trains
    assert models.resolve_path("medix-verifier-135m") == str(tmp_path)
    assert calls == ["smoke"]


@pytest.mark.slow
def test_training_forward_scores_like_the_judge_backend():
    """Training runs each batch's shared prefix with gradients and no copy; the backend reuses one prefix cache for
    a whole call. Both must give the same P(YES), or the verifier would be trained on a different function."""
    import torch

    items = [p.item() for p in V.clinical_pairs()[:6]]
    tokenizer = models.load_tokenizer("smollm2-135m-instruct")
    model = models.load_causal_lm("smollm2-135m-instruct", "cpu")
    seqs = [V.prompt_ids(tokenizer, it, J.REWARD_TEMPLATE) for it in items]
    prefix = seqs[0][0]
    logits = J.next_token_logits(model, [tail for _, tail in seqs], len(prefix), J.prefix_cache(model, prefix),
                                 tokenizer.pad_token_id).float()
    yes_ids, no_ids = V.yes_no_ids(tokenizer)
    ours = torch.sigmoid(torch.logsumexp(logits[:, yes_ids], -1) - torch.logsumexp(logits[:, no_ids], -1)).tolist()
    assert ours == pytest.approx(V.score("smollm2-135m-instruct", items, batch_size=4), abs=1e-4)


@pytest.fixture(scope="module")
def ci_verifier():
    """The CI preset trained for real (~3 min on 2 cores) the first time on a machine, then cached."""
    return V.ensure("ci", progress=False)


@pytest.mark.slow
def test_cache_hit_skips_training(ci_verifier, monkeypatch):
    record = json.loads((ci_verifier / "verifier.json").read_text())
    assert record["key"] == V.PRESETS["ci"].key() and record["train_pairs_seen"] > 0
    assert (ci_verifier / "config.json").exists() and (ci_verifier / "tokenizer.json").exists()
    monkeypatch.setattr(V, "train", lambda *a, **k: pytest.fail("cache hit must not train"))
    assert V.ensure("ci") == ci_verifier
    assert not list(ci_verifier.parent.glob(f"{ci_verifier.name}.partial-*"))


@pytest.mark.slow
def test_trained_verifier_beats_zero_shot_through_the_judge(ci_verifier, pairs):
    fixed = pairs["validation"]
    labels = [p.label for p in fixed]
    verdicts = J.Judge(model=str(ci_verifier), template=J.REWARD_TEMPLATE)([p.item() for p in fixed])
    assert all(v.error is None for v in verdicts)
    trained = V._auc(labels, [v.p_yes for v in verdicts])
    zero_shot = V._auc(labels, V.score("smollm2-135m-instruct", [p.item() for p in fixed]))
    assert trained > zero_shot + 0.05, (trained, zero_shot)
    # The eval template is trained too, and scored by the same rule.
    eval_auc = V._auc(labels, V.score(str(ci_verifier), [p.item() for p in fixed], template=J.EVAL_TEMPLATE))
    assert eval_auc > zero_shot, (eval_auc, zero_shot)
