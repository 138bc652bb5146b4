"""The `jmlr` command: `index`, `retrieve`, `train` and `answer`.

jmlr index    --corpus pubmedqa --retriever all-minilm-l6-v2 --output outputs/index
jmlr retrieve --index outputs/index --retriever all-minilm-l6-v2 --task pubmedqa --split test --output q.jsonl
jmlr train    --config recipes/demo.yaml
jmlr answer   --model outputs/demo/final "Does aspirin prevent heart attacks?"
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def load_retriever(name_or_path: str):
    """`(retriever, tokenizer, config)` from a JMLR checkpoint (its trained retriever) or a plain encoder."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .configuration_jmlr import JMLRConfig
    from .modeling_jmlr import JMLRForCausalLM, JMLRRetriever
    from .pretrained import resolve_model_path
    from .trainer import RETRIEVER_TOKENIZER_DIR

    path = resolve_model_path(name_or_path)
    config_file = os.path.join(path, "config.json")
    if os.path.exists(config_file):
        with open(config_file, encoding="utf-8") as f:
            is_jmlr = json.load(f).get("model_type") == JMLRConfig.model_type
        if is_jmlr:
            model = JMLRForCausalLM.from_pretrained(path, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(os.path.join(path, RETRIEVER_TOKENIZER_DIR))
            return model.retriever.eval(), tokenizer, model.config
    encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
    config = JMLRConfig(retriever=encoder.config)
    return JMLRRetriever(config, encoder=encoder).eval(), AutoTokenizer.from_pretrained(path), config


def cmd_index(args: argparse.Namespace) -> None:
    from .index import DocumentIndex
    from .tasks import load_named_corpus

    retriever, tokenizer, config = load_retriever(args.retriever)
    corpus = load_named_corpus(args.corpus, data_dir=args.data_dir, distractor_passages=args.distractor_passages)
    index = DocumentIndex.from_retriever(
        corpus, retriever, tokenizer, max_length=config.max_document_length, kind=args.kind
    )
    index.save(args.output)
    print(f"Indexed {len(index)} documents ({index.kind}, dim {index.dim}) into {args.output}")


def cmd_retrieve(args: argparse.Namespace) -> None:
    from .index import DocumentIndex
    from .retrieval import add_candidates
    from .tasks import load_task

    retriever, tokenizer, config = load_retriever(args.retriever)
    index = DocumentIndex.load(args.index, expected_fingerprint=retriever.weights_fingerprint(), on_stale="warn")
    questions = load_task(args.task, args.split, data_dir=args.data_dir, path=args.questions)
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
    from transformers import AutoTokenizer

    from .index import DocumentIndex, document_text
    from .modeling_jmlr import JMLRForCausalLM, build_prompt
    from .pretrained import resolve_model_path
    from .trainer import RETRIEVER_TOKENIZER_DIR

    path = resolve_model_path(args.model)
    model = JMLRForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    retriever_tokenizer = AutoTokenizer.from_pretrained(os.path.join(path, RETRIEVER_TOKENIZER_DIR))
    index_dir = args.index or model.config.index_repo_id
    if not index_dir:
        raise SystemExit("No index: pass --index, or train/save a model whose config records index_repo_id")
    index = DocumentIndex.load(index_dir)
    cfg = model.config
    from .index import encode_queries_with

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


def build_parser() -> argparse.ArgumentParser:
    from .data import default_data_dir
    from .tasks import TASKS

    parser = argparse.ArgumentParser(prog="jmlr", description="Joint Medical LLM and Retrieval Training (JMLR)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="Build a document index over a corpus")
    p.add_argument("--corpus", default="pubmedqa", help="'pubmedqa', 'medquad', or a corpus file / Hub id")
    p.add_argument("--retriever", default="all-minilm-l6-v2", help="An encoder or a trained JMLR model")
    p.add_argument("--output", required=True)
    p.add_argument("--kind", default="flat", choices=["flat", "ivf", "hnsw"])
    p.add_argument("--distractor-passages", type=int, default=0, help="MedQuAD passages to add as distractors")
    p.add_argument("--data-dir", default=str(default_data_dir()))
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
    p.set_defaults(func=cmd_retrieve)

    sub.add_parser("train", help="Run the training recipe (all flags go to recipes/train.py)", add_help=False)

    p = sub.add_parser("answer", help="Answer a question with a trained model and its index")
    p.add_argument("question")
    p.add_argument("--model", required=True)
    p.add_argument("--index", default=None, help="Default: the index recorded in the model's config")
    p.add_argument("--options", nargs="*", default=None, help="Options of a multiple-choice question")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.set_defaults(func=cmd_answer)
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
