"""The `ictal` command. Torch is imported only by subcommands that need it
(train, evaluate on a .pt, export, explain, report, Grad-CAM on demand).

Conventions, the same in every command: the model is `--model PATH` (an exported .onnx
where the command scores, a .pt checkpoint where it needs torch; the shipped model by
default); `-o/--output FILE` names the one file a command writes (train, export);
`--out-dir DIR` names the folder a command writes its files into."""
from __future__ import annotations

import argparse
import sys

from .errors import IctalError
from .shipped import SHIPPED_CHECKPOINT, SHIPPED_MODEL


def _number(kind, minimum=None, *, strict=False, maximum=None):
    """An argparse type: `kind` (int/float) within bounds, with a one-line error naming what is expected."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and value != value:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        low_bad = minimum is not None and (value <= minimum if strict else value < minimum)
        high_bad = maximum is not None and value > maximum
        if low_bad or high_bad:
            rel = (">" if strict else "≥") + f" {minimum:g}" if minimum is not None else ""
            rel += (" and " if rel and maximum is not None else "") + (f"≤ {maximum:g}" if maximum is not None else "")
            raise argparse.ArgumentTypeError(f"expected a value {rel}, got {text!r}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _add_model(p, checkpoint: bool = False, help_extra: str = ""):
    """`--model`, the same in every command; the shipped model by default."""
    default = SHIPPED_CHECKPOINT if checkpoint else SHIPPED_MODEL
    kind = "torch checkpoint .pt" if checkpoint else "exported .onnx model"
    p.add_argument("--model", default=str(default), metavar="PATH",
                   help=f"{kind}{help_extra} (default: the shipped {default.name})")


class _OutputIsAFile(argparse.Action):
    """-o given to a command that writes a folder: say which option it takes instead."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} names an output file (train, export); this command writes a folder: "
                     f"use --out-dir DIR")


def _add_out_dir(p, default: str):
    p.add_argument("--out-dir", default=default, metavar="DIR", help=f"folder for the outputs (default: {default})")
    p.add_argument("-o", "--output", action=_OutputIsAFile, help=argparse.SUPPRESS)


POSITIVE = _number(float, 0, strict=True)
POSITIVE_INT = _number(int, 1)
COUNT = _number(int, 0)
PROBABILITY = _number(float, 0, strict=True, maximum=1.0)


