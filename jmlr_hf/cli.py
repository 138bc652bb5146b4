"""The `jmlr` command: `index`, `retrieve`, `train`, `answer`, `evaluate`, `push` and `pull`.

jmlr index    --corpus pubmedqa --retriever all-minilm-l6-v2 --output outputs/index
jmlr retrieve --index outputs/index --retriever all-minilm-l6-v2 --task pubmedqa --split test --output q.jsonl
jmlr train    --config recipes/demo.yaml
jmlr answer   --model outputs/demo/final "Does aspirin prevent heart attacks?"
jmlr evaluate --model smollm2-135m-instruct --task mmlu --mode both --limit 20 --output outputs/eval/mmlu.json
jmlr push model outputs/demo/final --repo-id me/jmlr-demo --eval-results outputs/eval/mmlu.json
jmlr push dataset --source medmcqa --repo-id me/medmcqa-reason
jmlr pull model me/jmlr-demo --output models/jmlr-demo
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset

    from .data import LoadReport


def load_retriever(name_or_path: str):
    """`(retriever, tokenizer, config)` from a JMLR checkpoint (its trained retriever) or a plain encoder."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .models import JMLRConfig, JMLRRetriever, is_jmlr_checkpoint, load_jmlr_checkpoint
    from .utils.demo_models import resolve_model_path

    path = resolve_model_path(name_or_path)
    if is_jmlr_checkpoint(path):
        model, _, retriever_tokenizer = load_jmlr_checkpoint(path)
        return model.retriever.eval(), retriever_tokenizer, model.config
    encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
    config = JMLRConfig(retriever=encoder.config)
    return JMLRRetriever(config, encoder=encoder).eval(), AutoTokenizer.from_pretrained(path), config


def load_questions(args: argparse.Namespace, split: str | None) -> Dataset:
    """`load_task` for `jmlr retrieve` / `jmlr evaluate`, printing its summary lines."""
    from .data import load_task, print_load_summaries

    reports: list[LoadReport] = []
    questions = load_task(
        args.task, split, data_dir=args.data_dir, path=args.questions, skip_invalid=args.skip_invalid, reports=reports
    )
    print_load_summaries(reports, "questions")
    return questions


def cmd_index(args: argparse.Namespace) -> None:
    from .data import load_named_corpus, print_load_summaries
    from .retrieval import DocumentIndex

    retriever, tokenizer, config = load_retriever(args.retriever)
    reports: list[LoadReport] = []
    corpus = load_named_corpus(
        args.corpus,
        data_dir=args.data_dir,
        distractor_passages=args.distractor_passages,
        skip_invalid=args.skip_invalid,
        reports=reports,
    )
    print_load_summaries(reports, "corpus")
    index = DocumentIndex.from_retriever(
        corpus, retriever, tokenizer, max_length=config.max_document_length, kind=args.kind
    )
    index.save(args.output)
    print(f"Indexed {len(index)} documents ({index.kind}, dim {index.dim}) into {args.output}")


def cmd_retrieve(args: argparse.Namespace) -> None:
    from .retrieval import DocumentIndex, add_candidates

    retriever, tokenizer, config = load_retriever(args.retriever)
    index = DocumentIndex.load(args.index, expected_fingerprint=retriever.weights_fingerprint(), on_stale="warn")
    questions = load_questions(args, args.split)
    if args.limit:
        questions = questions.select(range(min(args.limit, len(questions))))
    result = add_candidates(
        questions, index, retriever, tokenizer, args.num_candidates, max_query_length=config.max_query_length
    )
    if args.output.endswith((".jsonl", ".json")):
        result.to_json(args.output, lines=True)
    else:
        result.save_to_disk(args.output)
    print(f"Wrote {len(result)} questions with {args.num_candidates} candidates each to {args.output}")


def cmd_train(argv: list[str]) -> None:
    from .scripts.train import cli_main

    cli_main(argv)


