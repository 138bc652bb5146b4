"""The joint step and its parts, side by side in one process: scoring passes, JMLR, RAG-SFT and SFT steps.

    python benchmarks/joint_step.py [--repeats 5] [--batch-size 1] [--device cpu|cuda] [--dtype float32|bfloat16]
                                    [--generator smollm2-135m-instruct | llama-1b-random | tiny-random | PATH]
                                    [--num-sampled 4] [--num-candidates 8] [--max-document-length 128]

The paper's S: `--num-sampled 10 --num-candidates 16 --max-document-length 256`. `--generator tiny-random` (a
2-layer random Llama) is the smoke-test setting: it runs in seconds and its figures mean nothing.

The demo's settings by default (SmolLM2-135M-Instruct + all-MiniLM-L6-v2, N = 8 candidates, S = 4 sampled, K = 2
in the prompt, documents cut at 128 tokens, LoRA r = 16 on every linear layer (`--lora-r 0`: full fine-tuning), PubMedQA-L questions with their long
answer as the target). Five variants, interleaved round by round:

1. reference scoring: the S·B single-document sequences in S·B separate forwards with full-vocabulary logits and a
   float32 log-softmax over them (what the authors' code does);
2. this project's scoring pass (`answer_nll`, as the trainer calls it), and its paths: packed (the S·B sequences end
   to end in rows of at most `nll_max_packed_tokens`, block-diagonal attention), all of them in one packed row (what
   the trainer did before the cap: SDPA computes the whole row's attention), and padded (one right-padded batch);
3. a JMLR step: choice, scoring pass, retrieval loss, LM loss with the top K documents, backward;
4. a RAG-SFT step: the same K documents (a frozen retriever's top K), LM loss, backward;
5. an SFT step: no documents.

Printed: each variant's median time and spread, generator tokens/s, the peak memory one call adds, the paired
ratios, the largest NLL difference between 1 and 2, and the FLOP model of JMLR step / RAG-SFT step: the simple
lower bound 1 + S·L1 / (c·L_K) (L1, L_K: real tokens of a single-document and a K-document sequence; c = 3 for full
fine-tuning, 4 with activation checkpointing) and a finer model that counts the retriever, the LM head at the kept
positions, attention, and LoRA's cheaper backward (with LoRA the base weights get no gradient, so the simple bound's
3 is closer to 2). `--json PATH` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoTokenizer, LlamaConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    describe_ratios,
    interleave,
    machine,
    paired_ratios,
    peak_extra_memory,
    synchronize,
)

from jmlr_hf.data import load_named_corpus, load_task  # noqa: E402
from jmlr_hf.models import JMLRForCausalLM, answer_nll, fit_prompt, tokenize_for_lm  # noqa: E402
from jmlr_hf.trainer import JointRetrievalConfig, JointRetrievalTrainer  # noqa: E402
from jmlr_hf.utils.demo_models import resolve_model_path  # noqa: E402

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# A randomly initialised Llama-shaped model of ~1B parameters (Llama-3.2-1B's shape), for GPU throughput figures.
LLAMA_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}
# A 2-layer random Llama for smoke tests of this script (seconds, not figures).
TINY_RANDOM = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}
RANDOM_GENERATORS = {"llama-1b-random": LLAMA_1B, "tiny-random": TINY_RANDOM}


def benchmark_rows(batch_size: int, num_candidates: int, split: str = "train") -> list[dict[str, Any]]:
    """PubMedQA-L questions of `split`, each with its own abstract's sections then the next questions' as
    candidates."""
    questions = load_task("pubmedqa", split).select(range(batch_size + 8))
    corpus = load_named_corpus("pubmedqa")
    text = dict(zip(corpus["id"], corpus["text"], strict=True))
    rows = []
    for b in range(batch_size):
        pool = [doc for q in questions.select(range(b, b + 8)) for doc in q["gold_doc_ids"]]
        row = dict(questions[b])
        row["candidates"] = [text[doc] for doc in pool[:num_candidates]]
        rows.append(row)
    return rows


def build_model(args, generator: str, retriever: str, **settings) -> JMLRForCausalLM:
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    common = {
        "num_candidates": args.num_candidates,
        "num_sampled": args.num_sampled,
        "max_document_length": args.max_document_length,
        "max_length": 1024,
        "retrieval_temperature": 0.05,
        "retrieval_loss": "llm_rank",
    }
    common.update(settings)
    if generator in RANDOM_GENERATORS:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        shape = {"vocab_size": LLAMA_1B["vocab_size"], **RANDOM_GENERATORS[generator]}
        if generator == "tiny-random":  # the SmolLM2 tokenizer's vocabulary
            shape["vocab_size"] = len(AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct")))
        causal_lm = AutoModelForCausalLM.from_config(LlamaConfig(**shape), dtype=dtype)
        model = JMLRForCausalLM.from_components(
            resolve_model_path("smollm2-135m-instruct"), retriever, dtype=dtype, **common
        )
        model.set_generator(causal_lm)
        return model.to(args.device)
    return JMLRForCausalLM.from_components(generator, retriever, dtype=dtype, **common).to(args.device)


def make_trainer(args, model, tokenizer, retriever_tokenizer, output_dir: str, rows) -> JointRetrievalTrainer:
    config = JointRetrievalConfig(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        learning_rate=2e-4,
        retriever_learning_rate=2e-5,
        report_to=[],
        save_strategy="no",
        use_cpu=args.device == "cpu",
        bf16=args.dtype == "bfloat16",
        gradient_checkpointing=args.gradient_checkpointing,
        disable_tqdm=True,
        seed=42,
    )
    lora = None
    if args.lora_r:
        lora = LoraConfig(
            r=args.lora_r,
            lora_alpha=2 * args.lora_r,
            lora_dropout=0.05,
            target_modules=LORA_TARGETS,
            task_type="CAUSAL_LM",
        )
    trainer = JointRetrievalTrainer(
        model,
        config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        peft_config=lora,
    )
    trainer.current_gradient_accumulation_steps = 1  # set by `train()`'s loop; the steps here are called directly
    return trainer


class GeneratorCalls:
    """Counts what the generator is asked to do: sequences, real and padded tokens, positions given logits."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[dict[str, int]] = []
        self.recording = False
        module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        if not self.recording:
            return
        ids, mask, keep = kwargs["input_ids"], kwargs.get("attention_mask"), kwargs.get("logits_to_keep", 0)
        rows, width = ids.shape
        if mask is None and kwargs.get("position_ids") is not None:  # packed: one row, several sequences
            sequences = int((kwargs["position_ids"] == 0).sum())
        else:
            sequences = rows
        if isinstance(keep, torch.Tensor):
            logit_positions = int(keep.sum()) if keep.dtype == torch.bool else rows * keep.numel()
        else:
            logit_positions = rows * (keep or width)
        self.calls.append(
            {
                "rows": sequences,
                "tokens": int(mask.sum()) if mask is not None else ids.numel(),
                "padded": ids.numel(),
                "logit_positions": logit_positions,
                "grad": torch.is_grad_enabled(),
            }
        )

    def record(self, fn: Callable[[], Any]) -> list[dict[str, int]]:
        self.calls, self.recording = [], True
        try:
            fn()
        finally:
            self.recording = False
        return self.calls