def _threshold_rule(text: str) -> str:
    from ictal.models.train import choose_threshold_by  # torch: only `train` parses this

    try:
        choose_threshold_by(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_train(sub):
    p = sub.add_parser("train", help="train the CWT ResNet on CHB-MIT-like directories ([train] extra)")
    p.add_argument("data", nargs="+", help="directories of EDF files with chbNN-summary.txt, *.csv_bi or "
                   "*.tse_bi, Siena Seizures-list-PNnn.txt or EDF+ seizure labels; each is one data set (its name "
                   "is the folder's)")
    p.add_argument("-o", "--output", required=True, help="checkpoint path (.pt; a .json sidecar is written too)")
    p.add_argument("--negatives", action="append", help="seizure-free EDF directory (repeatable)")
    p.add_argument("--allow-missing-negatives", type=COUNT, default=0,
                   help="zero-fill up to N model channels the negatives cannot provide")
    p.add_argument("--exclude", action="append", help="hold out recordings whose name starts with this")
    p.add_argument("--cv", default="", help="comma list: lopo (leave one patient out: the headline), "
                   "loso (leave one seizure recording out), cross-patient")
    p.add_argument("--spec", help="feature spec JSON (default: 18-channel double banana, 40 freqs 1-40 Hz)")
    p.add_argument("--montage", choices=["double-banana", "chbmit-23"], default=None,
                   help="channels when no --spec: the 18-channel double banana (default) or CHB-MIT's 23")
    p.add_argument("--architecture", choices=["hybrid", "resnet"], default="hybrid",
                   help="hybrid (default): a logistic regression on montage-free band-power summaries, fitted "
                   "first, plus the ResNet on channel-relative power, kept only where it lowers the validation "
                   "loss; resnet: the ResNet alone")
    p.add_argument("--relative", choices=["none", "channel-window"], default=None,
                   help="resnet only: features relative to each channel's own window power (default: "
                   "channel-window); the hybrid takes absolute power and makes the ResNet's input relative itself")
    p.add_argument("--cardiac-artefact", choices=["remove", "keep"], default=None,
                   help="subtract stereotyped heart beats (ECG artefact) from each window before its features "
                   "(default: remove; with --spec, the spec's own setting)")
    p.add_argument("--threshold-rule", default="youden", type=_threshold_rule,
                   help="threshold on validation windows: youden, or specificity:S (e.g. specificity:0.99)")
    p.add_argument("--width", type=POSITIVE, default=0.125)
    p.add_argument("--epochs", type=COUNT, default=25,
                   help="ResNet epochs; 0 (hybrid only) fits the summary regression alone: a 30-fold "
                   "--cv lopo of the shared data then takes ~2 min on 2 cores, a screen of the regression")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=32)
    p.add_argument("--hop", type=POSITIVE, default=10.0, help="window hop outside seizures, s")
    p.add_argument("--seizure-hop", type=POSITIVE, default=1.0, help="window hop around seizures, s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--balance", default="source-class", choices=["class", "source-class"],
                   help="loss weighting: every (data set, class) cell equal, or classes only")
    p.add_argument("--cache", metavar="DIR", help="feature cache: each recording is transformed once into DIR "
                   "(reused while the spec, file and labels are unchanged) and training reads windows from disk, "
                   "so memory stays flat however many hours")
    p.add_argument("--workers", type=POSITIVE_INT, default=1,
                   help="processes computing the features of recordings in parallel (with --cache)")
    p.add_argument("--loader-workers", type=COUNT, default=2, help="DataLoader processes reading and augmenting "
                   "windows during training")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="training device; mixed precision on CUDA (default: CUDA where there is one)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT.state/ after the last finished "
                   "epoch of every fold and of the final model (saved after every epoch)")

    def run(a):
        from ictal.models.commands import train_main
        return train_main(a)
    p.set_defaults(func=run)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="window and SzCORE event metrics of a model on labelled data")
    p.add_argument("data", help="labelled EDF file, or a folder of them")
    _add_model(p, help_extra=", or a .pt checkpoint (imports torch)")
    _add_out_dir(p, "evaluation")
    p.add_argument("--hop", type=POSITIVE, default=1.0)
    _add_threshold(p)
    _add_allow_missing(p, "a recording lacks (each is reported)")
    p.add_argument("--workers", type=POSITIVE_INT, default=1, help="score recordings in N local processes")
    p.add_argument("--alert-rule", type=_alert_rule, metavar="K/N", default=None,
                   help="events as the monitor alarms: K of N windows above threshold open an alert (quiet 10 s "
                   "closes it, refractory 30 s), e.g. 3/4 with --hop 1 as the monitor runs; default: every window "
                   "above threshold is a detection")
    p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS", help="score one Ray task per recording on "
                   "the Ray cluster at ADDRESS (default: auto, i.e. a running cluster or a local one; "
                   "the [cluster] extra)")

    def run(a):
        from ictal.models.commands import evaluate_main
        return evaluate_main(a)
    p.set_defaults(func=run)


def _alert_rule(text: str):
    from .alerts import AlertRule

    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 3/4, got {text!r}") from None
    try:
        return AlertRule(k, n)  # the monitor's own check of the rule
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1 <= K <= N, got {text!r}") from None


