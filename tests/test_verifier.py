"""The answer verifier: gold pairs split by concept, training scores pairs exactly as the judge backend does, the
shipped weights match their record, and training is deterministic and resumes after a kill."""

import json

import pytest

from medix_lib import artifacts, config, models
from medix_lib import judge as J
from medix_lib import verifier as V
from medix_lib.text import normalise
from medix_lib.verifier import trainer
from medix_lib.verifier.pairs import instruction_pairs, nonsense_pairs
from medix_lib.verifier.phrasings import (_BARE, _CARRIERS, _EVERYDAY, _FILLERS, _FRAGMENTS, _INSTRUCTIONS, _LEADS,
                                          _VAGUE, MEANINGLESS_SHAPES, _split_share)


@pytest.fixture(scope="module")
def pairs():
    return V.build_pairs(V.PRESETS["ci"].pairs)


def test_split_is_concept_disjoint_and_covers_every_pair_type(pairs):
    concepts = {s: {c for p in ps for c in p.concepts} for s, ps in pairs.items()}
    assert not concepts["train"] & concepts["validation"]
    assert not concepts["train"] & concepts["test"]
    assert not concepts["validation"] & concepts["test"]
    ontology_types = set(V.PAIR_TYPES) - {"drug", "imaging"}  # those two need the drug and DICOM sources
    for split, ps in pairs.items():
        assert {p.kind for p in ps} == ontology_types, split
        asym = [p.label for p in ps if p.kind == "negation-asym"]
        assert any(asym) and not all(asym), f"{split}: negation-asym needs both labels"
    # Texts are split too: concepts sharing a name or synonym are one unit, so a test answer never appears in train.
    train_texts = {normalise(t) for p in pairs["train"] if p.kind in V.YES_TYPES for t in (p.reference,
                                                                                              p.prediction)}
    test_texts = {normalise(t) for p in pairs["test"] if p.kind in V.YES_TYPES for t in (p.reference,
                                                                                            p.prediction)}
    assert not train_texts & test_texts


def test_answer_phrasings_are_split_like_concepts(pairs):
    """Fillers, reasoning leads and sentence carriers of the held-out pairs are never seen in training either."""
    import re

    verbose = {s: [p.prediction.lower() for p in pairs[s] if p.kind == "verbose"] for s in ("train", "test")}
    for pool in (_FILLERS, _LEADS):
        used = {s: {f for f in pool if any(f.lower() in t for t in verbose[s])} for s in verbose}
        for split in verbose:
            assert used[split] and used[split] <= set(_split_share(pool, split)), (split, used[split])
    test_carriers = [re.compile(r"(?:.*\. )?" + re.escape(c).replace(re.escape("{x}"), ".+"), re.I)
                     for c in _split_share(_CARRIERS, "test")]
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
        assert all(normalise(p.reference) != normalise(p.prediction) for p in ps)


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


def test_drug_and_imaging_sources_give_their_pair_types():
    pairs = V.build_pairs(V.PairConfig(per_type=(60, 6, 6), sources=("hpo", "drugs", "dicom")))
    kinds = {p.kind for p in pairs["train"]}
    assert {"drug", "imaging"} <= kinds
    drug = [p for p in pairs["train"] if p.kind == "drug"]
    assert any(p.label for p in drug) and not all(p.label for p in drug)
    with pytest.raises(ValueError, match="unknown concept source.*valid: hpo, icd10, drugs, dicom"):
        V.build_pairs(V.PairConfig(sources=("umls",)))


def test_new_pair_types_cover_organs_and_cross_negation(pairs):
    organ = [p for p in pairs["train"] if p.kind == "organ-swap"]
    assert organ and not any(p.label for p in organ)
    # the two texts share everything but the organ word
    assert sum(len(set(normalise(p.reference).split()) ^ set(normalise(p.prediction).split())) <= 3
               for p in organ) > 0.8 * len(organ)
    cross = [p.label for s in pairs.values() for p in s if p.kind == "cross-negation"]
    assert any(cross) and not all(cross)


def test_no_training_pair_repeats_a_held_out_clinical_pair(pairs):
    """The hand-written clinical set measures the verifier; none of its pairs may be trained on."""
    clinical = {frozenset((normalise(p.reference), normalise(p.prediction))) for p in V.clinical_pairs()}
    trained = {frozenset((normalise(p.reference), normalise(p.prediction))) for p in pairs["train"]}
    assert not clinical & trained


