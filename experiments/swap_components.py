"""Which half of a trained JMLR model lowers its answer NLL: its retriever, or its generator?

JMLR trains both halves together. Against RAG-SFT — the same generator LoRA, trained and evaluated with the frozen
retriever's top 1 — the JMLR model's lower answer NLL can come from its retriever (a better passage in the prompt) or
from its generator (a LoRA trained on the passages its retriever brought, so perhaps better at reading them). Crossing
the halves of two saved models separates the two: a composite keeps one model's retriever (its query and document
towers, projection and config) and takes the other's generator weights. With the JMLR and RAG-SFT models of one
seed, the 2 × 2 table

    |                 | RAG-SFT's generator | JMLR's generator |
    | base retriever  | RAG-SFT             | composite        |
    | JMLR retriever  | composite           | JMLR             |

evaluated with `jmlr evaluate` on the same questions and paired by question (`experiments.user_eval`) gives the
retriever's share at either generator (down the columns) and the generator's at either retriever (across the rows).

    M=outputs/joint-medquad/models
    python -m experiments.swap_components --retriever_from $M/jmlr-llm_rank-seed0 --generator_from $M/rag-seed0 \
        --output $M/jmlr-retriever+rag-generator-seed0

The composite is an ordinary saved JMLR model (`jmlr_hf.models.save_model`), and `swap_components.json` beside its
weights records where each half came from and which config fields of the two differed (the retriever donor's apply:
they are retrieval and training settings; generators of different architectures are refused).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from jmlr_hf.utils.atomic import write_json

#: The record written beside the composite's weights.
SWAP_RECORD = "swap_components.json"


def config_differences(retriever_config: dict, generator_config: dict) -> dict[str, list]:
    """The top-level config fields whose values differ between the two models, as `{field: [retriever donor's,
    generator donor's]}` (applied to the generator sub-configs too, which must not differ)."""
    keys = sorted(set(retriever_config) | set(generator_config))
    return {
        key: [retriever_config.get(key), generator_config.get(key)]
        for key in keys
        if key not in ("generator", "transformers_version", "_name_or_path")
        and retriever_config.get(key) != generator_config.get(key)
    }


def swap_components(retriever_from: str, generator_from: str, output: str) -> dict:
    """Save to `output` the model of `retriever_from` with the generator weights of `generator_from`; returns the
    record written to `output/swap_components.json`."""
    from transformers import AutoTokenizer

    from jmlr_hf.models import RETRIEVER_TOKENIZER_DIR, JMLRForCausalLM, save_model

    for path in (retriever_from, generator_from):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path}: not a saved JMLR model folder (no config.json)")
    model = JMLRForCausalLM.from_pretrained(retriever_from)
    donor = JMLRForCausalLM.from_pretrained(generator_from)
    ours, theirs = model.config.to_dict(), donor.config.to_dict()
    changed = config_differences(ours["generator"], theirs["generator"])
    if changed:
        raise ValueError(
            f"{retriever_from} and {generator_from} have different generators (config fields {', '.join(changed)}): "
            "only generators of one architecture can be swapped"
        )
    # strict: every generator weight is replaced, and a missing or extra one is an error, not a half-swapped model.
    model.generator.load_state_dict(donor.generator.state_dict(), strict=True)
    tokenizer = AutoTokenizer.from_pretrained(generator_from)
    retriever_tokenizer = AutoTokenizer.from_pretrained(os.path.join(retriever_from, RETRIEVER_TOKENIZER_DIR))
    save_model(model, tokenizer, retriever_tokenizer, output)
    record = {
        "retriever_from": str(retriever_from),
        "generator_from": str(generator_from),
        "config_differences": config_differences(ours, theirs),
    }
    write_json(os.path.join(output, SWAP_RECORD), record)
    return record


@dataclass
class SwapArguments:
    retriever_from: str = field(metadata={"help": "Saved JMLR model whose retriever (and config) the composite keeps"})
    generator_from: str = field(metadata={"help": "Saved JMLR model whose generator weights the composite takes"})
    output: str = field(metadata={"help": "Folder of the composite model"})


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse → swap → save; prints the record."""
    from trl import TrlParser

    (args,) = TrlParser((SwapArguments,)).parse_args_and_config(args=argv)
    record = swap_components(args.retriever_from, args.generator_from, args.output)
    print(json.dumps(record, indent=2))
    print(f"Saved the composite to {args.output}")
    return record


if __name__ == "__main__":
    main()
