"""``python -m medix_lib <command>``: run the notebook pipeline, or use a piece of it on files."""

from __future__ import annotations

import argparse
import sys

from medix_lib import config


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def cmd_run(args) -> int:
    from medix_lib import pipeline

    try:
        overrides = pipeline.parse_overrides(args.set)
        pipeline.run_pipeline(args.profile, args.only, args.variants, args.output_root, overrides,
                              progress=not args.quiet)
    except (config.ParamsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except pipeline.StageFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
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
    run.add_argument("--quiet", action="store_true", help="no per-cell progress bar")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
