"""The arithmetic behind docs/SCALING.md: memory per GPU, FLOPs per step, index sizes. Nothing here is measured.

    python docs/scaling.py > /tmp/scaling.md

Every input is a constant below (model shapes from the Llama-2 and BERT-base configs, the recipes' settings, the
stated assumptions); change one and re-run.
"""

from __future__ import annotations

GB = 1e9

MODELS = {
    # name: (parameters, hidden size, layers, intermediate size, vocabulary)
    "Llama-2-7B": (6.74e9, 4096, 32, 11008, 32000),
    "Llama-2-13B": (13.02e9, 5120, 40, 13824, 32000),
    "Llama-2-70B": (68.98e9, 8192, 80, 28672, 32000),
}
RETRIEVER_PARAMS = 110e6 + 768 * 128  # ColBERTv2: BERT-base + the 768 -> 128 projection
LORA_RANK = 128
LORA_MATRICES = ("q", "k", "v", "o", "gate", "up", "down")

# The recipes: N = 20 candidates, S = 10 sampled, K = 5 in the prompt, documents of 180 tokens, queries of 512.
N, S, K = 20, 10, 5
DOC_TOKENS, QUERY_TOKENS = 180, 512
QUESTION_TOKENS, TARGET_TOKENS, TEMPLATE_TOKENS = 300, 200, 10  # a MedQA vignette + options, a rationale
L_K = K * (DOC_TOKENS + TEMPLATE_TOKENS) + QUESTION_TOKENS + TARGET_TOKENS  # the LM prompt with K documents
L_1 = DOC_TOKENS + TEMPLATE_TOKENS + QUESTION_TOKENS + TARGET_TOKENS  # one NLL-pass sequence

A100_BF16 = 312e12  # FLOP/s, dense bf16 peak
H100_BF16 = 989e12
MFU = 0.40  # assumed model FLOPs utilisation


def lora_params(hidden: int, layers: int, intermediate: int) -> float:
    shapes = {m: (hidden, hidden) for m in ("q", "k", "v", "o")} | {
        "gate": (hidden, intermediate),
        "up": (hidden, intermediate),
        "down": (intermediate, hidden),
    }
    return layers * sum(LORA_RANK * (a + b) for m, (a, b) in shapes.items() if m in LORA_MATRICES)