def _span(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:SECONDS (or START:END), got {text!r}") from None
    if not (a >= 0 and b > 0):
        raise argparse.ArgumentTypeError(f"expected START ≥ 0 and a positive second number, got {text!r}")
    return a, b


def _add_export(sub):
    p = sub.add_parser("export", help="checkpoint → ONNX with the feature spec in metadata ([train] extra)")
    _add_model(p, checkpoint=True)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx to write")
    p.add_argument("--parity-data", help="labelled EDF directory for the torch/ONNX parity check")
    p.add_argument("--int8", help="also write a static int8 (QDQ) model here, calibrated on --parity-data")

    def run(a):
        from ictal.export.commands import export_main
        return export_main(a)
    p.set_defaults(func=run)


def _add_monitor(sub):
    p = sub.add_parser("monitor", help="score a live LSL EEG stream, raise and explain alerts")
    _add_model(p)
    p.add_argument("--stream", help="LSL stream name (default: the first stream of --type)")
    p.add_argument("--type", default="EEG", help="LSL stream type to resolve when no name is given (any case)")
    p.add_argument("--name", default="ictal", help="this monitor's name: its LSL outputs are NAME-alerts and "
                   "NAME-scores (with a unique source_id), its default log and explanation folder start with it")
    p.add_argument("--units", help="units of a stream that declares none (V, mV, uV, nV); by default they come "
                   "from each channel's <unit> and unknown units are refused")
    p.add_argument("--timeout", type=POSITIVE, default=10.0, help="seconds to wait for the stream")
    p.add_argument("--hop", type=POSITIVE, default=1.0, help="seconds between scored windows")
    _add_allow_missing(p, "the stream lacks")
    _add_threshold(p)
    p.add_argument("--k", type=POSITIVE_INT, default=3, help="windows above threshold (of --n) to open an alert")
    p.add_argument("--n", type=POSITIVE_INT, default=4)
    p.add_argument("--quiet", type=_number(float, 0), default=10.0, help="seconds below threshold to close an alert")
    p.add_argument("--refractory", type=_number(float, 0), default=30.0,
                   help="seconds after closing before a new alert")
    p.add_argument("--log", help="JSONL log of every score and alert (default: NAME-monitor.jsonl)")
    p.add_argument("--explain-dir", help="alert explanations, JSON + PNG (default: NAME-explanations)")
    p.add_argument("--gradcam", metavar="CHECKPOINT",
                   help="torch checkpoint for Grad-CAM band importance and the 5x5 matrix (imports torch)")
    p.add_argument("--cam-layer", default="layer4", choices=["layer4", "layer3", "layer2"],
                   help="Grad-CAM target layer: layer4 (the method's) or a finer one")
    p.add_argument("--duration", type=POSITIVE, help="stop after this many seconds")
    p.add_argument("--idle-exit", type=POSITIVE, help="stop when no data arrived for this many seconds")
    p.add_argument("--no-lsl-out", action="store_true", help="do not publish alert/score LSL streams")
    p.add_argument("--view", type=_listen, metavar="[HOST:]PORT",
                   help="also serve the bedside web page (`ictal view` as a child process; [view] extra); "
                        "127.0.0.1 unless a host is given, and then a token is required")

    def run(a):
        from .monitor import Monitor
        if a.k > a.n:
            p.error(f"--k {a.k} windows above threshold cannot be more than the --n {a.n} windows looked at")
        if a.view and a.no_lsl_out:
            p.error("--view reads the monitor's LSL outputs; it cannot be used with --no-lsl-out")
        mon = Monitor(a.model, stream_name=a.stream, stream_type=a.type, hop_s=a.hop, allow_missing=a.allow_missing,
                      force=a.force, k=a.k, n=a.n, quiet_s=a.quiet, refractory_s=a.refractory, log_path=a.log,
                      explain_dir=a.explain_dir or f"{a.name}-explanations", gradcam_checkpoint=a.gradcam,
                      lsl_outputs=not a.no_lsl_out, resolve_timeout_s=a.timeout, cam_layer=a.cam_layer,
                      name=a.name, units=a.units, threshold=a.threshold)
        mon.connect()
        view = None
        if a.view:  # its own process: the monitor's footprint and timing stay as they are
            import subprocess
            host, port = a.view
            view = subprocess.Popen([sys.executable, "-m", "ictal", "view", "--name", a.name,
                                     "--listen", f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                                     "--log", str(mon.log.path), "--timeout", str(a.timeout)]
                                    + (["--units", a.units] if a.units else []))
        try:
            mon.run(duration_s=a.duration, idle_exit_s=a.idle_exit)
        finally:
            if view is not None:
                view.terminate()
            mon.disconnect()
            if view is not None:
                view.wait(timeout=10)
        return 0
    p.set_defaults(func=run)


def _listen(text: str) -> tuple[str, int]:
    from .view import parse_listen
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_view(sub):
    p = sub.add_parser("view", help="the bedside web page of a running monitor: EEG, p trend, alerts and why "
                       "([view] extra)")
    p.add_argument("--name", default="ictal", help="the monitor's name (its NAME-scores / NAME-alerts streams)")
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 8765), metavar="[HOST:]PORT",
                   help="where to serve the page (default 127.0.0.1:8765; port 0 picks a free one). Any host "
                        "but the loopback requires a token")
    p.add_argument("--token", help="the token for a non-loopback address (default: $ICTAL_VIEW_TOKEN, "
                   "else a random one, printed in the URL)")
    p.add_argument("--log", help="JSONL log that acknowledgements go to (default: the log the monitor publishes)")
    p.add_argument("--units", help="units of an EEG stream that declares none (V, mV, uV, nV)")
    p.add_argument("--timeout", type=POSITIVE, default=10.0, help="seconds to wait for the monitor's streams")

    def run(a):
        import importlib.util
        if not all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn")):
            print("ictal view: needs the [view] extra: pip install 'ictal[view]'", file=sys.stderr)
            return 2
        from .view import MonitorFeed, serve
        feed = MonitorFeed(a.name, timeout_s=a.timeout, log_path=a.log, units=a.units).connect()
        try:
            serve(feed, *a.listen, token=a.token)
        finally:
            feed.disconnect()
        return 0
    p.set_defaults(func=run)


