"""One process of a `jmlr` command run by `accelerate launch` (as a user runs `accelerate launch -m jmlr_hf.cli ...`),
from this checkout, for tests/retrieval/test_sharded_build.py.

    accelerate launch --multi_gpu --num_processes 2 tests/testing_utils/cli_worker.py index --corpus ... --output ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: this checkout's jmlr_hf

from jmlr_hf.cli import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
