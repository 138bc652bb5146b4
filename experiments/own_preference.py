"""Does each trained retriever rank first what *its own* LLM finds most useful? Measured on the saved models.

The experiment's `llm_top1_agreement`, `llm_top1_nll`, `llm_best_nll` and `headroom_captured` take the **base**
LLM's single-document answer NLLs as the reference (`prepared/reference_nlls-eval.json`). For the arms whose LLM
stays frozen (`base`, `retriever`) that is their own LLM. RAG-SFT and JMLR end with a *trained* LLM, and JMLR's
retriever learns from that LLM's NLLs as it trains, so the question the issue asks of them — is the retriever's top 1
the LLM's own best single document? — needs the trained LLM's NLLs. This module measures them from each run's saved
model (`save_models: true`), on the same first `eval_preference_limit` test questions and candidates:

* per run, against its own final LLM: `own_llm_top1_agreement` (its retriever's top 1 is that LLM's lowest-NLL
  candidate), `own_llm_pairwise_agreement`, `own_llm_top1_nll` (that LLM's answer NLL with its retriever's top 1,
  K = 1), `own_llm_best_nll` (with its best candidate: a perfect re-ranking), and `own_headroom_captured` =
  (NLL with the base retriever's top 1 − NLL with its own top 1) / (NLL with the base retriever's top 1 − best), all
  under its own LLM (RAG-SFT's retriever is the base one, so its value is 0 by construction);
* per seed, JMLR against RAG-SFT, the issue's share of the headroom captured:
  (RAG-SFT top-1 NLL − JMLR top-1 NLL) / (RAG-SFT top-1 NLL − RAG-SFT best NLL), each LLM with its own retriever.

    python -m experiments.own_preference --config experiments/configs/joint-pubmedqa.yaml

(from the repository root, after the experiment's runs). Each run's NLLs are kept in `<run dir>/own_nlls/` so a rerun
measures only what is new; the tables go to `<run dir>/own_preference.{md,json}`. The SFT arm is left out: its LLM
never sees a document.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

from datasets import Dataset
from transformers import AutoTokenizer

from jmlr_hf.evaluation import llm_preference_metrics, rank_candidates
from jmlr_hf.models import JMLRForCausalLM
from jmlr_hf.utils.atomic import write_json, write_text
from jmlr_hf.utils.demo_models import resolve_model_path

from .jmlr_vs_rag import (
    FROZEN_LLM_ARMS,
    ExperimentArguments,
    build_arm_model,
    cached_document_nlls,
    planned_runs,
    prepare_data,
    run_dir,
    run_name,
)
from .tables import arm_label, stats_cell, value_stats

#: Arms whose final LLM is the base LLM: their own-LLM reference is the base LLM's cached NLLs.
BASE_LLM_ARMS = ("base",) + FROZEN_LLM_ARMS
#: Arms whose LLM trains with documents in the prompt: their own-LLM NLLs come from the saved model.
TRAINED_LLM_ARMS = ("rag", "jmlr")
#: What `llm_preference_metrics` returns (with base rankings), reported here with an `own_` prefix.
PREFERENCE_METRICS = (
    "llm_top1_agreement",
    "llm_pairwise_agreement",
    "llm_top1_nll",
    "llm_best_nll",
    "headroom_captured",
)
OWN_METRICS = tuple(f"own_{key}" for key in PREFERENCE_METRICS)


def own_nlls(args: ExperimentArguments, name: str, rows: Dataset) -> tuple[list[list[float]], JMLRForCausalLM]:
    """The saved model of run `name` and its LLM's answer NLL with each candidate of each of `rows` alone in the
    prompt, kept in `<run dir>/own_nlls/<name>.json` (keyed by row id, with the run record's hash: rows measured
    before for the same run are not measured again)."""
    folder = os.path.join(run_dir(args), "models", name)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{folder} does not exist: the own-LLM measurement needs the run's saved model; run the experiment with "
            "--save_models true (the run is trained again only if its record is deleted)"
        )
    model = JMLRForCausalLM.from_pretrained(folder)
    path = os.path.join(run_dir(args), "own_nlls", f"{name}.json")
    # NLLs of an earlier model under the same name (the run was deleted and trained again) are not reused.
    record = _fingerprint(os.path.join(run_dir(args), "runs", f"{name}.json"))
    nlls = cached_document_nlls(
        path,
        rows,
        lambda: (model, model.load_tokenizers()[0]),
        args.eval_truncate_documents,
        f"Own-LLM NLLs ({name})",
        fingerprint=record,
    )
    model.eval()
    return nlls, model


def _fingerprint(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def measure(args: ExperimentArguments) -> dict[str, Any]:
    """Every recorded run of the planned arms and seeds (SFT left out): its own-LLM preference metrics, then JMLR
    against RAG-SFT seed by seed. Returns `{"runs": {name: metrics}, "paired": {name: metrics}}`."""
    if args.eval_preference_limit <= 0:
        raise ValueError("eval_preference_limit is 0: there are no test questions to measure the preference on")
    _, evaluation = prepare_data(args)
    rows = evaluation.select(range(min(args.eval_preference_limit, len(evaluation))))
    retriever_tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.retriever))
    base_rankings = None
    runs: dict[str, dict[str, Any]] = {}
    for arm, loss, seed in planned_runs(args):
        if arm not in BASE_LLM_ARMS + TRAINED_LLM_ARMS:
            continue
        name = run_name(arm, loss, seed)
        path = os.path.join(run_dir(args), "runs", f"{name}.json")
        if not os.path.exists(path):
            continue  # not recorded yet: nothing to measure
        if arm in BASE_LLM_ARMS:
            # The LLM is the base one: the run's record measured exactly this (its retriever against the base LLM's
            # NLLs, on the same questions).
            with open(path, encoding="utf-8") as f:
                recorded = json.load(f)["metrics"]
            metrics = {key: recorded[key] for key in PREFERENCE_METRICS}
        else:
            if base_rankings is None:
                base_rankings = rank_candidates(
                    build_arm_model(args, "rag", "none"), retriever_tokenizer, rows, show_progress=False
                )
            nlls, model = own_nlls(args, name, rows)
            rankings = rank_candidates(model, retriever_tokenizer, rows, show_progress=False)
            metrics = llm_preference_metrics(rankings, nlls, base_rankings=base_rankings)
        runs[name] = {"arm": arm, "retrieval_loss": loss, "seed": seed, "label": arm_label(arm, loss)}
        runs[name].update({f"own_{key}": metrics[key] for key in PREFERENCE_METRICS})
    paired = {}
    for name, run in runs.items():
        rag = runs.get(run_name("rag", "none", run["seed"]))
        if run["arm"] != "jmlr" or rag is None:
            continue
        gap = rag["own_llm_top1_nll"] - rag["own_llm_best_nll"]
        won = rag["own_llm_top1_nll"] - run["own_llm_top1_nll"]
        paired[name] = {
            "seed": run["seed"],
            "top1_nll_rag_minus_jmlr": won,
            "rag_headroom": gap,
            "headroom_captured_vs_rag": won / gap if gap > 0 else math.nan,
        }
    return {"questions": len(rows), "runs": runs, "paired": paired}


def own_preference_table(result: dict[str, Any]) -> str:
    """Markdown: mean ± sample std over seeds per arm, then the JMLR − RAG-SFT pairs seed by seed."""
    groups: dict[str, list[dict]] = {}
    for run in result["runs"].values():
        groups.setdefault(run["label"], []).append(run)
    lines = [
        f"Own-LLM preference on the first {result['questions']} test questions (mean ± sample std over seeds, n):",
        "",
        "| arm | " + " | ".join(OWN_METRICS) + " |",
        "|---" * (len(OWN_METRICS) + 1) + "|",
    ]
    for label, group in groups.items():
        lines.append(
            f"| {label} | " + " | ".join(stats_cell(value_stats([r[m] for r in group])) for m in OWN_METRICS) + " |"
        )
    if result["paired"]:
        lines += [
            "",
            "JMLR against RAG-SFT, the same seed, each LLM with its own retriever's top 1:",
            "",
            "| run | RAG-SFT top-1 NLL − JMLR top-1 NLL | RAG-SFT headroom (top-1 − best) | headroom captured vs RAG-SFT |",
            "|---|---|---|---|",
        ]
        for name, pair in result["paired"].items():
            lines.append(
                f"| {name} | {pair['top1_nll_rag_minus_jmlr']:.4f} | {pair['rag_headroom']:.4f} | "
                f"{pair['headroom_captured_vs_rag']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse (the experiment's YAML `--config`, flags override it) → measure → write the tables."""
    from trl import TrlParser

    (args,) = TrlParser((ExperimentArguments,)).parse_args_and_config(args=argv)
    result = measure(args)
    write_json(os.path.join(run_dir(args), "own_preference.json"), result)
    table = own_preference_table(result)
    write_text(os.path.join(run_dir(args), "own_preference.md"), table)
    print(table)
    return result


if __name__ == "__main__":
    main()