def _faults(a):
    from ictal.stream_sim.replay import Faults
    return Faults(dropouts=a.dropout or [], nan_bursts=a.nan_burst or [], flat_channels=a.flat or [],
                  jitter_s=a.jitter)


def _add_fault_args(p):
    p.add_argument("--speed", type=POSITIVE, default=1.0, help="x real time")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--dropout", type=_span, action="append", metavar="START:SECONDS", help="inject a drop-out")
    p.add_argument("--nan-burst", type=_span, action="append", metavar="START:SECONDS", help="inject NaN samples")
    p.add_argument("--flat", action="append", metavar="CHANNEL", help="hold a channel flat")
    p.add_argument("--jitter", type=_number(float, 0), default=0.0, help="timestamp jitter std, s")


def _add_replay(sub):
    p = sub.add_parser("replay", help="replay an EDF as an LSL EEG stream (+ seizure marker stream)")
    p.add_argument("file")
    p.add_argument("--name", default="ictal-replay")
    _add_fault_args(p)

    def run(a):
        from ictal.stream_sim.replay import Replay
        r = Replay(a.file, speed=a.speed, loop=a.loop, name=a.name, faults=_faults(a))
        print(f"replaying {r.rec.name} as LSL '{a.name}' ({len(r.rec.labels)} ch @ {r.rec.sfreq_hz:g} Hz) "
              f"at {a.speed:g}x{' in a loop' if a.loop else ''}; Ctrl-C stops")
        r.run()
        return 0
    p.set_defaults(func=run)


def _add_simulate(sub):
    p = sub.add_parser("simulate", help="stream synthetic EEG with seizures at known times over LSL")
    p.add_argument("--duration", type=POSITIVE, default=300.0, help="seconds of EEG")
    p.add_argument("--seizure", type=_span, action="append", metavar="START:END", help="seizure interval, s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="ictal-sim")
    p.add_argument("--save", help="also write the synthetic recording to this EDF")
    _add_fault_args(p)

    def run(a):
        from ictal.stream_sim.replay import Replay
        from ictal.stream_sim.synthetic import synthetic_recording
        from .edf import write_edf
        rec = synthetic_recording(a.duration, a.seizure or [(120.0, 180.0)], seed=a.seed, name=a.name)
        if a.save:
            write_edf(rec, a.save)
        print(f"simulating {a.duration:g} s of EEG with seizures at {a.seizure or [(120.0, 180.0)]} as LSL "
              f"'{a.name}' at {a.speed:g}x")
        Replay(rec, speed=a.speed, loop=a.loop, name=a.name, faults=_faults(a)).run()
        return 0
    p.set_defaults(func=run)


def _add_demo(sub):
    p = sub.add_parser("demo", help="replay a bundled real seizure over LSL into the monitor; alerts + figures")
    _add_out_dir(p, "demo_out")
    p.add_argument("--speed", type=POSITIVE, default=4.0, help="replay speed, x real time")
    p.add_argument("--no-gradcam", action="store_true", help="skip Grad-CAM even if torch is installed")

    def run(a):
        from .demo import run_demo
        run_demo(a.out_dir, speed=a.speed, gradcam=False if a.no_gradcam else None)
        return 0
    p.set_defaults(func=run)


def _add_bench(sub):
    p = sub.add_parser("bench", help="latency of every stage and end to end over LSL; JSON + Markdown + plot")
    _add_out_dir(p, "bench_out")
    _add_model(p)
    p.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT), metavar="PATH",
                   help=f"torch checkpoint for the torch rows (default: the shipped {SHIPPED_CHECKPOINT.name})")
    p.add_argument("--repeats", type=POSITIVE_INT, default=50)
    p.add_argument("--offline-minutes", type=POSITIVE, default=30.0)
    p.add_argument("--no-torch", action="store_true", help="skip Grad-CAM, torch eager and int8 rows")

    def run(a):
        from .bench import run_bench
        run_bench(a.out_dir, model=a.model, checkpoint=a.checkpoint, repeats=a.repeats,
                  offline_min=a.offline_minutes, torch=not a.no_torch)
        return 0
    p.set_defaults(func=run)