def cmd_answer(args: argparse.Namespace) -> None:
    import torch

    from .models import build_prompt, load_jmlr_checkpoint
    from .retrieval import document_text, encode_queries_with, load_index
    from .utils.demo_models import resolve_model_path

    model, tokenizer, retriever_tokenizer = load_jmlr_checkpoint(resolve_model_path(args.model))
    model.eval()
    if not (args.index or model.config.index_repo_id):
        raise SystemExit("No index: pass --index, or use a model whose config records its index (index_repo_id)")
    # As `jmlr evaluate` does: an index built by other retriever weights gives candidates this retriever would not
    # rank first, so a mismatch warns (StaleIndexWarning) instead of answering silently.
    fingerprint = model.retriever.weights_fingerprint()
    index = (
        load_index(args.index, expected_fingerprint=fingerprint, on_stale="warn") if args.index else model.load_index()
    )
    cfg = model.config

    hits = index.retrieve(
        [args.question],
        encode_queries_with(model.retriever, retriever_tokenizer, cfg.max_query_length),
        cfg.num_candidates,
        show_progress=False,
    )[0]
    texts = [document_text(hit) for hit in hits]
    with torch.no_grad():
        scores = model.score_documents([args.question], [texts], retriever_tokenizer)[0]
    order = scores.argsort(descending=True)[: cfg.num_context_documents].tolist()
    documents = [texts[i] for i in order]
    prompt = build_prompt(cfg, args.question, documents, args.options)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    print(f"Answer: {answer}\n\nDocuments used:")
    for rank, i in enumerate(order, start=1):
        print(f"  [{rank}] {hits[i]['id']} (retriever score {float(scores[i]):.3f}): {texts[i][:200]}")


def resolve_evaluation_split(task: str, split: str | None, questions: str | None) -> str:
    """The split `jmlr evaluate` reads: `"train"`, `"test"` or `"all"`.

    `--split` when given. Otherwise an explicit MedQA/MedMCQA `--questions` file is an evaluation file and is read
    whole (as in the training recipe; MedQA comes as separate train/dev/test files); everything else reads `"test"`:
    the held-out hash split of the bundled MedMCQA file, the official PubMedQA-L test ids, all of MMLU-Med.
    """
    if split is not None:
        if task == "mmlu" and split == "train":
            raise SystemExit("MMLU-Med has only test questions: use --split test (or all)")
        return split
    return "all" if questions is not None and task in ("medqa", "medmcqa") else "test"


