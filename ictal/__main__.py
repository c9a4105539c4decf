"""`python -m ictal` is the `ictal` command."""
import sys

from ictal.runtime.cli import main

sys.exit(main())
