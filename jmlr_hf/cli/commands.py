"""What each `jmlr` subcommand does, given its parsed arguments ([`jmlr_hf.cli.arguments`]).

Every heavy import (torch, transformers models, datasets, faiss) happens inside the function that needs it, so that
importing this module, and parsing any command line, costs nothing; only the subcommand that runs pays for its
libraries.
"""

from __future__ import annotations

import os
import random
import sys
from typing import TYPE_CHECKING, Any

from .arguments import (
    AnswerArguments,
    EvaluateArguments,
    IndexArguments,
    PullArguments,
    PushArguments,
    PushDatasetArguments,
    PushIndexArguments,
    PushModelArguments,
    QuestionArguments,
    RetrieveArguments,
)

if TYPE_CHECKING:
    from datasets import Dataset

    from ..data import LoadReport

#: `jmlr evaluate`'s generated tokens per question by default: a letter or yes/no/maybe with a few words around it,
#: or an open answer (MedQuAD's targets run to 40 words, about 55 SmolLM2 tokens).
CHOICE_TOKENS = 16
OPEN_ANSWER_TOKENS = 64


def data_dir_of(data_dir: str | None) -> str:
    """`--data_dir`, or the shared data folder ([`jmlr_hf.data.default_data_dir`]), resolved only when used."""
    if data_dir is not None:
        return data_dir
    from ..data import default_data_dir

    return str(default_data_dir())


def load_retriever(name_or_path: str) -> tuple[Any, Any, Any]:
    """`(retriever, tokenizer, config)` from a JMLR checkpoint (its trained retriever) or a plain encoder."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ..models import JMLRConfig, JMLRRetriever, is_jmlr_checkpoint, load_jmlr_checkpoint
    from ..utils.demo_models import resolve_model_path

    path = resolve_model_path(name_or_path)
    if is_jmlr_checkpoint(path):
        model, _, retriever_tokenizer = load_jmlr_checkpoint(path)
        return model.retriever.eval(), retriever_tokenizer, model.config
    encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
    config = JMLRConfig(retriever=encoder.config)
    return JMLRRetriever(config, encoder=encoder).eval(), AutoTokenizer.from_pretrained(path), config


def load_questions(args: QuestionArguments, split: str | None) -> Dataset:
    """`load_task` for `jmlr retrieve` / `jmlr evaluate`, printing its summary lines."""
    from ..data import load_task, print_load_summaries

    reports: list[LoadReport] = []
    questions = load_task(
        args.task,
        split,
        data_dir=data_dir_of(args.data_dir),
        path=args.questions,
        skip_invalid=args.skip_invalid,
        reports=reports,
    )
    print_load_summaries(reports, "questions")
    return questions


def limit_questions(questions: Dataset, limit: int | None, *, sample: bool = True, seed: int = 0) -> Dataset:
    """At most `limit` questions: a seeded random sample (kept in file order), or with `sample=False` the first rows.

    A sample, because question files are often sorted (MMLU-Med by subject: its first 100 rows are all anatomy), so
    the first rows measure one corner of the task; seeded, so that two runs, or two models, see the same questions.
    """
    if limit is None or limit >= len(questions):
        return questions
    if not sample:
        return questions.select(range(limit))
    return questions.select(sorted(random.Random(seed).sample(range(len(questions)), limit)))


def run_index(args: IndexArguments) -> None:
    """`jmlr index`: encode a corpus with the retriever and save a faiss index.

    Under `accelerate launch --num_processes N` (or torchrun) every process encodes its share of the corpus and the
    main process writes the index (the folder a single process writes) and prints the summaries; the nodes need not
    share a filesystem, only the corpus and the retriever (see `jmlr_hf.retrieval.sharded`)."""
    from ..data import load_named_corpus, print_load_summaries
    from ..retrieval import DocumentIndex
    from ..retrieval.sharded import close_process_group, process_group
    from ..scripts.preflight import check_corpus

    options = args.index_options()  # its checks, like the corpus's, before the retriever loads
    check_corpus(args.corpus, args.data_dir, args.distractor_passages)
    group = process_group()  # joins the other processes of `accelerate launch` / torchrun, if any
    is_main = group is None or group.is_main
    # Under accelerate launch / torchrun, every process encodes its share (the main process writes the folder).
    options.update(show_progress=is_main, distributed=None)
    if args.streaming:
        if args.corpus in ("pubmedqa", "medquad") or args.distractor_passages:
            raise ValueError(
                "--streaming reads one corpus file or Hub id as it comes: give --corpus <file or Hub id> and no "
                "--distractor_passages"
            )
        if args.kind in ("ivf", "ivfpq") and args.nlist is None:
            raise ValueError(
                f"--streaming --kind {args.kind} needs --nlist (about 4*sqrt(number of documents)): a stream has no "
                "length up front, and the lists are trained on its first documents"
            )
        from ..data import stream_corpus

        retriever, tokenizer, config = load_retriever(args.retriever)
        index = DocumentIndex.from_retriever(
            stream_corpus(args.corpus),
            retriever,
            tokenizer,
            max_length=config.max_document_length,
            directory=args.output,
            **options,
        )
        if index is not None:  # the main process, which wrote the folder
            print(f"Indexed {len(index)} streamed documents ({index.kind}, dim {index.dim}) into {args.output}")
        close_process_group(group)
        return
    retriever, tokenizer, config = load_retriever(args.retriever)
    reports: list[LoadReport] = []
    corpus = load_named_corpus(
        args.corpus,
        data_dir=data_dir_of(args.data_dir),
        distractor_passages=args.distractor_passages,
        skip_invalid=args.skip_invalid,
        reports=reports,
    )
    if is_main:
        print_load_summaries(reports, "corpus")
    index = DocumentIndex.from_retriever(
        corpus, retriever, tokenizer, max_length=config.max_document_length, **options
    )
    if index is not None:  # None on the other processes: their shares of the vectors went to the main process
        index.save(args.output)
        where = f", encoded by {group.world_size} processes" if group is not None else ""
        print(f"Indexed {len(index)} documents ({index.kind}, dim {index.dim}{where}) into {args.output}")
    close_process_group(group)  # every process waits for the main one's save, then the group ends


def run_retrieve(args: RetrieveArguments) -> None:
    """`jmlr retrieve`: add each question's top-N candidates from an index."""
    from ..retrieval import DocumentIndex, add_candidates

    retriever, tokenizer, config = load_retriever(args.retriever)
    index = DocumentIndex.load(
        args.index, expected_fingerprint=retriever.weights_fingerprint(), on_stale="warn", gpu_shards=args.gpu_shards
    )
    questions = load_questions(args, args.split)
    questions = limit_questions(questions, args.limit, sample=args.sample, seed=args.sample_seed)
    result = add_candidates(
        questions, index, retriever, tokenizer, args.num_candidates, max_query_length=config.max_query_length
    )
    if args.output.endswith((".jsonl", ".json")):
        result.to_json(args.output, lines=True)
    else:
        result.save_to_disk(args.output)
    print(f"Wrote {len(result)} questions with {args.num_candidates} candidates each to {args.output}")


