"""The no-gradient NLL pass: full-vocabulary logits at every position vs only from the first answer position on.

    python benchmarks/nll_pass.py [--repeats 7] [--sequences 8]

One process, the two variants interleaved (A B A B ...) on the same batch: SmolLM2-135M-Instruct (the demo's
generator, 49k vocabulary) scoring `--sequences` single-document PubMedQA-style prompts (a 128-token document, the
question, then a long answer as the target). Prints each variant's median time and spread, the median of the paired
ratios, the size of the logits each computes, and the largest difference in the NLLs (they must agree).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from jmlr_hf.models import answer_nll, tokenize_for_lm
from jmlr_hf.utils.demo_models import smollm2_path

DOCUMENT = (
    "Programmed cell death (PCD) is the regulated death of cells within an organism. The lace plant produces "
    "perforations in its leaves through PCD. Mitochondrial dynamics were studied in leaves at different stages. "
) * 4
QUESTION = "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?"
TARGET = (
    "yes. Results depicted mitochondrial dynamics in vivo as PCD progresses within the lace plant, and highlight the "
    "correlation of this organelle with other organelles during developmental PCD."
)


@torch.no_grad()
def full_logits_nll(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """The reference: logits (and their log-softmax) at every position, as the pass computed them before."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1].float()
    target = labels[:, 1:]
    token_nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1).clamp(min=0), reduction="none"
    )
    valid = (target != -100).float()
    return (token_nll.view(target.shape) * valid).sum(-1) / valid.sum(-1).clamp(min=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sequences", type=int, default=8)
    args = parser.parse_args()

    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = [f"Document [1]: {DOCUMENT}\nQuestion: {QUESTION}\nAnswer:"] * args.sequences
    batch = tokenize_for_lm(tokenizer, prompts, [TARGET] * args.sequences, max_length=1024)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    width = ids.shape[1]
    first = int((labels != -100).any(0).nonzero()[0]) - 1
    vocab = model.config.vocab_size

    variants = {
        "full logits": lambda: full_logits_nll(model, ids, mask, labels),
        "answer positions only": lambda: answer_nll(model, ids, mask, labels),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    results = {name: fn() for name, fn in variants.items()}  # warm-up, and the values to compare
    for _ in range(args.repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    print(
        f"{args.sequences} sequences of {width} tokens, answer from position {first + 1} ({width - first - 1} tokens)"
    )
    for name, values in times.items():
        print(f"{name:>22}: median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})")
    ratios = [a / b for a, b in zip(times["full logits"], times["answer positions only"], strict=True)]
    print(
        f"{'paired ratio':>22}: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    full_bytes = args.sequences * (width - 1) * vocab * 4
    kept_bytes = args.sequences * (width - first) * vocab * 4
    print(f"{'float32 logits':>22}: {full_bytes / 1e6:.0f} MB -> {kept_bytes / 1e6:.0f} MB per pass")
    difference = (results["full logits"] - results["answer positions only"]).abs().max().item()
    print(f"{'largest NLL difference':>22}: {difference:.2e}")


if __name__ == "__main__":
    main()
