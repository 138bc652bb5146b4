"""JMLR training recipe: `python recipes/train.py --config recipes/demo.yaml`, or with `accelerate launch`.

Thin on purpose, like TRL's `trl/scripts/sft.py`: parse → load → train → save. The steps live in
`jmlr_hf/scripts/train.py`, which `jmlr train` runs too.
"""

from jmlr_hf.scripts.train import cli_main

if __name__ == "__main__":
    cli_main()