def run_train(argv: list[str]) -> None:
    """`jmlr train`: the training script, with TRL's own parser (`TrlParser`) for its flags and `--config`."""
    from ..scripts.train import cli_main

    cli_main(argv, prog="jmlr train")


def run_answer(args: AnswerArguments) -> None:
    """`jmlr answer`: retrieve, re-rank and answer one question with a trained model and its index, through
    `JMLRForCausalLM.answer` (the prompt written as in training: documents cut to `max_document_length` tokens, the
    whole fitted to `max_length`), the same path as the remote code's answer from a Hub id."""
    from ..models import load_jmlr_checkpoint
    from ..models.configuration_jmlr import check_count, check_options, check_question
    from ..retrieval import load_index
    from ..utils.demo_models import resolve_model_path

    # The checks `JMLRForCausalLM.answer` makes, before the model loads (seconds to minutes) rather than after.
    check_question(args.question, "question")
    check_options(args.options, "--options")
    check_count(args.max_new_tokens, "--max_new_tokens")
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
    reply = model.answer(
        args.question,
        tokenizer,
        retriever_tokenizer,
        options=args.options,
        index=index,
        max_new_tokens=args.max_new_tokens,
    )
    print(f"Answer: {reply.answer}\n\nDocuments used:")
    for rank, document in enumerate(reply.documents, start=1):
        text = document.get("text", "")
        print(f"  [{rank}] {document['id']} (retriever score {document['retriever_score']:.3f}): {text[:200]}")


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


