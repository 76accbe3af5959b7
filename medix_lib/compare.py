"""Ablations compared: one stage's variants side by side, from what each run committed (``metrics.json``,
``run.json``), into one table (``comparison.csv``, ``comparison.md``) and one figure (``comparison.png``/``.svg``) under
``<outputs root>/<stage>/comparison/`` (``python -m medix_lib compare --stage NN``).

The first variant is the reference (default order: ``smoke`` first, then the rest by name). A variant that is not
comparable with it, because its run used other code (``git_commit``), another seed, another profile or other data
(the dataset folder, training rows or evaluation rows its run recorded), is flagged in the ``flags`` column and in a
warning, never silently compared. ``params_changed`` names the parameters its params file changed (the ablation).
Nothing is re-run or re-scored: the numbers are the metrics' own.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from medix_lib import config

FOLDER = "comparison"  # outputs/<stage>/comparison: never a variant
PAIRING = "unpaired"  # 04: accuracies of two runs, each on its own items; no item-level pairing, no CI of the diff
_NOT_PARAMS = ("variant", "output_dir")


class CompareError(ValueError):
    """A stage or variant that cannot be compared; the message names it and the valid ones."""


@dataclass
class Comparison:
    stage: str
    variants: list[str]
    rows: list[dict]  # the table, one dict per row, columns in order
    flags: dict[str, list[str]]  # variant -> why it is not comparable with the reference (empty: comparable)
    folder: Path
    files: list[Path] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return self.variants[0]

    def warnings(self) -> list[str]:
        return [f"{self.stage}/{v} is not comparable with {self.reference}: {flag}"
                for v in self.variants for flag in self.flags[v]]


# ------------------------------------------------------------------------------------------------ reading runs
def available(root: Path, stage: str) -> list[str]:
    """Variant folders of ``stage`` under ``root`` holding a ``metrics.json``: ``smoke`` first, then by name."""
    folder = Path(root) / stage
    names = sorted(p.parent.name for p in folder.glob("*/metrics.json") if p.parent.name != FOLDER)
    return sorted(names, key=lambda n: n != "smoke")


def load(root: Path, stage: str, variants: list[str] | None) -> dict[str, dict]:
    """variant -> {"metrics", "run"} (``run`` is {} without a ``run.json``), in the order to compare them."""
    valid = available(root, stage)
    if not valid:
        raise CompareError(f"no variant of {stage} under {config.shown(Path(root))} has a metrics.json: run the stage "
                           f"first (python -m medix_lib run --only {stage[:2]} --variants ...)")
    names = list(dict.fromkeys(variants)) if variants else valid
    bad = [n for n in names if n not in valid]
    if bad:
        raise CompareError(f"no metrics.json for variant(s) {', '.join(map(repr, bad))} of {stage} under "
                           f"{config.shown(Path(root) / stage)}; variants with metrics: {', '.join(valid)}")
    out = {}
    for name in names:
        folder = Path(root) / stage / name
        run = folder / "run.json"
        out[name] = {"metrics": _read(folder / "metrics.json"), "run": _read(run) if run.is_file() else {}}
    return out


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CompareError(f"{config.shown(path)} is not JSON: {err}") from None


# ------------------------------------------------------------------------------------------------ comparability
def short_commit(commit: str | None) -> str:
    """A commit as its first 7 characters; an unrecorded one as "unknown".

    >>> short_commit("79e81839aed8a17c3576c7e3af02dd02a6dfa5a0"), short_commit(None)
    ('79e8183', 'unknown')
    """
    return commit[:7] if commit else "unknown"


def data_read(stage: str, metrics: dict, params: dict) -> dict:
    """What a run read, as its params and metrics record it (no data hash is recorded): the dataset folder and how
    many rows it used. 01 reads its sources; 02 its dataset and gold pairs; 03 its dataset and RL prompts; 04 its
    dataset, task sources and rows per task."""
    if stage == config.STAGES["01"]:
        return {"sources": params.get("sources")}
    data = {"dataset": params.get("dataset_dir")}
    if stage == config.STAGES["02"]:
        data["gold pairs"] = (metrics.get("gold_pairs") or {}).get("n")
    elif stage == config.STAGES["03"]:
        data["training rows"] = metrics.get("train_rows")
    elif stage == config.STAGES["04"]:
        data["task sources"] = params.get("task_sources") or {}
        for task, by_model in (metrics.get("tasks") or {}).items():
            sizes = sorted({s.get("n") for s in by_model.values() if s})
            if sizes:
                data[f"{task} rows"] = sizes[0] if len(sizes) == 1 else sizes
    return {k: v for k, v in data.items() if v is not None}


def signature(stage: str, entry: dict) -> dict:
    """The facts two runs must share to be compared: code, seed, profile, data read, and a finished run."""
    run, metrics = entry["run"], entry["metrics"]
    params = run.get("params") or {}
    return {"code": short_commit(run.get("git_commit")) if run else "unknown",
            "seed": params.get("seed", run.get("seed", "unknown")),
            "profile": metrics.get("profile", params.get("profile")),
            "data": data_read(stage, metrics, params),
            "status": run.get("status", "no run.json")}


def differences(this: dict, reference: dict) -> list[str]:
    """Why ``this`` run is not comparable with ``reference``, one line per fact (this value first).

    >>> differences({"code": "d4e5f6a", "seed": 1, "data": {"dataset": "01/a"}},
    ...             {"code": "a1b2c3d", "seed": 0, "data": {"dataset": "01/b"}})
    ['different code: d4e5f6a vs a1b2c3d', 'different seed: 1 vs 0', 'different data: dataset 01/a vs 01/b']
    """
    out = []
    for key in (k for k in ("code", "seed", "profile") if k in this):
        mine, theirs = this[key], reference.get(key)
        if mine in ("unknown", None) and theirs in ("unknown", None):
            out.append(f"unknown {key}: not recorded")
        elif mine != theirs:
            out.append(f"different {key}: {mine} vs {theirs}")
    data, ref_data = this.get("data", {}), reference.get("data", {})
    out += [f"different data: {k} {data[k]} vs {ref_data[k]}" for k in data if k in ref_data and data[k] != ref_data[k]]
    if this.get("status", "ok") != "ok":
        out.append(f"run status: {this['status']}")
    return out


def params_changed(this: dict, reference: dict, most: int = 6) -> str:
    """The parameters whose values differ from the reference run's, by name (the first ``most``).

    >>> params_changed({"loss_type": "dapo", "beta": 0.0, "variant": "dapo"}, {"loss_type": "grpo", "beta": 0.0})
    'loss_type'
    """
    keys = [k for k in dict.fromkeys([*reference, *this]) if k not in _NOT_PARAMS and this.get(k) != reference.get(k)]
    return ", ".join(keys[:most]) + (f" (+{len(keys) - most} more)" if len(keys) > most else "")


def algorithm(params: dict) -> str:
    """Notebook 03's RL algorithm from its params: TRL's ``loss_type``, GSPO where the importance ratio is per sequence.

    >>> algorithm({"loss_type": "grpo", "importance_sampling_level": "sequence"}), algorithm({"loss_type": "dapo"})
    ('gspo', 'dapo')
    """
    if params.get("importance_sampling_level") == "sequence":
        return "gspo" if params.get("loss_type", "grpo") == "grpo" else f"{params['loss_type']} (sequence-level)"
    return params.get("loss_type", "unknown")


# ------------------------------------------------------------------------------------------------ rows per stage
def _num(value):
    return float("nan") if value is None else value


def _rows_01(m: dict, params: dict) -> list[dict]:
    splits = m.get("splits") or {}
    return [{"rows": m.get("rows"), "train_rows": (splits.get("train") or {}).get("rows"),
             "test_rows": (splits.get("test") or {}).get("rows"),
             "leaks": (m.get("leakage") or {}).get("n_leaks"), "build_seconds": m.get("build_seconds")}]


def _rows_02(m: dict, params: dict) -> list[dict]:
    judge = m.get("judge_meta") or {}
    by_label = (m.get("gold_pairs") or {}).get("mean_by_label") or {}
    probes = {k: v for k, v in (m.get("probe_max_composite") or {}).items() if not k.startswith("control_")}
    over = sorted({v["probe"] for v in m.get("probe_violations") or [] if not v["probe"].startswith("control_")})
    top = max(probes, key=probes.get) if probes else None
    return [{"judge_accuracy": _num(judge.get("accuracy")), "judge_auc": _num(judge.get("auc")),
             "judge_kappa": _num(judge.get("cohen_kappa")),
             "composite_gold_yes": _num((by_label.get("True") or {}).get("composite")),
             "composite_gold_no": _num((by_label.get("False") or {}).get("composite")),
             "probes_over_ceiling": len(over), "probes_over": ", ".join(over),
             "max_probe_composite": _num(probes.get(top)), "max_probe": top or ""}]


def _rows_03(m: dict, params: dict) -> list[dict]:
    effect = (m.get("learning_effect") or {}).get("all") or {}
    return [{"algorithm": algorithm(params), "steps": m.get("steps"), "effect": _num(effect.get("diff")),
             "effect_ci_low": _num(effect.get("ci_low")), "effect_ci_high": _num(effect.get("ci_high")),
             "effect_n_first": effect.get("n_a"), "effect_n_last": effect.get("n_b"),
             "seconds_per_step": m.get("seconds_per_step")}]


def _model(params: dict, candidate: str) -> str:
    adapter = (params.get("candidates") or {}).get(candidate)
    return "+".join(p for p in (params.get("policy_model"), adapter) if p) or "unknown"


def _rows_04(m: dict, params: dict) -> list[dict]:
    return [{"judge": m.get("judge"), "task": task, "candidate": model, "model": _model(params, model),
             "n": s.get("n"), "accuracy": _num(s.get("accuracy")), "ci_low": _num(s.get("ci_low")),
             "ci_high": _num(s.get("ci_high"))}
            for task, by_model in (m.get("tasks") or {}).items() for model, s in by_model.items() if s]


def _diff_04(rows: list[dict], reference: str) -> None:
    """Each row's accuracy minus the reference variant's on the same task and candidate (unpaired)."""
    ref = {(r["task"], r["candidate"]): r for r in rows if r["variant"] == reference}
    for r in rows:
        other = ref.get((r["task"], r["candidate"]))
        if r["variant"] == reference or other is None:
            r["diff_vs_reference"], r["pairing"] = float("nan"), ""
            continue
        r["diff_vs_reference"] = r["accuracy"] - other["accuracy"]
        r["pairing"] = PAIRING + (f"; different model: {r['model']} vs {other['model']}"
                                  if r["model"] != other["model"] else "")


ROWS = {"01": _rows_01, "02": _rows_02, "03": _rows_03, "04": _rows_04}


# ------------------------------------------------------------------------------------------------ the comparison
def compare(stage: str, variants: list[str] | None = None, output_root: str | Path | None = None) -> Comparison:
    """Read the variants' runs of ``stage`` (``02``, ``2`` or ``02_design_rewards``) under ``output_root`` (default
    ``outputs/``), write the table and figure to ``<root>/<stage>/comparison/`` and return the comparison."""
    try:
        stage = config.stage_name(str(stage))
    except config.ParamsError as err:
        raise CompareError(str(err)) from None
    root = Path(output_root) if output_root else config.OUTPUTS_DIR
    runs = load(root, stage, variants)
    names = list(runs)
    signatures = {v: signature(stage, runs[v]) for v in names}
    flags = {v: [] if v == names[0] else differences(signatures[v], signatures[names[0]]) for v in names}
    ref_params = runs[names[0]]["run"].get("params") or {}
    rows = [{"variant": v, "profile": signatures[v]["profile"], **row}
            for v in names for row in ROWS[stage[:2]](runs[v]["metrics"], runs[v]["run"].get("params") or {})]
    if stage == config.STAGES["04"]:
        _diff_04(rows, names[0])
    for row in rows:
        v = row["variant"]
        row["params_changed"] = ("(reference)" if v == names[0] else
                                 params_changed(runs[v]["run"].get("params") or {}, ref_params))
        row["flags"] = "; ".join(flags[v])
    result = Comparison(stage, names, rows, flags, root / stage / FOLDER)
    result.files = write(result)
    return result


def _cell(value) -> str:
    """A table cell in comparison.md: numbers to 4 significant digits, NaN and None blank."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def markdown(result: Comparison) -> str:
    columns = list(dict.fromkeys(k for r in result.rows for k in r))
    lines = [f"# {result.stage}: {', '.join(result.variants)} compared", "",
             f"Reference: `{result.reference}` (first variant). Numbers are each run's own `metrics.json`; "
             f"`flags` name what makes a variant not comparable with the reference.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in result.rows]
    if result.stage == config.STAGES["04"]:
        lines += ["", f"`diff_vs_reference`: accuracy minus the reference variant's on the same task and candidate, "
                      f"{PAIRING}: two runs' summary accuracies, not paired item by item (the items may differ), so "
                      f"no interval is given for it; each accuracy's own 95% bootstrap interval is."]
    warnings = result.warnings()
    lines += ["", "## Flags", ""] + ([f"- {w}" for w in warnings] or ["- none: every variant is comparable with the "
                                                                        "reference (same code, seed, profile, data)"])
    return "\n".join(lines) + "\n"


def write(result: Comparison) -> list[Path]:
    from medix_lib import plotting

    result.folder.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in result.rows for k in r))
    table = result.folder / "comparison.csv"
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
                         for r in result.rows)
    md = result.folder / "comparison.md"
    md.write_text(markdown(result))
    fig = figure(result)
    return [table, md, *plotting.save_figure(fig, result.folder, "comparison")]