def cmd_evaluate(args: argparse.Namespace) -> None:
    import torch

    from .evaluation import EvaluationModel, evaluate_dataset
    from .retrieval import load_index

    split = resolve_evaluation_split(args.task, args.split, args.questions)
    questions = load_questions(args, None if split == "all" else split)
    if args.limit is not None:
        questions = questions.select(range(min(args.limit, len(questions))))
    model = EvaluationModel.from_pretrained(args.model, args.retriever, dtype=getattr(torch, args.dtype))
    index = None
    if args.index:
        if not model.has_retriever:
            raise SystemExit("--index needs a retriever: a trained JMLR model as --model, or --retriever")
        fingerprint = model.jmlr.retriever.weights_fingerprint()
        index = load_index(args.index, expected_fingerprint=fingerprint, on_stale="warn")
    result = evaluate_dataset(
        model,
        questions,
        mode=args.mode,
        index=index,
        num_candidates=args.num_candidates,
        num_documents=args.num_documents if index is not None else 0,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    result.settings.update(
        task=args.task,
        split=split,
        questions=args.questions,
        limit=args.limit,
        model=args.model,
        retriever=args.retriever,
        index=args.index,
        dtype=args.dtype,
    )
    print(result.to_markdown())
    if args.output:
        json_path, markdown_path = result.save(args.output)
        print(f"\nWrote {json_path} and {markdown_path}")


def cmd_push(args: argparse.Namespace) -> None:
    from . import hub

    common = dict(private=args.private, revision=args.revision, commit_message=args.commit_message)
    common["delete_patterns"] = args.delete or None
    if args.what == "model":
        result = hub.push_model(
            args.source,
            args.repo_id,
            generator_weights=args.generator_weights,
            base_model=args.base_model,
            index=args.index,
            index_repo_id=args.index_repo_id,
            push_index_from_config=not args.no_index,
            eval_results=args.eval_results,
            datasets=args.datasets,
            **common,
        )
        if result.index_repo_id:
            print(f"Index: {result.index_repo_id} @ {result.index_revision}")
    elif args.what == "index":
        result = hub.push_index(args.source, args.repo_id, model_repo_id=args.model_repo_id, **common)
    else:
        import tempfile

        from .data import (
            LoadReport,
            build_from_medmcqa,
            build_from_medqa_reason_csv,
            print_load_summaries,
            save_reason_dataset,
        )

        if args.source == "medmcqa":
            dataset, report = build_from_medmcqa(
                args.input, data_dir=None if args.input else args.data_dir, skip_invalid=args.skip_invalid
            )
            license, description = "mit", "MedMCQA questions with their expert explanations as rationales."
        else:
            if args.input is None:
                raise SystemExit("--source medqa-reason-csv needs --input (the CSV file or a Hub data set id)")
            report = LoadReport()
            dataset = build_from_medqa_reason_csv(args.input, skip_invalid=args.skip_invalid, report=report)
            license, description = "other", "MedQA questions with GPT-4 rationales, from the MedQA-Reason layout."
        print_load_summaries([report], "questions")
        card = hub.render_dataset_card(
            dataset,
            repo_id=args.repo_id,
            source_description=description,
            license=license,
            build_command="jmlr " + " ".join(sys.argv[1:]),
        )
        with tempfile.TemporaryDirectory(prefix="jmlr-dataset-") as staging:
            folder = save_reason_dataset(dataset, os.path.join(staging, "dataset"), card)
            result = hub.push_dataset_folder(folder, args.repo_id, **common)
        print("Splits: " + ", ".join(f"{name} {len(split)}" for name, split in dataset.items()))
    print(f"Pushed {args.what} to {result.repo_id}: commit {result.commit}\n{result.url}")


def cmd_pull(args: argparse.Namespace) -> None:
    from . import hub

    repo_type = "model" if args.what == "model" else "dataset"
    path = hub.pull(args.repo_id, args.output, repo_type=repo_type, revision=args.revision)
    print(f"Pulled {args.what} {args.repo_id} into {path}")


def add_skip_invalid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-invalid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Skip invalid rows of the input files, counted in the summary line printed per file (default); "
        "--no-skip-invalid stops at the first one. A file without a valid row is an error either way",
    )


