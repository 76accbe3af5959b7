import pytest
from hypothesis import given
from hypothesis import strategies as st

from medix_lib.contract import MODALITIES, OutputContract, check_modality, completion_text

C = OutputContract()


def test_well_formed_completion():
    p = C.parse("<CT_SCAN>\n<thinking>Hyperdense lesion.</thinking>\n<answer>Acute haemorrhage</answer>\n")
    assert (p.modality, p.reasoning, p.answer, p.well_formed) == ("CT_SCAN", "Hyperdense lesion.",
                                                                  "Acute haemorrhage", True)


@pytest.mark.parametrize("text", [
    "<thinking>x</thinking><answer>y</answer>",  # no modality tag
    "<X_RAY> extra <thinking>x</thinking><answer>y</answer>",  # text beside the tag
    "<X_RAY><thinking>x</thinking><answer>y</answer> trailing",  # text after the answer
    "<X_RAY><answer>y</answer><thinking>x</thinking>",  # wrong order
    "<X_RAY><thinking>x</thinking><answer>y</answer><answer>z</answer>",  # two answers
])
def test_malformed_completions_are_not_well_formed(text):
    assert not C.parse(text).well_formed


def test_last_answer_block_wins_and_colons_survive():
    assert C.parse("<answer>decoy</answer> <answer>T2: hyperintense?</answer>").answer == "T2: hyperintense?"


def test_custom_tags():
    c = OutputContract(reasoning_tag="think")
    assert c.parse("<MRI_SCAN><think>r</think><answer>a</answer>").well_formed
    assert not C.parse("<MRI_SCAN><think>r</think><answer>a</answer>").well_formed


def test_sixteen_modalities():
    assert len(MODALITIES) == 16 and "OTHER" in MODALITIES
    with pytest.raises(ValueError, match="valid tags: X_RAY"):
        check_modality("PHOTO")


def test_completion_text_handles_multimodal_messages():
    msg = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(msg) == "ab"


@given(st.text())
def test_parser_never_raises(text):
    parsed = C.parse(text)
    assert parsed.well_formed in (True, False)


@pytest.mark.parametrize("text,issue", [
    ("<thinking>x</thinking><answer>y</answer>", "no_modality_tag"),
    ("<FOO><thinking>x</thinking><answer>y</answer>", "unknown_modality"),
    ("<X_RAY><CT_SCAN><thinking>x</thinking><answer>y</answer>", "multiple_modality_tags"),
    ("<X_RAY><answer>y</answer>", "no_reasoning_block"),
    ("<X_RAY><thinking>a</thinking><thinking>b</thinking><answer>y</answer>", "multiple_reasoning_blocks"),
    ("<X_RAY><thinking>x</thinking>", "no_answer_block"),
    ("<X_RAY><thinking>x</thinking><answer>y", "unclosed_answer"),
    ("<X_RAY><thinking>x</thinking><answer>y</answer><answer>z</answer>", "multiple_answer_blocks"),
    ("<X_RAY> extra <thinking>x</thinking><answer>y</answer>", "text_outside_blocks"),
])
def test_issues_name_what_is_wrong(text, issue):
    assert issue in C.parse(text).issues


def test_lookalike_tags_are_text():
    cyrillic = "<X_RAY><thinking>x</thinking><\u0430nswer>y</\u0430nswer>"
    fullwidth = "\uff1cX_RAY\uff1e<thinking>x</thinking><answer>y</answer>"
    assert C.parse(cyrillic).answer is None
    assert C.parse(fullwidth).modality is None and not C.parse(fullwidth).well_formed


def test_unclosed_last_answer_means_no_answer():
    assert C.parse("<X_RAY><thinking>x</thinking><answer>a</answer><answer>b").answer is None


def test_tag_names_are_validated():
    with pytest.raises(ValueError, match="plain identifier"):
        OutputContract(answer_tag="a>b")
    with pytest.raises(ValueError, match="differ"):
        OutputContract("answer", "answer")


@given(st.text(), st.sampled_from(["think", "thinking", "reasoning"]), st.sampled_from(["answer", "final"]))
def test_parser_is_total_and_consistent(text, reasoning_tag, answer_tag):
    parsed = OutputContract(reasoning_tag, answer_tag).parse(text)
    assert parsed.well_formed == (not parsed.issues)
    assert parsed.answer is None or parsed.answer == parsed.answers[-1]


@given(st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=50),
       st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=50), st.sampled_from(MODALITIES))
def test_reference_format_round_trips(reasoning, answer, modality):
    parsed = C.parse(C.format_reference(modality, reasoning, answer))
    assert parsed.well_formed and parsed.modality == modality
    assert parsed.answer == answer.strip() and parsed.reasoning == reasoning.strip()
