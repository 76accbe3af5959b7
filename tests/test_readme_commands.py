"""Every ``python -m medix_lib ...`` command README.md shows parses with the command line's own argument parser (the
command is not run): a README command that no longer parses fails here. Usage-style optional groups
(``[--adapter A]``) are checked both left out and given; placeholders (``M``, ``T1 T2``) stand as written and a
``...`` (the other arguments) is left out."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from medix_lib import cli

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "Running stages, ablations and pieces"
# inline code holding a command, then any "/ `sibling`" spans ("`python -m medix_lib train-verifier` /
# `evaluate-verifier`")
_INLINE = re.compile(r"`[^`]*-m medix_lib\s+(?P<args>[^`]+)`(?P<siblings>(?:\s*/\s*`[^`]+`)*)")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")


def section(text: str, heading: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {heading}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start + 1:end])


def commands(text: str) -> list[tuple[str, list[str]]]:
    """``(as written, argv after "-m medix_lib")`` for every command in ``text``: fenced shell lines and inline code;
    a command with ``[...]`` groups gives two argvs, without them and with all of them."""
    written, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if "-m medix_lib" in line:
                written.append(re.sub(r"\s#.*$", "", line.split("-m medix_lib", 1)[1]).strip())
            continue
        for m in _INLINE.finditer(line):
            written.append(m.group("args").strip())
            written += [s.strip() for s in re.findall(r"`([^`]+)`", m.group("siblings"))]
    out = []
    for args in written:
        for form in dict.fromkeys((_OPTIONAL.sub("", args), _OPTIONAL.sub(r"\1", args))):
            out.append((args, [t for t in shlex.split(form) if t not in ("...", "\u2026")]))  # "...": and the rest
    return out


def _parses(argv: list[str], written: str):
    try:
        return cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"README command 'python -m medix_lib {written}' does not parse as {argv}")


def test_the_running_section_shows_commands_of_every_kind():
    found = commands(section(README.read_text(), SECTION))
    assert {argv[0] for _, argv in found} >= {"run", "train", "evaluate", "judge", "rewards", "train-verifier",
                                              "evaluate-verifier", "train-projector", "bench", "memory"}
    evaluate = [_parses(argv, w) for w, argv in found if argv[0] == "evaluate" and "--tasks" in argv]
    assert evaluate and all(args.tasks == ["T1", "T2"] for args in evaluate)  # "--tasks T1 T2": two tasks


@pytest.mark.parametrize("written,argv", commands(section(README.read_text(), SECTION)),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_running_section_commands_parse(written, argv):
    assert _parses(argv, written).func


@pytest.mark.parametrize("written,argv", commands(README.read_text()), ids=lambda v: v if isinstance(v, str) else None)
def test_every_readme_command_parses(written, argv):
    assert _parses(argv, written).func


def test_extraction_of_optional_groups_and_siblings():
    text = ("| `python -m medix_lib train [--variant V] [--set K=V]` | x |\n"
            "| `python -m medix_lib train-verifier` / `evaluate-verifier` | y |\n"
            "```bash\n.venv/bin/python -m medix_lib run --only 03   # one stage\n```\n"
            "served: `python -m medix_lib evaluate --model NAME ...`\n")
    assert [argv for _, argv in commands(text)] == [
        ["train"], ["train", "--variant", "V", "--set", "K=V"], ["train-verifier"], ["evaluate-verifier"],
        ["run", "--only", "03"], ["evaluate", "--model", "NAME"]]
