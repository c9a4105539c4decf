"""The bedside view's cost: latency from score to screen, the view's memory, and the monitor's
own latency and peak RSS with and without a view attached. Not part of CI.

Replays the bundled real seizure clip at 1x (stamps are wall time, so the monitor's log and the
browser share one clock), runs `ictal monitor [--view 127.0.0.1:0]` as the user would, and reads
the page in headless Chromium. Saves a screenshot of the page with the alert explained.

    python benchmarks/view_bench.py --screenshot docs/view.png
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ictal.runtime.shipped import DEMO_CLIP
from ictal.stream_sim.replay import Replay


def run_monitor(tmp: Path, eeg: str, name: str, view: bool, seconds: float, chromium: str | None,
                screenshot: str | None) -> dict:
    log = tmp / f"{name}.jsonl"
    cmd = [sys.executable, "-m", "ictal", "monitor", "--stream", eeg, "--name", name, "--log", str(log),
           "--explain-dir", str(tmp / f"{name}-expl"), "--duration", str(seconds)]
    if view:
        cmd += ["--view", "127.0.0.1:0"]
    mon = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {"view": view}
    url, lines = None, []
    if view:
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = mon.stdout.readline()
            lines.append(line)
            m = re.search(r"http://\S+", line)
            url = m.group(0) if m else None
    threading.Thread(target=mon.stdout.read, daemon=True).start()
    if view and url and chromium:
        from playwright.sync_api import sync_playwright

        view_pid = int(subprocess.check_output(["pgrep", "-f", f"ictal view --name {name}"]).split()[0])
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            shot_taken = False
            rss = []
            while mon.poll() is None:
                time.sleep(1.0)
                rss.append(int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{view_pid}/status").read_text()).group(1))
                           if Path(f"/proc/{view_pid}/status").exists() else 0)
                if screenshot and not shot_taken and page.locator("#matrix table").count():
                    time.sleep(3.0)
                    page.screenshot(path=screenshot, full_page=True)
                    shot_taken = True
            shown = page.evaluate("window.ictalView.scoreShownAt")
            browser.close()
        out["view_rss_mb"] = max(rss) / 1024 if rss else float("nan")
        out["shown"] = shown
    mon.wait()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    scores = [r for r in records if r["event"] == "score"]
    out["monitor_latency_ms"] = 1e3 * np.median([r["latency_s"] for r in scores])
    out["monitor_peak_rss_mb"] = records[-1].get("peak_rss_mb")
    out["scored"] = len(scores)
    if out.get("shown"):
        logged = {round(r["t_lsl"], 3): r["wall_time"] for r in scores}
        added = [on_screen - logged[round(t, 3)] for t, _, on_screen in out["shown"] if round(t, 3) in logged]
        out["score_to_screen_ms"] = 1e3 * np.median(added) if added else float("nan")
        out["score_to_screen_p95_ms"] = 1e3 * np.percentile(added, 95) if added else float("nan")
        out["n_matched"] = len(added)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each monitor runs (the 30-s clip loops)")
    ap.add_argument("--screenshot", help="save the page here once an alert is explained")
    a = ap.parse_args()
    chromium = os.environ.get("ICTAL_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        print("no Chromium: only the monitor rows are measured (apt-get install chromium)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for view in (False, True):
            eeg = f"viewbench-{os.getpid()}-{int(view)}"
            replay = Replay(DEMO_CLIP, speed=1.0, loop=True, name=eeg, markers=False).start()
            try:
                rows.append(run_monitor(Path(tmp), eeg, f"{eeg}-out", view, a.seconds, chromium, a.screenshot))
            finally:
                replay.stop()
    print("| monitor | median latency, window end → score out | peak RSS | view RSS | score → on screen (median / p95) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        view = (f"{r['view_rss_mb']:.0f} MB" if "view_rss_mb" in r else "—")
        screen = (f"{r['score_to_screen_ms']:.0f} / {r['score_to_screen_p95_ms']:.0f} ms ({r['n_matched']} scores)"
                  if "score_to_screen_ms" in r else "—")
        print(f"| {'with `--view`' if r['view'] else 'alone'} | {r['monitor_latency_ms']:.1f} ms | "
              f"{r['monitor_peak_rss_mb']:.0f} MB | {view} | {screen} |")


if __name__ == "__main__":
    main()