# ------------------------------------------------------------------------------------------------ the figure
_02_BARS = {"judge_accuracy": "judge accuracy", "judge_auc": "judge AUC", "judge_kappa": "judge kappa",
            "composite_gold_yes": "composite\ngold YES", "composite_gold_no": "composite\ngold NO",
            "max_probe_composite": "highest probe\ncomposite"}


def _bars(ax, groups: list[str], series: dict[str, tuple], ylabel: str) -> None:
    """Grouped bars: one group per ``groups`` entry, one bar per series (values, CI low or None, CI high or None)."""
    import numpy as np

    from medix_lib.plotting import PALETTE

    width = 0.8 / max(1, len(series))
    for j, (name, (values, low, high)) in enumerate(series.items()):
        values = np.array(values, dtype=float)
        x = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * width
        ax.bar(x, np.nan_to_num(values), width, color=PALETTE[j % len(PALETTE)], label=name, edgecolor="white")
        if low is not None:
            low, high = np.array(low, dtype=float), np.array(high, dtype=float)
            ax.errorbar(x, values, yerr=[np.nan_to_num(values - low), np.nan_to_num(high - values)], fmt="none",
                        ecolor="0.25", capsize=3, lw=1)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, title="variant", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def figure(result: Comparison):
    """One figure per comparison: 01 rows per split, 02 the judge's agreement, the composite on gold pairs and the
    highest probe composite, 03 the learning effect with its 95% CI, 04 held-out accuracy per task and candidate
    with its 95% CI. A flagged variant's name carries a "*" (not comparable with the reference)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from medix_lib.plotting import PALETTE

    name = {v: v + (" *" if result.flags[v] else "") for v in result.variants}
    rows, key = result.rows, result.stage[:2]
    by_variant = {v: [r for r in rows if r["variant"] == v] for v in result.variants}
    if key == "03":
        fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(rows) + 2.0), 3.8))
        x = np.arange(len(rows))
        effect = np.array([r["effect"] for r in rows], dtype=float)
        low = np.array([r["effect_ci_low"] for r in rows], dtype=float)
        high = np.array([r["effect_ci_high"] for r in rows], dtype=float)
        for i in range(len(rows)):
            err = [[np.nan_to_num(effect[i] - low[i])], [np.nan_to_num(high[i] - effect[i])]]
            ax.errorbar(x[i], effect[i], yerr=err, fmt="o", capsize=5, color=PALETTE[i % len(PALETTE)], lw=1.5)
        ax.axhline(0, color="0.5", lw=1, ls="--")
        ax.set_xticks(x, [f"{name[r['variant']]}\n{r['algorithm']}, {r['steps']} steps" for r in rows], fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel("composite reward, last - first\nquarter of steps (95% CI)")
    elif key == "04":
        pairs = list(dict.fromkeys((r["task"], r["candidate"]) for r in rows))
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(pairs) * max(1, len(by_variant)) ** 0.5 + 2.0), 4.0))
        cells = {v: {(r["task"], r["candidate"]): r for r in rs} for v, rs in by_variant.items()}
        series = {name[v]: tuple([c.get(p, {}).get(k, np.nan) for p in pairs]
                                 for k in ("accuracy", "ci_low", "ci_high")) for v, c in cells.items()}
        _bars(ax, [f"{t}\n{c}" for t, c in pairs], series, "held-out accuracy (95% CI)")
        ax.set_ylim(0, 1.05)
    elif key == "02":
        fig, ax = plt.subplots(figsize=(8.5, 3.8))
        _bars(ax, list(_02_BARS.values()),
              {name[v]: ([rs[0][k] for k in _02_BARS], None, None) for v, rs in by_variant.items()}, "value")
        lowest = np.nanmin([float(r[k]) for r in rows for k in _02_BARS] + [0.0])  # a kappa may be negative
        ax.set_ylim(min(0.0, lowest - 0.05), 1.05)
    else:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        _bars(ax, ["train rows", "test rows"],
              {name[v]: ([_num(rs[0]["train_rows"]), _num(rs[0]["test_rows"])], None, None)
               for v, rs in by_variant.items()}, "rows")
    flagged = [v for v in result.variants if result.flags[v]]
    ax.set_title(f"{result.stage}: variants compared (reference {result.reference})"
                 + ("\n* not comparable with the reference: see comparison.md" if flagged else ""), fontsize=10)
    fig.tight_layout()
    return fig