def run_evaluate(args: EvaluateArguments) -> None:
    """`jmlr evaluate`: answer a QA set and report accuracy (and retrieval quality), as `jmlr answer` would answer.

    The documents come from `--index`, else from the index the model's config records (the index `jmlr answer`
    uses, so that the two agree); a model with a retriever and neither is an error unless `--closed_book`, which asks
    for no documents even when the model records an index. A causal LM without a retriever is evaluated closed book.
    """
    import torch

    from ..evaluation import EvaluationModel, check_evaluation_settings, evaluate_dataset
    from ..retrieval import load_index

    # The flags evaluate_dataset checks again with the model's config: here before the questions and the model load.
    check_evaluation_settings(
        batch_size=args.batch_size,
        num_candidates=args.num_candidates,
        num_documents=args.num_documents,
        max_new_tokens=args.max_new_tokens,
        prefix="--",
    )
    if args.mode == "cloze" and args.task == "medquad":
        raise SystemExit(
            "--mode cloze scores option texts, and MedQuAD's answers are texts to write (no options): use --mode "
            "likelihood (answer NLL), generative (ROUGE-L) or both"
        )
    split = resolve_evaluation_split(args.task, args.split, args.questions)
    questions = load_questions(args, None if split == "all" else split)
    questions = limit_questions(questions, args.limit, sample=args.sample, seed=args.sample_seed)
    model = EvaluationModel.from_pretrained(args.model, args.retriever, dtype=getattr(torch, args.dtype))
    index, index_name = None, None
    if args.index:
        if not model.has_retriever:
            raise SystemExit("--index needs a retriever: a trained JMLR model as --model, or --retriever")
        fingerprint = model.jmlr.retriever.weights_fingerprint()
        index, index_name = load_index(args.index, expected_fingerprint=fingerprint, on_stale="warn"), args.index
    elif not args.closed_book and model.setup == "jmlr" and model.config.index_repo_id:
        index = model.jmlr.load_index()
        revision = model.config.index_revision
        index_name = model.config.index_repo_id + (f"@{revision}" if revision else "")
    elif not args.closed_book and model.has_retriever:
        # Nothing silent: a model that can retrieve but has nowhere to retrieve from is not evaluated closed book
        # unless asked (a plain causal LM, without a retriever, can only be).
        raise SystemExit(
            f"{args.model} records no index: pass --index <folder or Hub id> to retrieve from one, or --closed_book "
            "to evaluate without documents"
        )
    result = evaluate_dataset(
        model,
        questions,
        mode=args.mode,
        index=index,
        num_candidates=args.num_candidates,
        num_documents=(args.num_documents if index is not None else 0),
        max_new_tokens=args.max_new_tokens or (OPEN_ANSWER_TOKENS if args.task == "medquad" else CHOICE_TOKENS),
        batch_size=args.batch_size,
    )
    result.settings.update(
        task=args.task,
        split=split,
        questions=args.questions,
        limit=args.limit,
        sample_seed=args.sample_seed if args.limit is not None and args.sample else None,
        model=args.model,
        model_sha256=model_digest(args.model),
        retriever=args.retriever,
        index=index_name,
        closed_book=index is None,
        dtype=args.dtype,
    )
    print(result.to_markdown())
    if args.output:
        json_path, markdown_path = result.save(args.output)
        print(f"\nWrote {json_path} and {markdown_path}")


def model_digest(name_or_path: str) -> str | None:
    """The weights digest of the evaluated model's folder, recorded in the results so that `jmlr push model
    --eval_results` can tell this model's results from another's (`None` for a Hub id)."""
    from ..hub.model_card import weights_digest
    from ..utils.demo_models import resolve_model_path

    return weights_digest(resolve_model_path(name_or_path))


def push_common(args: PushArguments) -> dict[str, Any]:
    """The keyword arguments every `jmlr_hf.hub` push takes: where the one commit goes."""
    return dict(
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        delete_patterns=args.delete or None,
    )


def run_push_model(args: PushModelArguments) -> None:
    """`jmlr push model`: a saved model folder, its card, and (by default) the index it records."""
    from .. import hub

    result = hub.push_model(
        args.source,
        args.repo_id,
        generator_weights=args.generator_weights,
        base_model=args.base_model,
        index=args.index,
        index_repo_id=args.index_repo_id,
        push_index_from_config=not args.no_index,
        allow_stale_index=args.allow_stale_index,
        eval_results=args.eval_results,
        datasets=args.datasets,
        **push_common(args),
    )
    if result.index_repo_id:
        print(f"Index: {result.index_repo_id} @ {result.index_revision}")
    print(f"Pushed model to {result.repo_id}: commit {result.commit}\n{result.url}")


def run_push_index(args: PushIndexArguments) -> None:
    """`jmlr push index`: a saved index folder, as a data set repository."""
    from .. import hub

    result = hub.push_index(args.source, args.repo_id, model_repo_id=args.model_repo_id, **push_common(args))
    print(f"Pushed index to {result.repo_id}: commit {result.commit}\n{result.url}")


def run_push_dataset(args: PushDatasetArguments) -> None:
    """`jmlr push dataset`: build a MedQA-Reason-style data set (three splits and a card) and publish it."""
    import tempfile

    from .. import hub
    from ..data import (
        LoadReport,
        build_from_medmcqa,
        build_from_medqa_reason_csv,
        print_load_summaries,
        save_reason_dataset,
    )

    if args.source == "medmcqa":
        dataset, report = build_from_medmcqa(
            args.input, data_dir=None if args.input else data_dir_of(args.data_dir), skip_invalid=args.skip_invalid
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
        result = hub.push_dataset_folder(folder, args.repo_id, **push_common(args))
    print("Splits: " + ", ".join(f"{name} {len(split)}" for name, split in dataset.items()))
    print(f"Pushed dataset to {result.repo_id}: commit {result.commit}\n{result.url}")


def run_pull(args: PullArguments) -> None:
    """`jmlr pull`: download a repository into a folder."""
    from .. import hub

    repo_type = "model" if args.what == "model" else "dataset"
    path = hub.pull(args.repo_id, args.output, repo_type=repo_type, revision=args.revision)
    print(f"Pulled {args.what} {args.repo_id} into {path}")
