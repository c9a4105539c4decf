"""Run the full latency benchmark (`ictal bench`) and write benchmarks/results/.

Not run by CI: it takes a few minutes and its numbers depend on the machine.
    python benchmarks/run_bench.py [--repeats 50]
"""
import sys
from pathlib import Path

from ictal.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--out-dir", str(Path(__file__).resolve().parent / "results"), *sys.argv[1:]]))