def reference_scoring(generator, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The authors' way: one forward per sequence, logits at every position, a float32 log-softmax over them."""
    out = []
    with torch.no_grad():
        for i in range(batch["input_ids"].shape[0]):
            length = int(batch["attention_mask"][i].sum())
            ids = batch["input_ids"][i : i + 1, :length]
            labels = batch["labels"][i : i + 1, :length]
            logits = generator(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
            log_probs = logits[:, :-1].float().log_softmax(-1)
            target = labels[:, 1:]
            token_nll = -log_probs.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            valid = (target != -100).float()
            out.append((token_nll * valid).sum() / valid.sum())
    return torch.stack(out)


def parameter_counts(causal_lm) -> tuple[int, int, int, int]:
    """(parameters outside the embeddings and LM head, LM head parameters, layers, hidden size)."""
    config = causal_lm.config
    head = config.vocab_size * config.hidden_size
    embedding = sum(p.numel() for p in causal_lm.get_input_embeddings().parameters())
    total = sum(p.numel() for p in causal_lm.parameters())
    body = total - embedding - (0 if config.tie_word_embeddings else head)
    return body, head, config.num_hidden_layers, config.hidden_size


def forward_flops(calls: list[dict[str, int]], counts: tuple[int, int, int, int]) -> tuple[float, float]:
    """(no-gradient, with-gradient) forward FLOPs of the recorded generator calls, on real tokens: 2 per weight per
    token, 2·L·d per token per layer of causal attention, 2 per LM-head weight per position given logits."""
    body, head, layers, hidden = counts
    no_grad = with_grad = 0.0
    for call in calls:
        length = call["tokens"] / call["rows"]
        flops = 2 * body * call["tokens"] + 2 * layers * hidden * length * call["tokens"]
        flops += 2 * head * call["logit_positions"]
        if call["grad"]:
            with_grad += flops
        else:
            no_grad += flops
    return no_grad, with_grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-sampled", type=int, default=4)
    parser.add_argument("--num-candidates", type=int, default=8, help="N (at least --num-sampled)")
    parser.add_argument("--max-document-length", type=int, default=128, help="generator tokens per document")
    parser.add_argument("--num-context-documents", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--generator", default="smollm2-135m-instruct")
    parser.add_argument("--retriever", default="all-minilm-l6-v2")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank on every linear layer; 0: full fine-tuning")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--peak-tflops", type=float, help="the device's peak TFLOP/s (dense, in --dtype): prints each step's MFU"
    )
    args = parser.parse_args()
    device = torch.device(args.device)

    retriever = resolve_model_path(args.retriever)
    tokenizer_path = resolve_model_path(
        "smollm2-135m-instruct" if args.generator in RANDOM_GENERATORS else args.generator
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    retriever_tokenizer = AutoTokenizer.from_pretrained(retriever)
    rows = benchmark_rows(args.batch_size, args.num_candidates)
    k = args.num_context_documents
    generator = resolve_model_path(args.generator) if args.generator not in RANDOM_GENERATORS else args.generator

    out_dir = tempfile.mkdtemp(prefix="jmlr-bench-")
    trainers = {
        "JMLR step": make_trainer(
            args,
            build_model(args, generator, retriever, num_context_documents=k, retrieval_loss_weight=1.0),
            tokenizer,
            retriever_tokenizer,
            out_dir,
            rows,
        ),
        "RAG-SFT step": make_trainer(
            args,
            build_model(args, generator, retriever, num_context_documents=k, retrieval_loss_weight=0.0),
            tokenizer,
            retriever_tokenizer,
            out_dir,
            rows,
        ),
        "SFT step": make_trainer(
            args,
            build_model(args, generator, retriever, num_context_documents=0, retrieval_loss_weight=0.0),
            tokenizer,
            retriever_tokenizer,
            out_dir,
            rows,
        ),
    }
    jmlr_trainer = trainers["JMLR step"]
    jmlr = jmlr_trainer.model
    cfg = jmlr.config
    inputs = {name: trainer._prepare_inputs(trainer.data_collator(rows)) for name, trainer in trainers.items()}

    # The scoring passes score the S·B sequences of one document each: the first S candidates of each question.
    nll_batch = tokenize_for_lm(
        tokenizer,
        [
            fit_prompt(tokenizer, cfg, q, [doc], opts, target)
            for q, opts, target, docs in zip(
                inputs["JMLR step"]["questions"],
                inputs["JMLR step"]["options"],
                inputs["JMLR step"]["targets"],
                inputs["JMLR step"]["documents"],
                strict=True,
            )
            for doc in docs[: args.num_sampled]
        ],
        [target for target in inputs["JMLR step"]["targets"] for _ in range(args.num_sampled)],
        cfg.max_length,
    )
    nll_batch = {key: value.to(device) for key, value in nll_batch.items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")

    def scoring(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            jmlr.generator.eval()
            with autocast:
                result = fn()
            synchronize(device)
            return result

        return run

    def step(name: str) -> Callable[[], float]:
        trainer = trainers[name]

        def run() -> float:
            loss = trainer.training_step(trainer.model, inputs[name])
            trainer.model.zero_grad(set_to_none=True)
            synchronize(device)
            return float(loss)

        return run

    variants = {
        "reference scoring": scoring(lambda: reference_scoring(jmlr.generator, nll_batch)),
        "scoring pass": scoring(lambda: jmlr_trainer._answer_nll(jmlr, jmlr, nll_batch, device)),
        **{
            f"scoring pass, {path}": scoring(
                lambda packed=packed, cap=cap: answer_nll(
                    jmlr,
                    nll_batch["input_ids"],
                    nll_batch["attention_mask"],
                    nll_batch["labels"],
                    micro_batch_size=jmlr_trainer.args.nll_micro_batch_size,
                    packed=packed,
                    max_packed_tokens=cap,
                )
            )
            for path, packed, cap in (
                ("packed", True, jmlr_trainer._max_packed_tokens(jmlr)),
                ("one packed row", True, None),
                ("padded", False, None),
            )
        },
        "scoring pass, 1/forward": scoring(
            lambda: answer_nll(
                jmlr,
                nll_batch["input_ids"],
                nll_batch["attention_mask"],
                nll_batch["labels"],
                micro_batch_size=1,
                packed=jmlr_trainer._padding_free(jmlr, device),
            )
        ),
        **{name: step(name) for name in trainers},
    }

    # What each variant asks of the generator (for tokens/s and the FLOP model), then the peak memory of one call.
    counters = {name: GeneratorCalls(trainer.model.generator) for name, trainer in trainers.items()}
    counter_of = {name: counters.get(name, counters["JMLR step"]) for name in variants}
    for fn in variants.values():  # first calls: lazy set-up, and the trainer's one-time padding-free check
        fn()
    recorded = {name: counter_of[name].record(fn) for name, fn in variants.items()}
    peaks = {name: peak_extra_memory(fn, device) for name, fn in variants.items()}
    timings = interleave(variants, args.repeats)

    print(f"machine: {machine()}; generator {args.generator} ({args.dtype}), retriever {args.retriever}")
    print(
        f"settings: batch {args.batch_size}, N = {args.num_candidates}, S = {args.num_sampled}, K = {k}, "
        f"documents <= {args.max_document_length} tokens, "
        f"{f'LoRA r = {args.lora_r}' if args.lora_r else 'full fine-tuning'}, "
        f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, {args.repeats} rounds"
    )
    figures: dict[str, Any] = {"machine": machine(), "args": vars(args), "variants": {}}
    for name, timing in timings.items():
        tokens = sum(call["tokens"] for call in recorded[name])
        padded = sum(call["padded"] for call in recorded[name])
        print(
            f"{name:>18}: {timing.describe()}, {tokens / timing.median:,.0f} generator tokens/s "
            f"({tokens} tokens, {padded - tokens} padding), peak +{peaks[name] / 2**20:,.0f} MiB"
        )
        figures["variants"][name] = {
            "median_s": timing.median,
            "min_s": min(timing.seconds),
            "max_s": max(timing.seconds),
            "tokens": tokens,
            "padding": padded - tokens,
            "peak_extra_mib": peaks[name] / 2**20,
        }
    print(f"{'default NLL pass':>18}: {'packed' if jmlr_trainer._padding_free(jmlr, device) else 'padded'} here")
    figures["default_nll_pass"] = "packed" if jmlr_trainer._padding_free(jmlr, device) else "padded"
    packed_over_padded = paired_ratios(timings["scoring pass, packed"], timings["scoring pass, padded"])
    print(f"{'paired ratio':>18}: scoring pass, packed / scoring pass, padded {describe_ratios(packed_over_padded)}")
    figures["packed_over_padded"] = packed_over_padded
    one_row = paired_ratios(timings["scoring pass, one packed row"], timings["scoring pass, packed"])
    print(
        f"{'paired ratio':>18}: one packed row / packed rows <= {jmlr_trainer._max_packed_tokens(jmlr)} tokens "
        f"{describe_ratios(one_row)}"
    )
    figures["one_row_over_packed"] = one_row
    for name in (
        "scoring pass",
        "scoring pass, packed",
        "scoring pass, one packed row",
        "scoring pass, padded",
        "scoring pass, 1/forward",
    ):
        speedup = paired_ratios(timings["reference scoring"], timings[name])
        memory = peaks[name] / max(peaks["reference scoring"], 1)
        difference = (timings["reference scoring"].result - timings[name].result).abs().max().item()
        print(f"{'paired ratio':>18}: reference scoring / {name} {describe_ratios(speedup)}")
        print(f"{'memory ratio':>18}: {name} / reference scoring peak extra memory {memory:.2f}")
        print(f"{'NLL difference':>18}: largest {difference:.2e}")
        figures[name] = {"speedup": speedup, "memory_ratio": memory, "nll_difference": difference}
    # What answer-only logits can save at most: the LM head's share of the reference's forward FLOPs.
    generator = jmlr_trainer.accelerator.unwrap_model(jmlr).generator
    counts = parameter_counts(generator.get_base_model() if args.lora_r else generator)
    reference_flops = sum(forward_flops(recorded["reference scoring"], counts))
    scoring_flops = sum(forward_flops(recorded["scoring pass, padded"], counts))
    print(
        f"{'FLOP ceiling':>18}: reference / scoring pass (padded) forward FLOPs {reference_flops / scoring_flops:.2f}"
    )
    figures["scoring_flop_ceiling"] = reference_flops / scoring_flops
    step_ratio = paired_ratios(timings["JMLR step"], timings["RAG-SFT step"])
    print(f"{'paired ratio':>18}: JMLR step / RAG-SFT step {describe_ratios(step_ratio)}")
    sft_ratio = paired_ratios(timings["RAG-SFT step"], timings["SFT step"])
    print(f"{'paired ratio':>18}: RAG-SFT step / SFT step {describe_ratios(sft_ratio)}")

    # The FLOP model of JMLR step / RAG-SFT step.
    scoring_calls = [call for call in recorded["JMLR step"] if not call["grad"]]
    lm_calls = [call for call in recorded["RAG-SFT step"] if call["grad"]]
    length_1 = sum(c["tokens"] for c in scoring_calls) / sum(c["rows"] for c in scoring_calls)
    length_k = sum(c["tokens"] for c in lm_calls) / sum(c["rows"] for c in lm_calls)
    c = 4 if args.gradient_checkpointing else 3
    simple_bound = 1 + args.num_sampled * length_1 / (c * length_k)
    fine = {}
    for name in ("JMLR step", "RAG-SFT step"):
        no_grad, with_grad = forward_flops(recorded[name], counts)
        # A backward computes input gradients (~1 forward) and weight gradients (~1 forward); LoRA freezes the base
        # weights, whose gradients it skips (the adapters' are small); checkpointing adds 1 forward.
        backward = (1.0 if args.lora_r else 2.0) + (1.0 if args.gradient_checkpointing else 0.0)
        fine[name] = no_grad + with_grad * (1 + backward)
    retriever_share = _retriever_flops(jmlr_trainer, inputs["JMLR step"], args.batch_size)
    fine_bound = (fine["JMLR step"] + retriever_share["JMLR step"]) / (
        fine["RAG-SFT step"] + retriever_share["RAG-SFT step"]
    )
    measured = statistics.median(step_ratio)
    print(
        f"{'FLOP model':>18}: L1 = {length_1:.0f}, L_K = {length_k:.0f} tokens; "
        f"bound 1 + S*L1/({c}*L_K) = {simple_bound:.3f} -> measured / bound = {measured / simple_bound:.2f}"
    )
    print(
        f"{'':>18}  finer model (retriever, LM head at kept positions, attention, LoRA backward) = {fine_bound:.3f}"
        f" -> measured / model = {measured / fine_bound:.2f}"
    )
    if args.peak_tflops:
        for name in ("JMLR step", "RAG-SFT step"):
            flops = fine[name] + retriever_share[name]
            mfu = flops / timings[name].median / (args.peak_tflops * 1e12)
            print(f"{'MFU':>18}: {name} {flops / 1e12:.2f} TFLOP in {timings[name].median:.3f} s = {mfu:.1%}")
            figures[f"{name} MFU"] = mfu
    figures.update(
        {
            "jmlr_over_rag_sft": step_ratio,
            "rag_sft_over_sft": sft_ratio,
            "L1": length_1,
            "L_K": length_k,
            "simple_bound": simple_bound,
            "fine_bound": fine_bound,
        }
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def _retriever_flops(trainer: JointRetrievalTrainer, inputs: dict[str, Any], batch_size: int) -> dict[str, float]:
    """The retriever's FLOPs in each step: a no-gradient choice pass in both; JMLR adds a pass with gradient
    (forward + backward = 3 forwards, the retriever trains fully)."""
    encoder = trainer.accelerator.unwrap_model(trainer.model).retriever.encoder
    embedding = sum(p.numel() for p in encoder.get_input_embeddings().parameters())
    body = sum(p.numel() for p in encoder.parameters()) - embedding
    if getattr(encoder, "embeddings", None) is not None:  # BERT's position and type embeddings are lookups too
        body -= sum(p.numel() for p in encoder.embeddings.parameters()) - embedding
    tokens = int(inputs["query_attention_mask"].sum()) + int(inputs["doc_attention_mask"].sum())
    one_pass = 2 * body * tokens
    return {"JMLR step": one_pass * (1 + 3), "RAG-SFT step": one_pass}


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
