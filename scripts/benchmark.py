"""Benchmarks of this package's trainers against GRPOTrainer; see `trl_policysplit/tools/studies/`.

python scripts/benchmark.py overhead --quick --output overhead.json
"""

import sys

from trl_policysplit.tools.studies.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
