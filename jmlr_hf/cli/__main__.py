"""`python -m jmlr_hf.cli …`, the same as the `jmlr` command: what `accelerate launch -m jmlr_hf.cli index …` runs in
every process (a launcher starts a module or a script, not a console entry point)."""

from . import main

if __name__ == "__main__":
    main()
