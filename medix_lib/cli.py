"""``python -m medix_lib <command>``: run the notebook pipeline, or use a piece of it on files."""

from __future__ import annotations

import argparse
import sys

from medix_lib import config


def _threshold(value: str) -> float | str:
    return value if value == "auto" else float(value)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class _Names(argparse.Action):
    """``--tasks a,b``, ``--tasks a b`` and ``--tasks a, b`` alike: one flat list (with ``nargs="+"``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        names = [name for value in values for name in _csv(value)]
        if not names:
            parser.error(f"{option_string} needs at least one name")
        setattr(namespace, self.dest, names)


def cmd_run(args) -> int:
    from medix_lib import pipeline

    try:
        overrides = pipeline.parse_overrides(args.set)
        if args.resume:  # continue notebook 03's training from its last checkpoint
            overrides.setdefault(config.stage_name("03"), {})["resume"] = True
        pipeline.run_pipeline(args.profile, args.only, args.variants, args.output_root, overrides,
                              progress=not args.quiet)
    except (config.ParamsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except pipeline.StageFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def judge_params(values, source: str) -> dict:
    """``Judge`` keyword arguments from a ``judge --params`` file: a mapping of ``Judge`` settings, or a stage params
    file (``params/NN_slug/<variant>.yaml``), of which only the judge settings count.

    A mapping holding any stage parameter is a stage file. Its stage is its folder's (else the first stage with all
    its keys); a key that stage does not have (``judge_modle``) fails. Its judge settings (``judge_backend``,
    ``judge_model``, ``judge_threshold``, ``judge_show_question``, ``judge_terminology``) over the stage's defaults
    make the judge that stage uses (notebook 04's: the evaluation prompt); its other keys (``profile``,
    ``judge_rounds``, ``tasks``, ...) are ignored. Anything else is read as ``Judge`` settings, an unknown one failing.
    Only settings that differ from ``Judge``'s defaults are returned; the cache is the caller's.

    >>> judge_params({"model": "m", "threshold": 0.7}, "judge.yaml")
    {'model': 'm', 'threshold': 0.7}
    """
    from dataclasses import MISSING, fields
    from pathlib import Path

    from medix_lib import judge as judge_lib
    from medix_lib import params

    values = config.yaml_value(values)
    if not isinstance(values, dict):
        raise ValueError(f"{source} must be a mapping of judge setting: value")
    stage_fields = {stage: {f.name for f in fields(cls)} for stage, cls in params.STAGE_PARAMS.items()}
    if not any(k in names for names in stage_fields.values() for k in values):
        return judge_lib.judge_settings(values, source)
    folder = Path(source).parent.name
    stage = folder if folder in stage_fields else next(
        (s for s, names in stage_fields.items() if set(values) <= names), None)
    if stage is None:
        raise ValueError(f"{source}: unknown parameter(s) {sorted(set(values) - set().union(*stage_fields.values()))}"
                         f" in a stage params file")
    unknown = sorted(set(values) - stage_fields[stage])
    if unknown:
        raise ValueError(f"{source}: unknown parameter(s) {unknown} for {stage}; its judge settings: "
                         f"{', '.join(f.name for f in fields(params.JudgeSettings))}")
    judge_keys = {f.name for f in fields(params.JudgeSettings)}
    if not judge_keys <= stage_fields[stage]:
        return {}  # a stage without a judge (01): nothing to take
    cfg = params.build(stage, {k: v for k, v in values.items() if k in judge_keys})
    judge = cfg.judges()[0] if hasattr(cfg, "judges") else cfg.judge()
    out = {}
    for f in fields(judge_lib.Judge):
        if not f.init or f.name == "cache_path":
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        if getattr(judge, f.name) != default:
            out[f.name] = getattr(judge, f.name)
    return out


def _judge_kwargs(args) -> dict:
    """The ``Judge`` of ``python -m medix_lib judge``: the ``--params`` file's settings, then the flags."""
    import yaml

    from medix_lib import judge as judge_lib

    settings = {}
    if args.params:
        with open(args.params) as fh:
            settings = judge_params(yaml.safe_load(fh) or {}, args.params)
    flags = {"backend": args.backend, "model": args.model, "template": args.template,
             "threshold": args.threshold, "cache_path": args.cache, "base_url": args.base_url,
             "show_question": True if args.show_question else None,
             "terminology": False if args.no_terminology else None}
    settings.update({k: v for k, v in flags.items() if v is not None})
    # the same verdict cache the notebooks share, unless told otherwise
    settings["cache_path"] = None if args.no_cache else settings.get("cache_path", judge_lib.machine_cache_path())
    return settings