def build_parser() -> argparse.ArgumentParser:
    from .data import TASKS, default_data_dir

    parser = argparse.ArgumentParser(prog="jmlr", description="Joint Medical LLM and Retrieval Training (JMLR)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="Build a document index over a corpus")
    p.add_argument("--corpus", default="pubmedqa", help="'pubmedqa', 'medquad', or a corpus file / Hub id")
    p.add_argument("--retriever", default="all-minilm-l6-v2", help="An encoder or a trained JMLR model")
    p.add_argument("--output", required=True)
    p.add_argument("--kind", default="flat", choices=["flat", "ivf", "hnsw"])
    p.add_argument("--distractor-passages", type=int, default=0, help="MedQuAD passages to add as distractors")
    p.add_argument("--data-dir", default=str(default_data_dir()))
    add_skip_invalid(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("retrieve", help="Pre-retrieval: add the top-N candidates of each question")
    p.add_argument("--index", required=True)
    p.add_argument("--retriever", default="all-minilm-l6-v2")
    p.add_argument("--task", default="pubmedqa", choices=list(TASKS))
    p.add_argument("--questions", help="Questions file (default: the task's file in --data-dir)")
    p.add_argument("--split", default=None, choices=["train", "test"], help="Split (default: all questions)")
    p.add_argument("--num-candidates", type=int, default=20)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--output", required=True, help="A .jsonl file, or a folder for save_to_disk")
    p.add_argument("--data-dir", default=str(default_data_dir()))
    add_skip_invalid(p)
    p.set_defaults(func=cmd_retrieve)

    sub.add_parser("train", help="Run the training recipe (all flags go to recipes/train.py)", add_help=False)

    p = sub.add_parser("answer", help="Answer a question with a trained model and its index")
    p.add_argument("question")
    p.add_argument("--model", required=True)
    p.add_argument("--index", default=None, help="Default: the index recorded in the model's config")
    p.add_argument("--options", nargs="*", default=None, help="Options of a multiple-choice question")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.set_defaults(func=cmd_answer)

    p = sub.add_parser("evaluate", help="Answer accuracy (and retrieval quality) on a QA set")
    p.add_argument("--model", required=True, help="A trained JMLR model, or a causal LM (path, Hub id or alias)")
    p.add_argument("--retriever", default=None, help="An encoder to pair with a plain causal LM (not with JMLR)")
    p.add_argument("--index", default=None, help="Document index to retrieve from (default: closed book)")
    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--questions", default=None, help="Questions file (default: the task's file in --data-dir)")
    p.add_argument(
        "--split",
        default=None,
        choices=["train", "test", "all"],
        help="Default: test; all of an explicit --questions file for medqa and medmcqa",
    )
    p.add_argument("--limit", type=int, default=None, help="Evaluate only the first N questions")
    p.add_argument("--mode", default="both", choices=["likelihood", "generative", "both"], help="Default: both")
    p.add_argument("--max-new-tokens", type=int, default=16, help="Tokens generated per question (generative)")
    p.add_argument("--num-candidates", type=int, default=None, help="Candidates from --index (default: config)")
    p.add_argument("--num-documents", type=int, default=None, help="Documents in the prompt (default: config)")
    p.add_argument(
        "--batch-size", type=int, default=16, help="Questions per forward (retriever, likelihood scoring); default 16"
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="Weights' precision (default float32). bfloat16 is several times faster on GPUs and on CPUs with AMX "
        "(benchmarks/evaluation.py); its NLLs differ from float32's in the second decimal, near-ties can flip",
    )
    p.add_argument("--output", default=None, help="Results JSON (the Markdown table goes next to it, .md)")
    p.add_argument("--data-dir", default=str(default_data_dir()))
    add_skip_invalid(p)
    p.set_defaults(func=cmd_evaluate)

    push = sub.add_parser("push", help="Publish a model, an index or a data set to the Hub (one commit)")
    push_sub = push.add_subparsers(dest="what", required=True)
    pm = push_sub.add_parser("model", help="A saved JMLR model folder (and, by default, the index it records)")
    pm.add_argument("source", help="The saved model folder (e.g. outputs/demo/final)")
    pm.add_argument("--generator-weights", default="merged", choices=["merged", "adapter"])
    pm.add_argument(
        "--base-model", default=None, help="Hub id of the base generator (for --generator-weights adapter)"
    )
    pm.add_argument("--index", default=None, help="Index folder to publish, or Hub id of a published index")
    pm.add_argument("--index-repo-id", default=None, help="Where a local index goes (default: <repo-id>-index)")
    pm.add_argument("--no-index", action="store_true", help="Publish no index and record none")
    pm.add_argument("--eval-results", nargs="*", default=[], help="`jmlr evaluate --output` files for the card")
    pm.add_argument("--datasets", nargs="*", default=[], help="Training data set ids for the card")
    pi = push_sub.add_parser("index", help="A saved document index folder (as a data set repository)")
    pi.add_argument("source", help="The index folder (index.faiss, documents.parquet, index_config.json)")
    pi.add_argument("--model-repo-id", default=None, help="The model it goes with (named in the card)")
    pd = push_sub.add_parser("dataset", help="Build a MedQA-Reason-style data set and publish it")
    pd.add_argument("--source", required=True, choices=["medmcqa", "medqa-reason-csv"])
    pd.add_argument("--input", default=None, help="The source file (default for medmcqa: the file in --data-dir)")
    pd.add_argument("--data-dir", default=str(default_data_dir()))
    add_skip_invalid(pd)
    for p in (pm, pi, pd):
        p.add_argument("--repo-id", required=True)
        p.add_argument("--private", action="store_true")
        p.add_argument("--revision", default=None, help="Branch to commit to (created if missing; default main)")
        p.add_argument("--commit-message", default=None)
        p.add_argument("--delete", nargs="*", default=[], help="Patterns of existing files to delete in the commit")
        p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="Download a model, an index or a data set from the Hub into a folder")
    p.add_argument("what", choices=["model", "index", "dataset"])
    p.add_argument("repo_id")
    p.add_argument("--output", required=True)
    p.add_argument("--revision", default=None)
    p.set_defaults(func=cmd_pull)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        cmd_train(argv[1:])
        return
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
