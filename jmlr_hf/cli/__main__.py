"""`python -m jmlr_hf.cli`: the `jmlr` command without the console script (e.g. from a virtual environment's
Python, or where the scripts folder is not on PATH)."""

from . import main

main()