def cmd_judge(args) -> int:
    from medix_lib import judge as judge_lib

    try:
        judge = judge_lib.Judge(**_judge_kwargs(args))
        stats = judge_lib.judge_file(judge, args.input, args.output, progress=not args.quiet)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"judge {judge.backend}:{judge.model} prompt {judge.prompt_hash}: {stats}", file=sys.stderr)
    return 0


def _reward_params(spec: str, output: str) -> config.StageParams:
    """Notebook 02's params from a variant name (``no_judge``) or a YAML file of its keys (over the stage defaults)."""
    from pathlib import Path

    import yaml

    from medix_lib import params

    path = Path(spec)
    if not path.is_file():
        return params.load("02", spec, output_dir=Path(output).resolve().parent)
    values = yaml.safe_load(path.read_text()) or {}
    valid = params.defaults("02")
    unknown = sorted(set(values) - set(valid)) if isinstance(values, dict) else ["(not a mapping)"]
    if unknown:
        raise config.ParamsError(f"{spec}: unknown parameter(s) {unknown}; valid: {', '.join(sorted(valid))}")
    return params.build("02", {**values, "variant": path.stem, "output_dir": str(Path(output).resolve().parent)})


def cmd_train_verifier(args) -> int:
    from pathlib import Path

    from medix_lib import verifier

    try:
        record = verifier.train(args.preset, Path(args.output) if args.output else None, progress=not args.quiet)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"verifier [{args.preset}]: validation AUC {record['validation']['auc']:.3f}, threshold "
          f"{record['threshold']:.3f}, clinical held-out AUC {record['clinical_heldout']['auc']:.3f}, "
          f"{record['train_seconds']:.0f} s", file=sys.stderr)
    return 0


def cmd_combine_verifiers(args) -> int:
    from pathlib import Path

    from medix_lib.verifier import ensemble

    try:
        rec = ensemble.combine(tuple(args.members.split(",")), Path(args.output) if args.output else None,
                               progress=not args.quiet)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{rec['name']} ({rec['combination']} of {', '.join(rec['members'])}): validation AUC "
          f"{rec['validation']['auc']:.3f}, threshold {rec['threshold']:.3f}, clinical held-out AUC "
          f"{rec['clinical_heldout']['auc']:.3f}", file=sys.stderr)
    return 0


def cmd_rewards(args) -> int:
    from medix_lib import rewards

    try:
        cfg = _reward_params(args.params, args.output)
        means = rewards.score_file(cfg, args.input, args.output)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"rewards [{cfg.variant}] mean per component: " + ", ".join(f"{k}={v:.3f}" for k, v in means.items()),
          file=sys.stderr)
    return 0


def cmd_evaluate_verifier(args) -> int:
    from medix_lib import verifier

    for line in verifier.report(args.model, args.output, zero_shot=not args.no_zero_shot, max_test=args.max_test,
                                responses=args.responses):
        print(line)
    return 0


