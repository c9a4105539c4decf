"""Peak RSS of the torch-free monitor for a replayed EDF at a given speed (the issue's
worst cases: 64 channels, 16x replay). Prints one row per run; not part of CI.

    python benchmarks/monitor_footprint.py ../shared/data/eegmmidb/S001/S001R03.edf --speed 16
"""
import argparse
import json
import os
import tempfile
from pathlib import Path

from ictal.runtime.edf import read_edf
from ictal.runtime.monitor import Monitor
from ictal.runtime.shipped import SHIPPED_MODEL
from ictal.stream_sim.replay import Replay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("edf")
    ap.add_argument("--speed", type=float, default=16.0)
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    a = ap.parse_args()
    rec = read_edf(a.edf)
    name = f"footprint-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        replay = Replay(rec, speed=a.speed, name=name, markers=False).start()
        mon = Monitor(a.model, stream_name=name, log_path=log, console=False, name=f"{name}-out")
        mon.connect()
        try:
            mon.run(idle_exit_s=2.0, duration_s=600)
        finally:
            replay.stop()
            mon.disconnect()
        last = json.loads(log.read_text().splitlines()[-1])
    print(f"| {rec.name} | {len(rec.labels)} ch @ {rec.sfreq_hz:g} Hz | {a.speed:g}x | peak RSS "
          f"{last['peak_rss_mb']:.0f} MB | torch loaded: {last['torch_loaded']} | scored {last['scored']}, "
          f"rejected {last['rejected']}, gaps {last['gaps']} |")


if __name__ == "__main__":
    main()
