"""The README's numbers against the committed reference runs: every decimal that a results section quotes is a value
stored in outputs/ (rounded as written), every sample size it quotes is one stored there, and every stage time is that
stage's run.json seconds. Nothing here is hard-coded: the test reads whatever outputs/ and README.md hold, so
re-rendered runs and a re-edited README are checked against each other."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OUTPUTS = ROOT / "outputs"
# the committed result files whose values the README may quote (relative to the repository root): the reference runs,
# the verifier's meta-evaluation, the bench, and the shipped weights' training records (caption F1, validation AUC)
RESULT_FILES = ("outputs/*/*/metrics.json", "outputs/verifier/*/meta_evaluation.json", "outputs/bench/*/bench.json",
                "medix_lib/assets/*/record.json")
# longer numeric lists are per-item data (scores, ROC points, labels), not quoted figures: they would match anything
LONG_LIST = 32

# a decimal number, optionally signed ("+0.095", "-0.21", "±0.2" or "+-0.2"), a percentage ("0.6%", "36%") or a
# ratio ("34.0x"); not part of a word or of a version ("Qwen2.5", "1.15.0"), not a time ("2.21 s", "75.2 s",
# "1.5 min"), not an integer
DECIMAL = re.compile(r"(?<![\w.])(?P<sign>\+-|[+\-−±])?(?P<num>\d+\.\d+|\d+(?=%))(?P<pct>%|x(?!\w))?(?![\w.]|\.\d)"
                     r"(?!\s*(?:s|ms|min|h)\b)")
SAMPLE_SIZE = re.compile(r"\bn=(?P<n>\d+)(?:, (?P<m>\d+))?")
# a stage's time as the README writes it: "01 12 s", "03: 9 min 1 s", "04 81 s"
STAGE_TIME = re.compile(r"(?<![\w.-])(?P<stage>0[1-4]):? "
                        r"(?:(?P<min>\d+) min(?: (?P<sec>\d+) s)?|(?P<only>\d+(?:\.\d+)?) s)\b")


def section(text: str, heading: str, tables_only: bool = False) -> list[tuple[int, str]]:
    """The lines (1-based number, text) of the ``## <heading>...`` section up to the next ``## ``, or only its table
    rows; inline code (`threshold_0.6`) blanked out, fenced code blocks left out."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"## {heading}")), None)
    assert start is not None, f"README.md has no section '## {heading}'"
    out, fenced = [], False
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.startswith("## "):
            break
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or (tables_only and not line.startswith("|")):
            continue
        out.append((i + 1, re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), line)))
    return out


def norm(name: str) -> str:
    """A key or a README label in one spelling: "organ swap", "organ-swap" and "organ_swap" are "organ swap"."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


def label(before: str) -> str:
    """The words just before a number, back to the previous number or punctuation: "parent-child" in "| parent-child
    0.901", "" in "| 0.46"; "->" and "vs" (a before/after pair) give "->", meaning the previous number's label."""
    words = re.split(r"[\d|()\[\],;:=]", before)[-1].replace("*", " ").strip()
    return "->" if words in ("->", "vs") else norm(words)


def decimals(lines: list[tuple[int, str]]) -> list[dict]:
    """Every decimal number in ``lines``: its line, text as written, value (a percentage as a fraction), number of
    decimals of that value, whether it is a magnitude only (±), and its label (the words just before it, carried
    across "->" and "vs")."""
    found = []
    for lineno, line in lines:
        previous = ""
        for m in DECIMAL.finditer(line):
            name = label(line[:m.start()])
            name = previous if name == "->" else name
            previous = name
            sign, num = m.group("sign") or "", m.group("num")
            places = len(num.partition(".")[2])
            value = float(num)
            if m.group("pct") == "%":
                value, places = value / 100, places + 2
            found.append({"line": lineno, "text": m.group(), "value": -value if sign in ("-", "−") else value,
                          "places": places, "magnitude": sign in ("±", "+-"), "label": name,
                          "context": line.strip()})
    return found