def _add_explain(sub):
    p = sub.add_parser("explain", help="band x region interpretation of EDF segments, or of all seizures "
                                       "of a data set (--global) ([train] extra)")
    p.add_argument("target", help="an EDF file, or with --global a labelled data directory")
    _add_model(p, checkpoint=True, help_extra=" (Grad-CAM needs the torch model)")
    p.add_argument("--start", type=_number(float, 0), default=0.0, help="seconds")
    p.add_argument("--end", type=POSITIVE, default=float("inf"), help="seconds")
    p.add_argument("--global", dest="global_", action="store_true", help="mean matrix over all seizures")
    p.add_argument("--cam-layer", default="layer4", choices=["layer4", "layer3", "layer2"],
                   help="Grad-CAM target: layer4 (the method's last residual block) or an earlier, finer one")
    _add_allow_missing(p, "a recording lacks")
    _add_out_dir(p, "explanation")

    def run(a):
        if a.end <= a.start:
            p.error(f"--end {a.end:g} must be after --start {a.start:g}")
        from ictal.models.interpret import Interpreter, global_interpretation, write_explanation

        from .channels import check_zero_fill
        interp = Interpreter(a.model, a.cam_layer)
        check_zero_fill(a.allow_missing, len(interp.spec.channels), force=a.force, model_name=f"model {interp.name}")
        if a.global_:
            doc = global_interpretation(interp, a.target, a.out_dir, a.allow_missing, force=a.force)
            print(f"wrote {a.out_dir}/global_interpretation.json and .png ({doc['n_seizures']} seizures)")
            return 0
        rec, data, seizures, segs = interp.explain_file(a.target, a.start, a.end, a.allow_missing, a.force)
        write_explanation(interp, a.target, rec, data, seizures, segs, a.out_dir)
        for s in segs:
            d = s.to_json()
            print(f"{s.start_s:7.1f}-{s.end_s:7.1f} s  p={s.p:.3f}  band {d['dominant_band']:<5} "
                  f"({d['dominant_band_source']:<9})  region {d['dominant_region']}"
                  + (f"  seizure-like: {', '.join(d['seizure_like_channels'][:3])}"
                     if d.get("seizure_like_channels") else "")
                  + (f"  EMG-like: {', '.join(s.muscle_like_channels)}" if s.muscle_like_channels else "")
                  + (f"  eye-movement-like (frontopolar delta {10 ** d['frontopolar_delta_excess']:.1f}x the rest)"
                     if s.eye_movement_like else "")
                  + (f"  NOT SCORABLE ({s.bad_channels} {s.unscorable}): the monitor would not score it, "
                     f"this explains the artefact" if s.unscorable else ""))
        print(f"wrote {a.out_dir}/explanation.json, explanation_maps.npz, matrices.png, local_interpretation.png")
        return 0
    p.set_defaults(func=run)


def _add_report(sub):
    p = sub.add_parser("report", help="XAI & metrics report (report.md + figures) ([train] extra)")
    p.add_argument("data", help="labelled EDF file, or a folder of them")
    _add_model(p, checkpoint=True)
    _add_out_dir(p, "report")
    p.add_argument("--examples", type=POSITIVE_INT, default=2,
                   help="examples of each kind (true/false positive/negative), never overlapping")
    p.add_argument("--hop", type=POSITIVE, default=5.0)
    _add_allow_missing(p, "a recording lacks")
    p.add_argument("--cam-layer", default="layer4", choices=["layer4", "layer3", "layer2"])
    _add_threshold(p)
    p.add_argument("--llm", action="store_true",
                   help="rewrite summaries via ICTAL_LLM_URL/ICTAL_LLM_API_KEY/ICTAL_LLM_MODEL (off by default)")

    def run(a):
        from ictal.models.report import write_report
        path = write_report(a.model, a.data, a.out_dir, n_examples=a.examples, use_llm=a.llm, hop_s=a.hop,
                            allow_missing=a.allow_missing, force=a.force, cam_layer=a.cam_layer,
                            threshold=a.threshold)
        print(f"wrote {path}")
        return 0
    p.set_defaults(func=run)


def _add_threshold(p) -> None:
    p.add_argument("--threshold", type=PROBABILITY, default=None,
                   help="decision threshold (0-1] instead of the model's, e.g. a unit's own operating point "
                   "(MODEL_CARD.md: neonatal operating points); the model's is reported beside it")


def _add_allow_missing(p, lacks: str) -> None:
    p.add_argument("--allow-missing", type=COUNT, default=0, help=f"zero-fill up to N channels {lacks}; more "
                   "than a quarter of the model's needs --force")
    p.add_argument("--force", action="store_true", help="accept zero-filling more than a quarter of the channels")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ictal", description="Interpretable seizure detection for scalp EEG")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_monitor, _add_view, _add_replay, _add_simulate, _add_train, _add_evaluate, _add_export, _add_bench, _add_explain, _add_report):
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except IctalError as e:
        print(f"ictal {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable output, a full disk: one line naming the file, no traceback
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"ictal {args.command}: cannot read or write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
