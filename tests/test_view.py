"""The bedside view in a real browser: a real seizure clip replayed over LSL, the shipped model
in the monitor, `ictal view` as its own process, headless Chromium driven by Playwright."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from ictal.runtime.monitor import Monitor
from ictal.runtime.shipped import DEMO_CLIP, SHIPPED_MODEL
from ictal.stream_sim.replay import Replay

from conftest import unique_stream_name

pytest.importorskip("starlette", reason="the view needs the [view] extra (pip install -e '.[view]')")
pytest.importorskip("uvicorn", reason="the view needs the [view] extra (pip install -e '.[view]')")

CHROMIUM = os.environ.get("ICTAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _start_view(name: str, listen: str, *extra: str) -> tuple[subprocess.Popen, str]:
    """`ictal view` as the user runs it; returns the process and the URL it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "ictal", "view", "--name", name, "--listen", listen, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if "http://" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
            return proc, line[line.index("http://"):].strip()
    proc.kill()
    raise AssertionError(f"ictal view printed no URL: {proc.stdout.read()}")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Replay of the bundled real seizure (neonatal baby 7, seizure from 0 s to 14 s) at 3x into the shipped model's
    monitor, with two views: one on the loopback, one on all addresses with a token."""
    tmp = tmp_path_factory.mktemp("view")
    eeg, name = unique_stream_name(), unique_stream_name("ictal-view")
    replay = Replay(DEMO_CLIP, speed=3.0, name=eeg, markers=False).start()
    mon = Monitor(SHIPPED_MODEL, stream_name=eeg, log_path=tmp / "monitor.jsonl", console=False, name=name,
                  explain_dir=tmp / "explanations")
    views = []
    try:
        mon.connect()
        view, url = _start_view(name, "127.0.0.1:0")
        views.append(view)
        guarded, guarded_url = _start_view(name, "0.0.0.0:0", "--token", "s3cret-token")
        views.append(guarded)
        # the test starts the monitor once the page is open, so the page sees the alert arrive
        worker = threading.Thread(target=mon.run, kwargs={"duration_s": 60, "idle_exit_s": 3.0})
        yield {"tmp": tmp, "name": name, "url": url, "guarded_url": guarded_url, "worker": worker}
        if worker.is_alive() or worker.ident:
            worker.join(timeout=70)
    finally:
        replay.stop()
        for v in views:
            v.terminate()
            v.wait(timeout=10)
        mon.disconnect()


def _log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium); "
                    ".ci/run installs it, so CI runs this test")
def test_the_page_draws_eeg_shows_the_alert_within_2_s_and_acknowledging_logs_it(live):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright ([dev] extra)")
    import pylsl

    tmp = live["tmp"]
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live["url"])
        live["worker"].start()  # the monitor scores from now on, with the page already open
        page.wait_for_function("window.ictalView.eegFrames > 10", timeout=20_000)
        # the EEG canvas holds traces: many pixels differ from its background (an empty one has none)
        drawn = page.evaluate("""() => { const c = document.getElementById('eeg');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] > 100 && d[i + 2] > 150) n++; return n; }""")
        assert drawn > 2000, drawn
        page.wait_for_function("Object.keys(window.ictalView.bannerShownAt).length > 0", timeout=40_000)
        shown = page.evaluate("window.ictalView.bannerShownAt")
        onsets = [e for e in _log(tmp / "monitor.jsonl") if e["event"] == "alert_onset"]
        assert onsets, "the monitor raised no alert on the seizure clip"
        first = onsets[0]
        banner_delay_s = shown[str(first["alert_id"])] / 1000.0 - first["wall_time"]
        assert -0.1 < banner_delay_s <= 2.0, banner_delay_s
        assert page.is_visible("#banner") and f"#{first['alert_id']}" in page.inner_text("#banner")
        # the explanation follows: head diagram, 5x5 matrix, top channels
        page.wait_for_selector("#matrix table", timeout=15_000)
        assert page.locator("#matrix td").count() == 25
        assert page.locator("#head path, #head rect").count() >= 5
        assert page.locator("#topchan li").count() == 5
        assert page.locator("#trend").is_visible()

        # both views publish NAME-view (their source_ids differ): listen to both
        found = pylsl.resolve_byprop("name", f"{live['name']}-view", minimum=2, timeout=10)
        ack_inlets = [pylsl.StreamInlet(info) for info in found]
        for inlet in ack_inlets:
            inlet.open_stream(timeout=5)
        page.click("#ack")
        page.wait_for_function("document.getElementById('ack').disabled", timeout=5_000)
        acks = [e for e in _log(tmp / "monitor.jsonl") if e["event"] == "ack"]
        assert [a["alert_id"] for a in acks] == [first["alert_id"]]
        time.sleep(0.5)
        markers = [json.loads(m[0]) for inlet in ack_inlets for m in inlet.pull_chunk(timeout=1.0)[0]]
        assert [(m["event"], m["alert_id"], m["by"]) for m in markers] == [("ack", first["alert_id"], acks[0]["by"])]
        assert "acknowledged" in page.inner_text("#banner")
        page.screenshot(path=str(tmp / "view.png"), full_page=True)
        browser.close()
    assert (tmp / "view.png").stat().st_size > 50_000
    assert not errors, errors


def test_the_view_needs_a_token_off_the_loopback_and_has_no_route_that_changes_detection(live):
    url = live["guarded_url"]
    base = url.split("?")[0].replace("0.0.0.0", "127.0.0.1")
    assert url.endswith("?token=s3cret-token")

    def status(path, method="GET", body=None, headers=None):
        req = urllib.request.Request(base.rstrip("/") + path, method=method, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status("/") == 401 and status("/state") == 401 and status("/?token=wrong") == 401
    assert status("/?token=s3cret-token") == 200
    assert status("/state", headers={"X-Ictal-Token": "s3cret-token"}) == 200
    assert status("/ack", "POST", b'{"alert_id": 1}') == 401
    for path in ("/threshold", "/settings", "/config"):  # nothing there can change what is detected
        assert status(f"{path}?token=s3cret-token", "POST", b"{}") == 404
    assert status("/state?token=s3cret-token", "POST", b"{}") == 405
    # an ack of an alert this monitor never raised is refused, and not logged
    assert status("/ack?token=s3cret-token", "POST", b'{"alert_id": 999}') == 404
    assert status("/ack?token=s3cret-token", "POST", b'nonsense') == 400