def stored_values(root: Path = ROOT) -> tuple[list[float], set[int], dict[str, list[float]]]:
    """Every number in the committed result files (lists longer than LONG_LIST left out); every integer among them
    together with those lists' lengths (a per-item list's length is its n); and per key name (``norm``) the numbers
    stored anywhere under a key of that name."""
    values, integers, by_key = [], set(), {}

    def walk(x, keys):
        if isinstance(x, bool) or x is None or isinstance(x, str):
            return
        if isinstance(x, (int, float)):
            values.append(float(x))
            for key in keys:
                by_key.setdefault(key, []).append(float(x))
            if float(x).is_integer():
                integers.add(int(x))
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, keys | {norm(str(k))})
        elif isinstance(x, list):
            if len(x) > LONG_LIST:
                integers.add(len(x))
                return
            for v in x:
                walk(v, keys)

    for pattern in RESULT_FILES:
        for path in sorted(root.glob(pattern)):
            walk(json.loads(path.read_text()), frozenset())
    assert values, f"no result files {RESULT_FILES} under {root}"
    return values, integers, by_key


def candidates(number: dict, values: list[float], by_key: dict[str, list[float]]) -> list[float]:
    """The stored values ``number`` may be: those under a key its label ends with ("parent-child 0.901": the values
    stored under "parent-child" keys), else all of them."""
    words = number["label"].split()
    for i in range(max(0, len(words) - 3), len(words)):
        if " ".join(words[i:]) in by_key:
            return by_key[" ".join(words[i:])]
    return values


def matches(number: dict, values: list[float]) -> bool:
    """A stored value that rounds to ``number`` at its written precision (half a unit of its last digit either way,
    so a stored half rounds either way)."""
    half = 0.5 * 10 ** -number["places"] * (1 + 1e-9) + 1e-12
    if number["magnitude"]:
        return any(abs(abs(v) - number["value"]) <= half for v in values)
    return any(abs(v - number["value"]) <= half for v in values)


def unmatched(text: str, heading: str, tables_only: bool = False) -> list[str]:
    """The README numbers of a section not found among the stored values: decimals, and sample sizes (n=K)."""
    values, integers, by_key = stored_values()
    lines = section(text, heading, tables_only)
    missing = [f"README.md:{d['line']}: {d['text']!r}" + (f" (as {d['label']!r})" if d["label"] else "")
               + f" not found ({d['context'][:110]})"
               for d in decimals(lines) if not matches(d, candidates(d, values, by_key))]
    for lineno, line in lines:
        for m in SAMPLE_SIZE.finditer(line):
            missing += [f"README.md:{lineno}: 'n={n}' is no stored integer ({line.strip()[:110]})"
                        for n in filter(None, m.group("n", "m")) if int(n) not in integers]
    return missing


# (section heading, table rows only): the results sections. The offline judge's prose also describes runs that are
# measured but not committed (another seed, an unshipped verifier), so only its table is held to outputs/.
SECTIONS = [("What the reference runs show", False), ("The offline judge", True)]


@pytest.mark.parametrize("heading, tables_only", SECTIONS)
def test_readme_numbers_are_in_the_committed_outputs(heading, tables_only):
    missing = unmatched(README.read_text(), heading, tables_only)
    assert not missing, (f"{len(missing)} README number(s) not found in {', '.join(RESULT_FILES)}:\n"
                         + "\n".join(missing))


def seconds(m: re.Match) -> tuple[float, float]:
    """A STAGE_TIME match as (seconds, tolerance): half a unit of its last written field."""
    if m.group("only") is not None:
        places = len(m.group("only").partition(".")[2])
        return float(m.group("only")), 0.5 * 10 ** -places
    if m.group("sec") is not None:
        return int(m.group("min")) * 60 + int(m.group("sec")), 0.5
    return int(m.group("min")) * 60, 30.0


def stage_dir(stage: str, profile: str) -> Path | None:
    return next(iter(sorted(OUTPUTS.glob(f"{stage}_*/{profile}"))), None)


def timed_afresh(stage: str, profile: str) -> bool:
    """Whether run.json's seconds time the stage's work: an evaluation stage (04) re-rendered from its results store
    generated nothing (metrics.json "runs"), so its run.json times the render, not the run the README describes."""
    path = stage_dir(stage, profile) / "metrics.json"
    runs = json.loads(path.read_text()).get("runs") if path.exists() else None
    if not isinstance(runs, dict):
        return True
    generated = [task.get("generated", 0) for cand in runs.values() if isinstance(cand, dict)
                 for task in cand.values() if isinstance(task, dict)]
    return not generated or sum(generated) > 0


