"""The JMLR-vs-RAG-vs-SFT experiment: `python recipes/experiment.py --config recipes/experiment-pubmedqa.yaml`.

Thin on purpose: parse → run every arm and seed → summary table, JSON and plots. See `jmlr_hf/experiment.py`.
"""

from trl import TrlParser

from jmlr_hf.experiment import ExperimentArguments, run_experiment

if __name__ == "__main__":
    (args,) = TrlParser((ExperimentArguments,)).parse_args_and_config()
    run_experiment(args)
