"""Run the full latency benchmark (`ictal bench`) and write benchmarks/results/.

Not run by CI: it takes a few minutes and its numbers depend on the machine.
    python benchmarks/run_bench.py [--repeats 50]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "-o", str(Path(__file__).resolve().parent / "results"), *sys.argv[1:]]))
