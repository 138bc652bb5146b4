"""Does a trained query tower still find its question's topic when it searches the whole corpus?

The MedQuAD experiment trains the retriever's query side on each question's N first-stage candidates (`train_document_
encoder: false`), and those candidates are mostly passages of the question's own topic: the loss teaches the query to
*order* them (the "treatment" passage before the "symptoms" one) and says nothing of where the query lies relative to
the other ~29,500 passages. The whole-corpus recall the issue checks depends on both. This module measures, for each
saved model and the base, on the experiment's test questions and the base index of `--corpus medquad` (valid for every
query-side-only arm: the documents keep the base embeddings):

* `corpus_recall@k`: the gold passage is among the top k of the whole-corpus search (as the experiment reports);
* `own_topic_in_top@k`: at least one of the top k passages is about the question's topic (its `focus` is the
  passage's `title`, compared case-insensitively);
* `own_topic_share@k`: the share of the top k passages about the question's topic.

A retriever that learned to order a topic's passages while drifting away from the topic as a group keeps (or raises)
its top-1 choices among the candidates and loses the last two.

    python -m experiments.corpus_topics --config experiments/configs/joint-medquad.yaml \
        --models outputs/joint-medquad/models/supervised-seed0

Writes `<output_dir>/corpus_topics.{md,json}` (one row per model, `base` first).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import mean

from jmlr_hf.utils.atomic import write_json, write_text

from .jmlr_vs_rag import ExperimentArguments, run_dir

#: The cut-offs reported (the experiment's corpus recall uses 1 and 8).
TOPIC_K_VALUES = (1, 8)


def topic_metrics(
    hits: Sequence[Sequence[Mapping]], rows: Sequence[Mapping], k_values: Sequence[int] = TOPIC_K_VALUES
) -> dict[str, float]:
    """`corpus_recall@k`, `own_topic_in_top@k` and `own_topic_share@k` (see the module docstring) of the ranked
    `hits` (each a list of passages with `id` and `title`, best first) of `rows` (each with `gold_doc_ids` and
    `focus`), averaged over the rows."""
    if len(hits) != len(rows) or not rows:
        raise ValueError(f"{len(hits)} hit lists for {len(rows)} questions: give one per question, at least one")
    if any(len(top) < max(k_values) for top in hits):
        raise ValueError(f"every hit list needs at least {max(k_values)} passages")
    metrics: dict[str, float] = {}
    for k in k_values:
        recall, in_top, share = [], [], []
        for top, row in zip(hits, rows, strict=True):
            gold = set(row["gold_doc_ids"])
            same = [str(hit["title"]).casefold() == str(row["focus"]).casefold() for hit in top[:k]]
            recall.append(float(any(hit["id"] in gold for hit in top[:k])))
            in_top.append(float(any(same)))
            share.append(sum(same) / k)
        metrics[f"corpus_recall@{k}"] = mean(recall)
        metrics[f"own_topic_in_top@{k}"] = mean(in_top)
        metrics[f"own_topic_share@{k}"] = mean(share)
    return metrics


@dataclass
class CorpusTopicArguments(ExperimentArguments):
    models: list[str] = field(
        default_factory=list,
        metadata={"help": "Saved JMLR models (folders) to measure beside the base; the experiment's `models/<run>`."},
    )


def measure_topics(args: CorpusTopicArguments) -> dict[str, dict[str, float]]:
    """The metrics of the base retriever and of each of `args.models`, on the prepared test questions."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from jmlr_hf.models import JMLRForCausalLM
    from jmlr_hf.retrieval import DocumentIndex, encode_queries_with
    from jmlr_hf.utils.demo_models import resolve_model_path

    if args.train_document_encoder:
        raise ValueError(
            "train_document_encoder: true moves the document embeddings: the base index does not describe the "
            "trained retrievers (measure them with their own index)"
        )
    questions = load_from_disk(os.path.join(args.output_dir, "prepared", "eval"))
    index = DocumentIndex.load(os.path.join(args.output_dir, "prepared", "index-dense"), on_stale="warn")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.retriever))
    base = JMLRForCausalLM.from_components(resolve_model_path(args.generator), resolve_model_path(args.retriever))
    rows = list(questions)
    results = {}
    for name, load in [("base", lambda: base)] + [
        (os.path.basename(os.path.normpath(path)), lambda path=path: JMLRForCausalLM.from_pretrained(path))
        for path in args.models
    ]:
        model = load().eval()
        if model.config.train_document_encoder and name != "base":
            raise ValueError(f"{name} trained its document tower: the base index does not describe it")
        hits = index.retrieve(
            list(questions["question"]),
            encode_queries_with(model.retriever, tokenizer, max_length=model.config.max_query_length),
            max(TOPIC_K_VALUES),
            show_progress=False,
        )
        results[name] = topic_metrics(hits, rows)
        print(name, {key: round(value, 3) for key, value in results[name].items()})
    return results


def topic_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table, one row per model."""
    columns = list(next(iter(results.values())))
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |" for name, row in results.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Parse (the experiment's YAML `--config`, flags override it) → measure → write the table."""
    from trl import TrlParser

    (args,) = TrlParser((CorpusTopicArguments,)).parse_args_and_config(args=argv)
    results = measure_topics(args)
    directory = run_dir(args)
    write_json(os.path.join(directory, "corpus_topics.json"), results)
    table = topic_table(results)
    write_text(os.path.join(directory, "corpus_topics.md"), table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
