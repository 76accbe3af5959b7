"""Print the trained verifier's target figures (issue 7) and write them, with the meta-evaluation figures, to a folder.

    python scripts/bench_verifier.py --preset smoke --out outputs/verifier/smoke

Trains the preset's verifier on first use (cached afterwards), then scores the held-out concept-disjoint test pairs
and the hand-written clinical pairs with the trained verifier, the zero-shot judge and MiniLM cosine. Timings depend
on what else runs on the machine: the record says how many cores there were; read them with that in mind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medix_lib import judge, plotting, verifier  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke", choices=list(verifier.PRESETS))
    parser.add_argument("--out", default=None, help="folder for meta_evaluation.json and figures "
                                                    "(default outputs/verifier/<preset>)")
    parser.add_argument("--template", default=judge.REWARD_TEMPLATE, choices=list(judge.TEMPLATES))
    parser.add_argument("--max-test", type=int, default=None, help="score only the first N test pairs")
    parser.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot LLM baseline (slowest part)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (1 is much faster on a machine shared with other jobs)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    out = Path(args.out or Path("outputs") / "verifier" / args.preset)
    result = verifier.meta_evaluation(args.preset, zero_shot=None if args.no_zero_shot else "smollm2-135m-instruct",
                                      template=args.template, max_test=args.max_test)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta_evaluation.json").write_text(json.dumps(result, indent=1))
    title = f"verifier '{args.preset}' on held-out concept-disjoint pairs"
    plotting.save_figure(plotting.verifier_roc(result, title), out, "verifier_roc")
    plotting.save_figure(plotting.verifier_pair_type_auc(result, "AUC per pair type (held-out)"), out,
                         "verifier_pair_type_auc")
    plotting.save_figure(plotting.verifier_reliability(result, "Calibration of P(YES) (held-out)"), out,
                         "verifier_reliability")

    rec, speed, v = result["record"], result["speed"], result["methods"]["trained verifier"]
    print(verifier.summary_table(result).T.to_string())
    print()
    print(f"pairs (train/validation/test generated): "
          + " / ".join(str(sum(sum(c.values()) for c in rec["pair_counts"][s].values())) for s in verifier.SPLITS)
          + f"; trained on {rec['train_pairs_seen']} pairs in {rec['train_seconds']} s wall "
          + f"({rec['cpu_count']} cores, stopped by {rec['stopped_by']})")
    print(f"validation-chosen threshold {v['threshold']:.3f}: test accuracy {v['test_accuracy']:.3f}, "
          f"balanced {v['test_balanced_accuracy']:.3f}")
    print(f"asymmetric negation AUC {v['per_type_auc']['negation-asym']:.3f}; clinical AUC {v['clinical_auc']:.3f}")
    print(f"judging: {speed['pairs_per_s']} distinct pairs/s through the transformers backend "
          f"(batch {speed['batch_size']}, n={speed['n']}, {speed['torch_threads']} threads on "
          f"{speed['cpu_count']} cores)")
    for target, met in result["targets"].items():
        print(f"  [{'x' if met else ' '}] {target}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