def cmd_export(args) -> int:
    from medix_lib import policy

    try:
        folder = policy.export(args.model, args.adapter, args.output)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.model} + {args.adapter} merged -> {folder}", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    """Notebook 03's training without the notebook: what `accelerate launch -m medix_lib train` runs on each process."""
    from pathlib import Path

    from medix_lib import params, pipeline, training

    try:
        overrides = pipeline.parse_overrides([f"03.{s}" for s in args.set]).get(config.stage_name("03"), {})
        if args.resume:
            overrides["resume"] = True
        output = Path(args.output_root) / config.stage_name("03") / args.variant if args.output_root else None
        cfg = params.load("03", args.variant, output, overrides)
    except (config.ParamsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = training.train(cfg, progress=not args.quiet)
    print(f"trained {result['steps']} steps in {result['seconds']:.0f} s -> {result['model_dir']}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    """Notebook 04's evaluation from the command line: same defaults (the stage's params), same store and report."""
    import json
    from pathlib import Path

    from medix_lib import benchmarks, evaluation, params

    if args.list_tasks:
        rows = benchmarks.list_tasks()
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['protocol']:<7} {r['modality']:<6} {r['source']}")
        return 0
    try:
        if args.candidate_base_url and (args.adapter or not args.model):
            raise ValueError("--candidate-base-url needs --model (the name its server gives the model) and no "
                             "--adapter (the server applies its own)")
        values = {"candidates": {args.name: args.adapter or ""}, "compare": [],
                  "task_sources": dict(s.split("=", 1) for s in args.source), "max_eval_rows": args.limit,
                  "variant": "cli", "output_dir": str(Path(args.output).resolve())}
        # a served model is named as its server names it: no local alias, path or hub id to check
        flags = {"tasks": args.tasks, "policy_model": None if args.candidate_base_url else args.model,
                 "judge_model": args.judge, "judge_backend": args.judge_backend, "judge_rounds": args.rounds,
                 "max_new_tokens": args.max_new_tokens, "system_prompt": args.system_prompt,
                 "answer_guards": args.guards, "image_control": args.image_control}
        values.update({k: v for k, v in flags.items() if v is not None})
        cfg = params.build("04", values)
        if args.base_url:
            import os

            os.environ["MEDIX_JUDGE_BASE_URL"] = args.base_url
        store = evaluation.ResultsStore(Path(cfg.output_dir) / "results.sqlite")
        judges = cfg.judges()
        candidate = evaluation.Candidate(args.name, args.model if args.candidate_base_url else cfg.policy_model,
                                         args.adapter, args.candidate_base_url)
        evaluation.evaluate(candidate, cfg.task_rows(), judges, store, cfg.protocol(), rounds=cfg.judge_rounds,
                            replace_changed=cfg.replace_changed)
        result = evaluation.report(store, [args.name], cfg.tasks, evaluation.judge_key(judges[0]),
                                   judges[0].prompt_hash, cfg.n_bootstrap, cfg.seed)
    except (config.ParamsError, ValueError, KeyError, FileNotFoundError, evaluation.StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    (Path(cfg.output_dir) / "report.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    evaluation.export_submissions(store, [args.name], cfg.tasks, evaluation.judge_key(judges[0]),
                                  judges[0].prompt_hash, Path(cfg.output_dir) / "submissions")
    table = evaluation.table(result)
    print(table.attrs["caption"])
    print(table.to_string())
    if result["picture_reliance"]:
        print("\naccuracy with and without the picture (image tasks):")
        print(evaluation.reliance_table(result).to_string())
    return 0


def cmd_train_projector(args) -> int:
    from pathlib import Path

    from medix_lib import artifacts, vlm

    folder = vlm.train_projector(Path(args.output) if args.output else None, progress=not args.quiet)
    rec = artifacts.record(folder)
    print(f"projector: {rec['steps']} steps in {rec['train_seconds']:.0f} s -> {folder}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from medix_lib import bench

    result = bench.run(quick=args.quick, output=args.output, only=args.only.split(",") if args.only else None)
    for line in bench.summary_lines(result):
        print(line)
    return 0


def cmd_memory(args) -> int:
    from medix_lib import memory, pipeline

    try:
        if args.total_gib:  # free = total - 0.5 GiB for the pipeline's own CUDA context
            total, free, device = args.total_gib * memory.GIB, (args.total_gib - 0.5) * memory.GIB, \
                f"a {args.total_gib:g} GiB card"
        else:
            import torch

            if not torch.cuda.is_available():
                raise memory.MemoryPlanError("no CUDA GPU here: pass --total-gib to plan for a card of that size")
            free, total = (float(x) for x in torch.cuda.mem_get_info(0))
            device = torch.cuda.get_device_name(0)
        if args.serve:
            share = memory.server_utilization(args.serve, total, args.max_model_len)
            print(f"vllm serve {args.serve} --max-model-len {args.max_model_len} --gpu-memory-utilization {share:.2f}"
                  f"  # {share * total / memory.GIB:.1f} of {total / memory.GIB:.1f} GiB")
            return 0
        runs = pipeline.plan(args.profile, args.only, overrides=pipeline.parse_overrides(args.set))
        memory.check(runs, free, total, device, unsloth=True if args.total_gib else None)
    except (config.ParamsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_compare(args) -> int:
    """One stage's variants side by side from their committed metrics; a variant not comparable with the first (other
    code, seed, profile or data) is flagged and warned about, never silently compared."""
    from medix_lib import compare

    try:
        result = compare.compare(args.stage, args.variants, args.output_root)
    except (compare.CompareError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in result.warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(compare.markdown(result), end="")
    print(f"{result.stage}: {len(result.variants)} variants -> {config.shown(result.folder)}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m medix_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute notebooks 01-04 with papermill")
    run.add_argument("--profile", default="smoke",
                     help="params variant used for every stage (default: smoke; e.g. gpu)")
    run.add_argument("--only", type=_csv, default=None, help="comma-separated stages, e.g. 03 or 02,04")
    run.add_argument("--variants", type=_csv, default=None,
                     help="comma-separated params files of one stage (with --only), e.g. all,no_judge")
    run.add_argument("--output-root", default=None, help="write outputs here instead of outputs/")
    run.add_argument("--set", action="append", default=[], metavar="NN.KEY=VALUE",
                     help="override one parameter of one stage, e.g. --set 03.max_steps=2 (repeatable)")
    run.add_argument("--resume", action="store_true",
                     help="notebook 03 continues from the last checkpoint of its output folder (same params)")
    run.add_argument("--quiet", action="store_true", help="no per-cell progress bar")
    run.set_defaults(func=cmd_run)

    judge = sub.add_parser("judge", help="judge (reference, prediction) pairs from a JSONL file")
    judge.add_argument("--input", required=True, help="JSONL rows with reference, prediction (question optional)")
    judge.add_argument("--output", required=True, help="JSONL: each input row plus label, p_yes, error, cached, "
                                                       "judge, prompt_hash, backend, rule")
    judge.add_argument("--params", default=None, help="YAML of Judge settings, or a stage params file (its judge "
                                                      "settings are used, its other keys ignored), e.g. "
                                                      "params/04_evaluate_with_judge/gpu.yaml")
    judge.add_argument("--backend", default=None, help="judge backend: transformers or openai")
    judge.add_argument("--model", default=None, help="judge model: offline alias, hub id, local path or served name "
                                                     "(default: the shipped judge, medix-verifier)")
    judge.add_argument("--template", default=None,
                       help="prompt template: reward-v3 (the accuracy reward's) or eval-v3 (the evaluator's)")
    judge.add_argument("--threshold", type=_threshold, default=None,
                       help="P(YES) at or above this is YES (default auto: the one recorded with the judge model)")
    judge.add_argument("--cache", default=None, help="SQLite verdict cache (default: the machine cache the notebooks "
                                                     "share)")
    judge.add_argument("--no-cache", action="store_true", help="judge every item anew, store nothing")
    judge.add_argument("--base-url", default=None, help="OpenAI-compatible server (key: $OPENAI_API_KEY)")
    judge.add_argument("--show-question", action="store_true", help="show the judge the question too")
    judge.add_argument("--no-terminology", action="store_true", help="ask the model even where HPO or the drug "
                                                                    "dictionary settles a pair (medix_lib.judge.terms)")
    judge.add_argument("--quiet", action="store_true", help="no progress bar")
    judge.set_defaults(func=cmd_judge)

    scorer = sub.add_parser("rewards", help="score completions with every reward component and the composite")
    scorer.add_argument("--input", required=True, help="JSONL rows with completion, answer, modality (question "
                                                       "optional)")
    scorer.add_argument("--output", required=True, help="JSONL: each input row plus one column per component, "
                                                        "composite, format_issues and refused")
    scorer.add_argument("--params", default="smoke", help="a params variant of 02_design_rewards (e.g. no_judge, "
                                                          "gpu) or a YAML file of its keys (default: smoke)")
    scorer.set_defaults(func=cmd_rewards)

    trainer = sub.add_parser("train-verifier", help="retrain one of the offline judge's verifiers from scratch and "
                                                    "write it as a shipped artifact (medix_lib/assets/<name>)")
    trainer.add_argument("--preset", default="smoke", help="verifier preset: smoke (medix-verifier-135m), gemma "
                                                           "(medix-verifier-270m), ci, gpu")
    trainer.add_argument("--output", default=None, help="write the artifact here instead of the shipped folder")
    trainer.add_argument("--quiet", action="store_true", help="no progress bar")
    trainer.set_defaults(func=cmd_train_verifier)

    combo = sub.add_parser("combine-verifiers", help="the offline judge: average trained verifiers' YES-NO margins "
                                                     "and choose its threshold on their shared validation pairs")
    combo.add_argument("--members", default="medix-verifier-135m,medix-verifier-270m",
                       help="comma-separated verifier aliases or artifact folders")
    combo.add_argument("--output", default=None, help="write the record here instead of medix_lib/assets/"
                                                      "medix-verifier")
    combo.add_argument("--quiet", action="store_true", help="no progress bar")
    combo.set_defaults(func=cmd_combine_verifiers)

    tr = sub.add_parser("train", help="notebook 03's training without the notebook (for accelerate launch)")
    tr.add_argument("--variant", default="smoke", help="params file of 03_train_grpo (default: smoke)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    tr.add_argument("--output-root", default=None, help="outputs root (default: outputs/)")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)

    ex = sub.add_parser("export", help="merge a LoRA adapter (notebook 03's model/ or sft_model/) into its base and "
                                       "write a standalone model folder with its card (transformers, vLLM)")
    ex.add_argument("--model", required=True, help="the base the adapter was trained on: offline alias (the smoke "
                                                    "profile's: medix-vlm-135m), hub id or local path")
    ex.add_argument("--adapter", required=True, help="the adapter folder, e.g. outputs/03_train_grpo/smoke/model")
    ex.add_argument("--output", required=True, help="a new folder for the merged model")
    ex.set_defaults(func=cmd_export)

    ev = sub.add_parser("evaluate", help="evaluate a model on benchmark tasks with a reference-based judge (the "
                                         "paper's protocol); results store and report under --output")
    ev.add_argument("--list-tasks", action="store_true", help="print the task registry and exit")
    ev.add_argument("--model", default=None, help="policy: offline alias, hub id or local path (default: the smoke "
                                                  "policy)")
    ev.add_argument("--adapter", default=None, help="a PEFT adapter folder over --model")
    ev.add_argument("--candidate-base-url", default=None, metavar="URL",
                    help="generate through this OpenAI-compatible server (vLLM, `transformers serve`, a hosted API) "
                         "serving --model, instead of loading it here (key: $OPENAI_API_KEY)")
    ev.add_argument("--name", default="model", help="the candidate's name in the store and report")
    ev.add_argument("--tasks", nargs="+", action=_Names, default=None, metavar="TASK",
                    help="task names, space- or comma-separated: --tasks medqa pubmedqa (see --list-tasks)")
    ev.add_argument("--source", action="append", default=[], metavar="TASK=PATH",
                    help="a local copy of a task's data in its published layout (repeatable)")
    ev.add_argument("--judge", default=None, help="judge model (default: the shipped verifier)")
    ev.add_argument("--judge-backend", default=None, help="transformers or openai")
    ev.add_argument("--base-url", default=None, help="OpenAI-compatible judge server (key: $OPENAI_API_KEY)")
    ev.add_argument("--rounds", type=int, default=None, help="majority of this many judge rounds")
    ev.add_argument("--limit", type=int, default=0, help="rows per task (0: all)")
    ev.add_argument("--max-new-tokens", type=int, default=None, help="generation budget per answer")
    ev.add_argument("--system-prompt", action=argparse.BooleanOptionalAction, default=None,
                    help="give the output-contract system prompt (the paper's protocol: no)")
    ev.add_argument("--guards", action=argparse.BooleanOptionalAction, default=None,
                    help="refuse hedges, judge instructions and padding before judging")
    ev.add_argument("--image-control", default=None, metavar="CONTROL",
                    help="ask image tasks again with the picture replaced: blank (mid-grey) or shuffled (another "
                         "row's, from another source); none: not at all (default: the params' image_control)")
    ev.add_argument("--output", default="outputs/eval", help="folder for results.sqlite and report.json")
    ev.set_defaults(func=cmd_evaluate)

    proj = sub.add_parser("train-projector",
                          help="retrain the offline VLM's projector alignment from scratch and write it as the shipped "
                               "artifact (medix_lib/assets/medix-vlm-projector)")
    proj.add_argument("--output", default=None, help="write the artifact here instead of the shipped folder")
    proj.add_argument("--quiet", action="store_true", help="no progress bar")
    proj.set_defaults(func=cmd_train_projector)

    report = sub.add_parser("evaluate-verifier", help="meta-evaluate a trained verifier on its held-out pairs and "
                                                      "the hand-written clinical pairs (outputs/verifier/smoke)")
    report.add_argument("--model", default="medix-verifier", help="the verifier: alias or artifact folder")
    report.add_argument("--output", default=None, help="folder for meta_evaluation.json, summary.txt and figures")
    report.add_argument("--max-test", type=int, default=None, help="score only the first N test pairs")
    report.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot baseline (slowest part)")
    report.add_argument("--responses", default=None,
                        help="a notebook 04 responses.jsonl: also judge each policy answer against another open "
                             "question's reference (wrong by construction)")
    report.set_defaults(func=cmd_evaluate_verifier)

    bench = sub.add_parser("bench", help="measure where time goes on this machine (judge, HTTP judge, rewards, "
                                         "scaling, GRPO step, pipeline); writes outputs/bench/<mode>/bench.json and "
                                         "figures")
    bench.add_argument("--quick", action="store_true", help="small sizes, seconds per section (what CI runs)")
    bench.add_argument("--output", default=None, help="folder for bench.json and figures")
    bench.add_argument("--only", default=None, help="comma-separated sections to measure again (the others are kept "
                                                    "from the folder's bench.json), e.g. grpo_step")
    bench.set_defaults(func=cmd_bench)

    cmp = sub.add_parser("compare", help="one stage's variants side by side from their committed metrics.json and "
                                         "run.json: a table and a figure in outputs/<stage>/comparison/, variants "
                                         "with other code, seed, profile or data flagged")
    cmp.add_argument("--stage", required=True, help="02, 2 or 02_design_rewards (01 to 04)")
    cmp.add_argument("--variants", type=_csv, default=None,
                     help="comma-separated variants, the first the reference (default: every variant folder with a "
                          "metrics.json, smoke first)")
    cmp.add_argument("--output-root", default=None, help="outputs root to read and write (default: outputs/)")
    cmp.set_defaults(func=cmd_compare)

    mem = sub.add_parser("memory", help="the GPU memory plan of a profile's stages, against this GPU or a card of "
                                        "--total-gib; --serve MODEL: the vLLM share that model needs instead")
    mem.add_argument("--profile", default="gpu")
    mem.add_argument("--only", type=_csv, default=None)
    mem.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE")
    mem.add_argument("--total-gib", type=float, help="plan for a card of this size (Unsloth assumed for 03)")
    mem.add_argument("--serve", metavar="MODEL", help="the --gpu-memory-utilization a vLLM server of MODEL needs")
    mem.add_argument("--max-model-len", type=int, default=4096)
    mem.set_defaults(func=cmd_memory)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
