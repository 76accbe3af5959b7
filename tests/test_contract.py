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