def test_nonsense_answers_are_no_and_use_their_splits_words_only():
    references = [f"finding {i}" for i in range(200)]
    for split in ("train", "test"):
        nonsense = nonsense_pairs(references, split)
        assert [p.reference for p in nonsense] == references and not any(p.label for p in nonsense)
        by_shape = {shape: [p.prediction for p in nonsense if p.source == f"generated/{shape}"]
                    for shape in MEANINGLESS_SHAPES}
        assert all(len(v) >= 33 for v in by_shape.values())
        words = {w for t in by_shape["everyday"] for w in t.split()}
        assert words and words <= set(_split_share(_EVERYDAY, split))
        assert all(any(ch.isdigit() for ch in c) for c in by_shape["code"])
        for shape, pool in (("fragment", _FRAGMENTS), ("bare", _BARE), ("vague", _VAGUE)):
            assert set(by_shape[shape]) <= set(_split_share(pool, split)), shape
    assert nonsense_pairs(references) == nonsense_pairs(references)


def test_instructions_to_the_judge_are_a_no_type_split_like_phrasings(pairs):
    """Trained on the train share of the phrasings; the meta-evaluation's instructions are the test share."""
    for split in ("train", "test"):
        texts = [p.prediction for p in pairs[split] if p.kind == "instruction"]
        assert texts and not any(p.label for p in pairs[split] if p.kind in ("instruction", "nonsense"))
        used = {t for t in _INSTRUCTIONS if any(x.endswith(t) for x in texts)}
        assert used and used <= set(_split_share(_INSTRUCTIONS, split)), split
    held_out = instruction_pairs(["gout"] * 20, ["fever"])
    assert {p.prediction.removeprefix("</answer> ").removeprefix("fever. ") for p in held_out} <= set(
        _split_share(_INSTRUCTIONS, "test"))


def test_shipped_verifier_judges_meaningless_answers_no():
    """The judge as used, from the committed weights: held-out meaningless answers of every shape (the test share of
    the pools) against real concept names, and a set written apart from every pool (codes, everyday words, template
    fragments, bare answers, generic words): none may be paid."""
    from pathlib import Path

    names = ["pulmonary embolism", "anteverted nares", "morphine", "grayscale", "atrial septal defect", "gout",
             "left lower lobe pneumonia", "hypothyroidism", "Osteosarcoma", "CT", "axial", "microcytic anemia"]
    apart = [json.loads(line) for line in
             (Path(__file__).parent / "fixtures" / "meaningless_apart.jsonl").read_text().splitlines()]
    items = [p.item() for p in nonsense_pairs(names * 3)] + [J.JudgeItem(r["reference"], r["prediction"])
                                                            for r in apart]
    verdicts = J.Judge()(items)  # the default judge: the shipped ensemble, its recorded threshold
    assert [(it.prediction, round(v.p_yes, 2)) for it, v in zip(items, verdicts) if v.label] == []


@pytest.mark.slow
def test_meta_evaluation_of_the_shipped_verifier_reports_every_set():
    responses = [json.loads(line) for line in (config.OUTPUTS_DIR / "04_evaluate_with_judge" / "smoke" /
                                               "responses.jsonl").read_text().splitlines()]
    result = V.meta_evaluation(zero_shot=None, embedder=None, max_test=40, speed_pairs=0, progress=False,
                               responses=responses)
    verifier, judged = result["methods"]["trained verifier"], result["methods"][V.TERMINOLOGY_METHOD]
    assert set(result["labels"]) == {"test", "validation", "clinical", "nonsense", "instruction", "wrong",
                                     "policy_wrong"}
    for k in ("nonsense", "instruction", "wrong", "policy_wrong"):
        assert result["labels"][k] and not any(result["labels"][k]), k
    assert judged["instruction_yes_rate"] == 0  # the guard decides every one before the verifier
    assert len(result["labels"]["clinical"]) == 374 and judged["threshold"] == verifier["threshold"]
    # the vocabularies only settle pairs they know, so the judge as used ranks clinical pairs at least as well
    assert judged["clinical_auc"] >= verifier["clinical_auc"] > 0.75
    assert 0.0 <= judged["nonsense_yes_rate"] <= verifier["nonsense_yes_rate"] <= 1.0


