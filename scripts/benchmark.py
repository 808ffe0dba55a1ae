"""Benchmarks of this package's trainers against GRPOTrainer; see `benchmarks/` (in the repository, not the wheel).

python scripts/benchmark.py overhead --quick --output overhead.json
"""

import sys
from pathlib import Path

from _environment import require_package

require_package("benchmark.py")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: `benchmarks/` is not installed

from benchmarks.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
