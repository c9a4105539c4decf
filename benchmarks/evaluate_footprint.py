"""Peak RSS of `ictal evaluate` on long recordings: is its memory bounded by a block and a batch,
or does it grow with the recording? Prints one row per length; not part of CI.

Each recording is laid out as the Siena Scalp EEG Database writes it (29 referential EEG signals
at 512 Hz, `EEG Fp1` labels, a `Seizures-list-PNnn.txt`): real healthy EEG (eegmmidb S001's 14
runs, the 10-20 electrodes plus ten 10-10 ones, resampled to 512 Hz) repeated to the length asked.

    python benchmarks/evaluate_footprint.py --hours 1 2 4
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ictal.runtime.edf import Recording, read_edf, write_edf
from ictal.runtime.shipped import SHIPPED_MODEL

# The child's own high-water mark (Linux): VmHWM starts afresh at exec, while getrusage's
# ru_maxrss of a child keeps the parent's size at fork, here the EEG this script tiles.
EVALUATE_AND_REPORT_PEAK = (
    "import sys; from ictal.runtime.cli import main; rc = main(sys.argv[1:]); "
    "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].strip(), file=sys.stderr); "
    "sys.exit(rc)")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "eegmmidb" / "S001"
ELECTRODES = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8",
              "O1", "O2", "Fc5", "Fc6", "Cp5", "Cp6", "Fc1", "Fc2", "Cp1", "Cp2", "Af3", "Af4"]


def healthy_eeg_512() -> np.ndarray:
    """S001's runs, one after another, as (29 signals, samples) at 512 Hz."""
    parts = []
    for path in sorted(DATA.glob("S001R*.edf")):
        rec = read_edf(path)
        index = {lab.strip(".").lower(): i for i, lab in enumerate(rec.labels)}
        rows = rec.data_uv[[index[e.lower()] for e in ELECTRODES]]
        parts.append(resample_poly(rows, 16, 5, axis=1))
    return np.concatenate(parts, axis=1)


def siena_folder(root: Path, hours: float, eeg: np.ndarray) -> Path:
    n = int(hours * 3600 * 512)
    data = np.tile(eeg, (1, -(-n // eeg.shape[1])))[:, :n]
    folder = root / "PN90"
    folder.mkdir()
    write_edf(Recording(data, 512.0, [f"EEG {e}" for e in ELECTRODES]), folder / "PN90-1.edf")
    (folder / "Seizures-list-PN90.txt").write_text(
        "Seizures list of patient PN90\n\nSeizure n 1\nFile name: PN90-1.edf\nRegistration start time: 22.00.00\n"
        "Seizure start time: 22.30.00\nSeizure end time: 22.31.10\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--hop", type=float, default=1.0)
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    a = ap.parse_args()
    eeg = healthy_eeg_512()
    print("| hours | EDF on disk | windows | peak RSS | wall |\n| --- | --- | --- | --- | --- |")
    for hours in a.hours:
        with tempfile.TemporaryDirectory() as tmp:
            folder = siena_folder(Path(tmp), hours, eeg)
            size_mb = (folder / "PN90-1.edf").stat().st_size / 1e6
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", EVALUATE_AND_REPORT_PEAK, "evaluate", str(folder), "--model",
                                   a.model, "--hop", str(a.hop), "--out-dir", str(Path(tmp) / "eval")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                sys.exit(f"ictal evaluate failed on {hours:g} h: {proc.stderr[-2000:]}")
            peak_kb = int(proc.stderr.strip().splitlines()[-1].split()[-2])
            n_windows = sum(1 for _ in open(Path(tmp) / "eval" / "scores.csv")) - 1
            print(f"| {hours:g} | {size_mb:.0f} MB | {n_windows} | {peak_kb / 1024:.0f} MB | {wall:.0f} s |",
                  flush=True)


if __name__ == "__main__":
    main()
