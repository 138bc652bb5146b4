"""How much could re-ranking the experiment's candidates lower the base generator's answer NLL?

    python recipes/headroom.py --config recipes/experiment-pubmedqa.yaml [--headroom_limit 100]

Uses the experiment's prepared candidates (made first if missing) and writes `headroom.{json,md,png}` to its
output_dir. See `jmlr_hf/headroom.py` for what each figure means.
"""

from dataclasses import dataclass, field

from trl import TrlParser

from jmlr_hf.experiment import ExperimentArguments
from jmlr_hf.headroom import run_headroom


@dataclass
class HeadroomArguments:
    headroom_limit: int | None = field(
        default=None, metadata={"help": "First N held-out questions (default: the experiment's eval_answer_limit)."}
    )


if __name__ == "__main__":
    args, headroom_args = TrlParser((ExperimentArguments, HeadroomArguments)).parse_args_and_config()
    run_headroom(args, headroom_args.headroom_limit)