def memory_table() -> str:
    lines = [
        "| model | strategy | GPUs | frozen base | LoRA (weights+grads+Adam) | retriever (weights+grads+Adam) | total |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (params, hidden, layers, intermediate, _) in MODELS.items():
        lora = lora_params(hidden, layers, intermediate)
        for strategy in ("DDP", "FSDP2", "ZeRO-3"):
            for gpus in (1, 4, 8):
                if strategy == "DDP":
                    # bf16 base; LoRA and retriever in fp32: weights 4 + grads 4 + Adam m, v 8 bytes.
                    base, lo, ret = params * 2, lora * 16, RETRIEVER_PARAMS * 16
                elif strategy == "FSDP2":
                    # The generator sharded: its frozen base in the dtype it was loaded in (bf16: accelerate upcasts
                    # only trainable weights), LoRA in fp32 with grads and Adam states, all divided by the GPUs. The
                    # retriever is kept whole on every GPU (jmlr_hf.trainer.fsdp: FSDP2's ignored modules).
                    base, lo, ret = params * 2 / gpus, lora * 16 / gpus, RETRIEVER_PARAMS * 16
                else:
                    # bf16 sharded parameters; trainable ones: bf16 grads 2 + fp32 master 4 + Adam 8, sharded.
                    base = params * 2 / gpus
                    lo, ret = lora * 16 / gpus, RETRIEVER_PARAMS * 16 / gpus
                total = base + lo + ret
                lines.append(
                    f"| {name} | {strategy} | {gpus} | {base / GB:.1f} GB | {lo / GB:.2f} GB | {ret / GB:.2f} GB "
                    f"| {total / GB:.1f} GB |"
                )
    return "\n".join(lines)


def activation_table() -> str:
    lines = [
        "| model | LM step, checkpointed layer inputs | one layer recomputed | logits (fp32) | NLL-pass logits per 5 sequences |",
        "|---|---|---|---|---|",
    ]
    for name, (_, hidden, layers, _, vocab) in MODELS.items():
        checkpoints = L_K * hidden * 2 * layers
        layer = L_K * hidden * 34  # bf16, flash/SDPA attention (no s^2 term): ~34 s h bytes (Korthikanti et al.)
        logits = L_K * vocab * 4 * 2  # fp32 logits and their log-softmax
        nll_logits = 5 * L_1 * vocab * 4 * 2
        lines.append(
            f"| {name} | {checkpoints / GB:.2f} GB | {layer / GB:.2f} GB | {logits / GB:.2f} GB "
            f"| {nll_logits / GB:.2f} GB |"
        )
    return "\n".join(lines)


def flops_table() -> str:
    lines = [
        "| model | RAG-SFT step (LM, K docs) | NLL pass (S docs) | retriever | JMLR step | JMLR / RAG-SFT |",
        "|---|---|---|---|---|---|",
    ]
    for name, (params, *_rest) in MODELS.items():
        # Frozen base + LoRA with gradient checkpointing: forward 2PL, recompute 2PL, backward (activation grads
        # only, no weight grads for frozen weights) 2PL.
        lm = 6 * params * L_K
        nll = 2 * params * S * L_1
        retriever_tokens = N * DOC_TOKENS + QUERY_TOKENS
        retriever = (2 + 6) * RETRIEVER_PARAMS * retriever_tokens  # the choice pass, then forward + backward
        jmlr = lm + nll + retriever
        lines.append(
            f"| {name} | {lm / 1e12:.0f} TFLOP | {nll / 1e12:.0f} TFLOP | {retriever / 1e12:.1f} TFLOP "
            f"| {jmlr / 1e12:.0f} TFLOP | {jmlr / lm:.2f} |"
        )
    return "\n".join(lines)


def budget_paragraph() -> str:
    params = MODELS["Llama-2-13B"][0]
    per_question = 6 * params * L_K + 2 * params * S * L_1
    flop = 148 * 3600 * A100_BF16 * MFU
    return (
        f"At these lengths one JMLR-13B question costs {per_question / 1e12:.0f} TFLOP. 148 GPU-hours at the A100's "
        f"bf16 peak ({A100_BF16 / 1e12:.0f} TFLOP/s) and an assumed {MFU:.0%} MFU are {flop:.2e} FLOP, i.e. "
        f"{flop / per_question / 1e3:.0f}k question-steps (on H100s, {flop * H100_BF16 / A100_BF16 / per_question / 1e3:.0f}k)."
    )


def index_table() -> str:
    snippets = 23.9e6
    encode = 2 * RETRIEVER_PARAMS * DOC_TOKENS * snippets
    hours = encode / (A100_BF16 * MFU) / 3600
    lines = [
        f"Encoding the {snippets / 1e6:.1f}M PubMed snippets once: {encode:.2e} FLOP, {hours:.1f} A100-hours at "
        f"{MFU:.0%} MFU ({hours * 60 / 8:.0f} min on 8 GPUs, each encoding its own shard); every refresh of the index "
        "costs the same again.",
        "",
        "| vectors | bytes per vector | index memory |",
        "|---|---|---|",
    ]
    for label, bytes_per in (
        ("flat, 768-d float32 (no projection)", 768 * 4),
        ("flat, 128-d float32 (ColBERT projection)", 128 * 4),
        ("IVF-PQ, 128-d, 32 sub-quantisers x 8 bits (+ 8-byte ids)", 32 + 8),
        ("IVF-PQ, 128-d, 16 sub-quantisers x 8 bits (+ 8-byte ids)", 16 + 8),
    ):
        lines.append(f"| {label} | {bytes_per} | {snippets * bytes_per / GB:.1f} GB |")
    return "\n".join(lines)


def pubmed_plan() -> str:
    """A PubMed-scale JMLR-70B run on one node of 8 GPUs (80 GB each), in numbers from the constants above."""
    snippets, gpus = 23.9e6, 8
    params, hidden, layers, intermediate, _ = MODELS["Llama-2-70B"]
    lora = lora_params(hidden, layers, intermediate)
    per_gpu = params * 2 / gpus + lora * 16 / gpus + RETRIEVER_PARAMS * 16
    encode_hours = 2 * RETRIEVER_PARAMS * DOC_TOKENS * snippets / (A100_BF16 * MFU) / 3600
    text_gb = (
        snippets * 1.2e3 / GB
    )  # ~1.2 kB of Arrow per snippet (title + ~150 words; 520 MiB per 1M 60-word passages)
    ivfpq_gb = snippets * (32 + 8) / GB
    return "\n".join(
        [
            "| item | figure | how |",
            "|---|---|---|",
            f"| processes | {gpus} (one per GPU), `accelerate launch --config_file recipes/accelerate_configs/fsdp2.yaml` | FSDP2 |",
            f"| weights + LoRA + retriever states per GPU | {per_gpu / GB:.1f} GB | the memory table's FSDP2 row |",
            f"| host RAM per process while loading | {params * 2 / GB:.0f} GB | every process loads the whole bf16 model before sharding |",
            f"| host RAM on the main process while gathering the trained model | {params * 2 * 2 / GB:.0f} GB | the "
            "gathered state dict plus the rebuilt model (`gather_trained_model`) |",
            f"| encoding the corpus (initial index, each refresh) | {encode_hours * 60 / gpus:.0f} min on {gpus} GPUs ({encode_hours:.1f} A100-hours) | sharded build: each process its block |",
            f"| index (IVF-PQ, 128-d, 32 x 8 bits) | {ivfpq_gb:.1f} GB, on the main process | flat 128-d would be {snippets * 512 / GB:.1f} GB |",
            f"| document store | ~{text_gb:.0f} GB on disk, memory-mapped | pages read on demand, shared by the processes of a node |",
            f"| vectors sent to the main process per refresh | {snippets * 128 * 4 * (gpus - 1) / gpus / GB:.1f} GB | 128-d float32, in chunks of 8,192 rows |",
        ]
    )


if __name__ == "__main__":
    print(f"Lengths: L_K = {L_K} tokens (LM prompt with K = {K} documents), L_1 = {L_1} (one NLL-pass sequence).\n")
    print("### Memory per GPU: weights, gradients, optimizer states\n")
    print(memory_table())
    print("\n### Activations per sequence (batch 1, gradient checkpointing)\n")
    print(activation_table())
    print("\n### FLOPs per question\n")
    print(flops_table())
    print("\n" + budget_paragraph())
    print("\n### Indexing PubMed\n")
    print(index_table())
    print("\n### A worked plan: JMLR-70B on PubMed, one node of 8 GPUs\n")
    print(pubmed_plan())