def stage_times(text: str) -> list[tuple[int, str, str, re.Match]]:
    """(line, profile, stage, match) for every stage time the README gives for a named profile: the "Times are per
    stage" sentence ("smoke 01 12 s, 02 2 min 5 s, ...; cpu_long 01 13 s, ...") and the notebooks table, whose time
    column is headed by its profile ("smoke, 2 cores")."""
    profiles = sorted(p.name for p in OUTPUTS.glob("01_*/*") if p.is_dir())
    lines = text.splitlines()
    found = []
    start = next((i for i, line in enumerate(lines) if line.startswith("Times are per stage")), None)
    if start is not None:
        end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
        paragraph = "\n".join(lines[start:end])  # matched as one line, so a time may wrap
        profile = None
        for token in re.finditer(rf"\b({'|'.join(map(re.escape, profiles))})\b|{STAGE_TIME.pattern}",
                                 paragraph.replace("\n", " ")):
            if token.group(1):
                profile = token.group(1)
            elif profile:
                found.append((start + 1 + paragraph.count("\n", 0, token.start()), profile, token.group("stage"),
                              token))
    header = None
    for i, line in enumerate(lines):
        if line.startswith("| notebook |"):
            header = next((p for p in profiles if re.search(rf"\b{re.escape(p)}\b", line.split("|")[-2])), None)
        elif header and line.startswith("| `0"):
            stage = line.split("`")[1][:2]
            m = STAGE_TIME.fullmatch(f"{stage} {line.rstrip(' |').split('|')[-1].strip()}")
            if m:
                found.append((i + 1, header, stage, m))
        elif not line.startswith("|"):
            header = None
    return found


def test_readme_stage_times_are_the_committed_run_seconds():
    times = stage_times(README.read_text())
    assert times, "README.md gives no stage times for a named profile"
    wrong = []
    for lineno, profile, stage, m in times:
        path = stage_dir(stage, profile)
        if path is None:
            wrong.append(f"README.md:{lineno}: {profile} {stage}: no committed outputs/{stage}_*/{profile}/")
            continue
        if not timed_afresh(stage, profile):
            continue  # run.json times a re-render from the store; the README's time is not in outputs/
        written, tolerance = seconds(m)
        actual = json.loads((path / "run.json").read_text()).get("seconds") if (path / "run.json").exists() else None
        if actual is None:
            wrong.append(f"README.md:{lineno}: {profile} {stage}: {path.relative_to(ROOT)}/run.json has no seconds")
            continue
        if abs(written - actual) > tolerance + 1e-9:
            wrong.append(f"README.md:{lineno}: {profile} {stage} {m.group().split(' ', 1)[1]!r} but "
                         f"{path.relative_to(ROOT)}/run.json says {actual} s")
    assert not wrong, "README stage times that differ from run.json:\n" + "\n".join(wrong)


def test_decimals_reads_numbers_as_the_readme_writes_them():
    lines = [(1, "| parent-child 0.901, drug 0.69 -> 0.99 | -0.21 [-0.38, +0.42] (n=29) | P(YES) 0.44-0.59 |"),
             (2, "Qwen2.5-VL, trl 1.15.0, 2.21 s, 5 min 44 s, 36% of 180, +-0.2, `threshold_0.6`, 34.0x")]
    got = [(d["text"], d["value"], d["places"], d["label"], d["magnitude"]) for d in decimals(lines)]
    assert got == [("0.901", 0.901, 3, "parent child", False), ("0.69", 0.69, 2, "drug", False),
                   ("0.99", 0.99, 2, "drug", False), ("-0.21", -0.21, 2, "", False), ("-0.38", -0.38, 2, "", False),
                   ("+0.42", 0.42, 2, "", False), ("0.44", 0.44, 2, "", False), ("0.59", 0.59, 2, "", False),
                   ("36%", 0.36, 2, "", False), ("+-0.2", 0.2, 1, "", True), ("34.0x", 34.0, 1, "", False)]
    number = decimals([(1, "parent-child 0.901")])[0]
    assert not matches(number, [0.8987654320987655]) and matches(number, [0.9005, 0.90149])
    assert candidates(number, [0.901], {"parent child": [0.899]}) == [0.899]