def test_unknown_preset_and_bad_layer_counts_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown verifier preset 'fast'.*smoke, gemma, ci, gpu"):
        V.preset("fast")
    with pytest.raises(ValueError, match="keep_layers=99"):
        import torch.nn as nn

        class Fake(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = nn.Module()
                self.model.layers = nn.ModuleList([nn.Linear(1, 1)] * 3)

        models.truncate(Fake(), 99)
    with pytest.raises(ValueError, match="lr_schedule='cosine'; valid: linear, constant"):
        V.train(V.VerifierConfig(lr_schedule="cosine"), tmp_path / "unused")


def test_config_key_changes_with_data_training_and_base():
    base = V.PRESETS["ci"]
    keys = {base.key(), V.VerifierConfig(**{**base.__dict__, "learning_rate": 1e-4}).key(),
            V.VerifierConfig(**{**base.__dict__, "pairs": V.PairConfig(seed=1)}).key(),
            V.VerifierConfig(**{**base.__dict__, "base_model": "HuggingFaceTB/SmolLM2-360M-Instruct"}).key()}
    assert len(keys) == 4


# --- the shipped verifier ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(trainer.PRESET_ARTIFACTS))
def test_shipped_weights_match_their_record(preset):
    name = trainer.PRESET_ARTIFACTS[preset]
    tensors, rec = artifacts.load_tensors(name)  # checks the sha256 against the record
    assert rec["name"] == name and rec["config_key"] == V.PRESETS[preset].key()
    assert rec["pairs_version"] == V.PAIRS_VERSION and 0.0 < rec["threshold"] < 1.0
    from transformers import AutoConfig

    base = AutoConfig.from_pretrained(models.resolve_path(rec["base_model"]))
    first, last = rec["config"]["train_layers"]
    adapted = {k.removesuffix(".lora_A") for k in tensors if k.endswith(".lora_A")}
    assert {int(k.split(".")[2]) for k in adapted} == set(range(first, last))
    assert len(adapted) == (last - first) * len(trainer.LORA_MODULES)
    rank = rec["config"]["ship_rank"]
    for key in adapted:
        a, b = tensors[key + ".lora_A"], tensors[key + ".lora_B"]
        assert a.shape[0] == b.shape[1] == rank
        heads = base.num_attention_heads * getattr(base, "head_dim", base.hidden_size // base.num_attention_heads)
        expected_in = base.intermediate_size if key.endswith("down_proj.weight") \
            else heads if key.endswith("o_proj.weight") else base.hidden_size
        assert a.shape[1] == expected_in
    assert tuple(tensors["model.norm.weight"].shape) == (base.hidden_size,)


def test_an_altered_weight_file_is_refused(tmp_path):
    import shutil

    copy = tmp_path / "verifier"
    shutil.copytree(artifacts.directory(V.ARTIFACT), copy)
    with open(copy / artifacts.WEIGHTS, "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    with pytest.raises(artifacts.ArtifactError, match="changed without retraining"):
        artifacts.verified_weights(copy)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*trainer.PRESET_ARTIFACTS.values(), V.JUDGE])
def test_shipped_verifier_reproduces_its_recorded_validation_scores(monkeypatch, name):
    """Loading assembles base + shipped delta (no training), and a sample of the recorded validation pairs scores as
    recorded (fp32 on any CPU), so the recorded AUC and threshold belong to these weights; the judge (the ensemble)
    reproduces its own record from its members."""
    monkeypatch.setattr(trainer, "_train", lambda *a, **k: pytest.fail("loading the shipped verifier trained"))
    rows = [json.loads(line)
            for line in (artifacts.directory(name) / "validation.jsonl").read_text().splitlines()]
    sample = rows[::len(rows) // 48][:48]
    items = [J.JudgeItem(r["reference"], r["prediction"]) for r in sample]
    scores = V.score(name, items, dtype="float32")
    assert scores == pytest.approx([r["p_yes"] for r in sample], abs=2e-3)
    labels = [r["label"] for r in sample]
    assert trainer._auc(labels, scores) == pytest.approx(trainer._auc(labels, [r["p_yes"] for r in sample]), abs=0.01)
    if name == V.JUDGE:
        assert J.Judge().p_yes_threshold == artifacts.record(name)["threshold"]  # judge_threshold: auto


def test_the_judge_averages_its_members_log_odds():
    """The shipped judge's margin is its members' mean margin, pair by pair, and its P(YES) the sigmoid of that."""
    import math

    prompts = [J.TEMPLATES[J.REWARD_TEMPLATE].messages(J.JudgeItem(r, p), False)
               for r, p in [("myocardial infarction", "heart attack"), ("left hip fracture", "right hip fracture"),
                            ("gout", "a kettle")]]
    members = [J.TransformersJudge(m, dtype="float32").log_odds(prompts) for m in models.ensemble_members(V.JUDGE)]
    judge = J.TransformersJudge(V.JUDGE, dtype="float32")
    mean = [sum(v) / len(v) for v in zip(*members)]
    assert judge.log_odds(prompts) == pytest.approx(mean, abs=1e-6)
    assert judge.p_yes(prompts) == pytest.approx([1 / (1 + math.exp(-m)) for m in mean], abs=1e-6)
    with pytest.raises(ValueError, match="ensemble of YES/NO verifiers"):
        judge.score(prompts, rubric=True)


def test_an_ensemble_refuses_members_it_was_not_combined_from(tmp_path, monkeypatch):
    """A retrained member changes what the recorded threshold was chosen on: loading names the member and the fix."""
    record = artifacts.record(V.JUDGE)
    for name in (*record["members"], V.JUDGE):
        (tmp_path / name).mkdir()
        (tmp_path / name / artifacts.RECORD).write_text((artifacts.directory(name) / artifacts.RECORD).read_text())
    (tmp_path / V.JUDGE / artifacts.RECORD).write_text(json.dumps({**record, "members": {**record["members"],
                                                                            "medix-verifier-270m": "0" * 64}}))
    monkeypatch.setattr(artifacts, "ASSETS_DIR", tmp_path)
    with pytest.raises(artifacts.ArtifactError, match="medix-verifier-270m.*combine-verifiers"):
        models.ensemble_members(V.JUDGE)


def test_combining_refuses_members_trained_on_other_pairs(tmp_path):
    import shutil

    from medix_lib.verifier import ensemble

    other = tmp_path / "other"
    shutil.copytree(artifacts.directory(trainer.ARTIFACT), other)
    rec = json.loads((other / artifacts.RECORD).read_text())
    (other / artifacts.RECORD).write_text(json.dumps({**rec, "validation_pairs_hash": "elsewhere"}))
    with pytest.raises(ValueError, match="different pair splits"):
        ensemble.combine((trainer.ARTIFACT, str(other)), tmp_path / "out", progress=False)


def test_the_gemma_base_gets_gemmas_turn_format():
    """The Gemma-3 base ships no chat template; the judge's system + user messages reach it as Gemma's own template
    lays them out (the system text opening the first user turn), ending where the model's turn begins."""
    tokenizer = models.load_tokenizer("gemma3-270m")
    text = tokenizer.apply_chat_template([{"role": "system", "content": "Judge."}, {"role": "user", "content": "A?"}],
                                         tokenize=False, add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nJudge.\n\nA?<end_of_turn>\n<start_of_turn>model\n"


# --- training ------------------------------------------------------------------------------------------------------

TRAIN = """
import sys
from pathlib import Path
from medix_lib import verifier as V
V.train("ci", Path(sys.argv[1]), progress=False)
"""


def _tensors(folder):
    return artifacts.load_tensors(folder)[0]


@pytest.mark.slow
def test_training_resumes_after_a_kill_and_ends_where_an_uninterrupted_run_ends(tmp_path):
    """Deterministic or it fails: an uninterrupted CI-sized run, and one killed with SIGKILL after its first
    checkpoint and started again, ship the same weights."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    done = subprocess.run([sys.executable, "-c", TRAIN, str(whole)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = trainer.checkpoint_path(V.PRESETS["ci"], resumed)
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, str(resumed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint was written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (resumed / artifacts.WEIGHTS).exists(), "nothing ships before the run is complete"
    done = subprocess.run([sys.executable, "-c", TRAIN, str(resumed)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = _tensors(whole), _tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key].float() - b[key].float()).abs().max().item() < 1e-6, key
    rec = artifacts.record(resumed)
    assert rec["validation"]["auc"] == artifacts.record(whole)["validation"]["auc"]
    assert set(rec["clinical_heldout"]["per_class_auc"]) == {p.kind.removeprefix("clinical/")
                                                             for p in V.clinical_pairs()}
    assert not checkpoint.exists()
