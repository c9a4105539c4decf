"""The `ictal` command. Torch is imported only by subcommands that need it
(train, evaluate on a .pt, export, explain, report, Grad-CAM on demand)."""
from __future__ import annotations

import argparse
import sys

from .errors import IctalError


def _add_train(sub):
    p = sub.add_parser("train", help="train the CWT ResNet on a CHB-MIT-like directory ([train] extra)")
    p.add_argument("data", help="directory of EDF files with chbNN-summary.txt, *.csv_bi or EDF+ seizure labels")
    p.add_argument("-o", "--output", required=True, help="checkpoint path (.pt; a .json sidecar is written too)")
    p.add_argument("--negatives", action="append", help="seizure-free EDF directory (repeatable)")
    p.add_argument("--allow-missing-negatives", type=int, default=0,
                   help="zero-fill up to N model channels the negatives cannot provide")
    p.add_argument("--exclude", action="append", help="hold out recordings whose name starts with this")
    p.add_argument("--cv", default="", help="comma list: loso, cross-patient")
    p.add_argument("--spec", help="feature spec JSON (default: the compact default grid)")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hop", type=float, default=10.0, help="window hop outside seizures, s")
    p.add_argument("--seizure-hop", type=float, default=1.0, help="window hop around seizures, s")
    p.add_argument("--seed", type=int, default=0)

    def run(a):
        from models.commands import train_main
        return train_main(a)
    p.set_defaults(func=run)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="window and SzCORE event metrics of a model on labelled data")
    p.add_argument("model", help="checkpoint .pt or exported .onnx")
    p.add_argument("data")
    p.add_argument("-o", "--output", default="evaluation", help="output directory")
    p.add_argument("--hop", type=float, default=1.0)
    p.add_argument("--threshold", type=float, default=None, help="override the model's threshold")
    p.add_argument("--allow-missing", type=int, default=0)

    def run(a):
        from models.commands import evaluate_main
        return evaluate_main(a)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ictal", description="Interpretable seizure detection for scalp EEG")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_evaluate):
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except IctalError as e:
        print(f"ictal {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
