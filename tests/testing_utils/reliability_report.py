"""Regenerate `docs/RELIABILITY.md`: run the property and fault-injection tests with `--reliability-report`.

    .venv/bin/python -m tests.testing_utils.reliability_report [--output docs/RELIABILITY.md] [pytest args...]

The table is written only when every test passed, so a committed table never hides a failure. Run it after changing
a loader, the collator, the losses or a fault-injection test, and commit the result; `tests/test_reliability_report.py`
checks that the committed file lists every class declared in `tests/testing_utils/reliability.py`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from .reliability import REPORT_TESTS

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "RELIABILITY.md"))
    args, pytest_args = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        draft = Path(folder) / "RELIABILITY.md"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--reliability-report", str(draft)]
        status = subprocess.call([*command, *REPORT_TESTS, *pytest_args], cwd=ROOT)
        if status != 0:
            print(f"pytest failed (exit status {status}); {args.output} is left as it was", file=sys.stderr)
            return status
        Path(args.output).write_text(draft.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
