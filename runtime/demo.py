"""`ictal demo`: replay a bundled real seizure clip of a patient the shipped model was
never trained on (baby 7 of the Helsinki neonatal set, a whole patient held out)
over LSL on loopback into the monitor; print each alert with its delay from the
annotated onset; write the explanations (JSON + PNG) and a timeline figure."""
from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import numpy as np

from .shipped import DEMO_CLIP, SHIPPED_CHECKPOINT, SHIPPED_MODEL


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def run_demo(out_dir: str | Path = "demo_out", *, speed: float = 4.0, model: Path = SHIPPED_MODEL,
             clip: Path = DEMO_CLIP, gradcam: bool | None = None, checkpoint: Path = SHIPPED_CHECKPOINT,
             hop_s: float = 1.0) -> dict:

    from ictal.stream_sim.replay import Replay, recording_with_seizures

    from .monitor import Monitor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "monitor.jsonl").unlink(missing_ok=True)  # one demo run per log
    rec = recording_with_seizures(clip)
    onsets = [(a.onset_s, a.onset_s + a.duration_s) for a in rec.annotations if "seizure" in a.text]
    use_gradcam = torch_available() and checkpoint.exists() if gradcam is None else gradcam
    name = f"ictal-demo-{threading.get_ident() % 100000}"
    replay = Replay(rec, speed=speed, name=name, keep_outlet_until_stop=True)
    print(f"demo: replaying {clip.name} ({rec.duration_s:.0f} s, {len(rec.labels)} channels @ {rec.sfreq_hz:g} Hz, "
          f"seizure at {', '.join(f'{s:g}-{e:g} s' for s, e in onsets)}) at {speed:g}x over LSL '{name}'")
    print(f"demo: Grad-CAM band importance {'on (torch)' if use_gradcam else 'off (install the [train] extra)'}")
    replay.start()
    mon = Monitor(model, stream_name=name, hop_s=hop_s, log_path=out / "monitor.jsonl", explain_dir=out,
                  gradcam_checkpoint=checkpoint if use_gradcam else None, resolve_timeout_s=10)
    mon.connect()
    try:
        # idle_exit_s only in case the replay thread hangs: the monitor stops when the clip has ended
        mon.run(idle_exit_s=3.0, source_finished=replay.finished.is_set)
    finally:
        mon.disconnect()  # first: an outlet that closes under a live inlet makes liblsl log an error
        replay.stop()
    # the monitor's times are recording seconds from the first sample (stamped at the replay's t0)
    t0 = replay.t0
    scores = [json.loads(line) for line in (out / "monitor.jsonl").read_text().splitlines()]
    scores = [s for s in scores if s["event"] == "score"]
    t = np.array([s["t_lsl"] - t0 for s in scores])
    p = np.array([s["p"] for s in scores])
    alerts = []
    for e in mon.explanations:
        rel = e["t_lsl"] - t0
        delay = rel - onsets[0][0] if onsets else float("nan")
        alerts.append({"alert_id": e["alert_id"], "t_s": round(rel, 2), "delay_from_onset_s": round(delay, 2),
                       "top_regions": e["top_regions"], "files": e.get("files", [])})
        print(f"ALERT #{e['alert_id']}: {rel:.1f} s into the recording, {delay:+.1f} s from the annotated onset; "
              f"p={e['p']:.2f}; regions {', '.join(e['top_regions'])}"
              + (f"; dominant band {max(e['band_importance'], key=e['band_importance'].get)}"
                 if "band_importance" in e else ""))
    if not alerts:
        print("demo: no alert was raised")
    offsets = [ev["t_lsl"] - t0 for ev in mon.events if ev["event"] == "alert_offset"]
    from .figures import timeline_figure

    timeline_figure(t, p, mon.scorer.threshold, onsets, [a["t_s"] for a in alerts], offsets, out / "timeline.png",
                    title=f"{clip.name} replayed over LSL · model {mon.scorer.name}", duration_s=rec.duration_s,
                    window_s=mon.spec.window_s)
    summary = {"clip": clip.name, "seizures": onsets, "alerts": alerts, "windows_scored": len(scores),
               "gradcam": use_gradcam, "threshold": mon.scorer.threshold}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"demo: {len(scores)} windows scored; wrote {out}/monitor.jsonl, timeline.png, "
          f"{len(alerts)} alert explanation(s)")
    return summary
