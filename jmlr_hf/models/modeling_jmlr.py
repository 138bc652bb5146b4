# Copyright 2026 The jmlr_hf developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""JMLR: a causal LM and a ColBERT-style retriever, trained together (Wang et al. 2024, arXiv 2402.17887).

This file imports only `torch` and `transformers` (and its siblings `configuration_jmlr` and `retrieval_jmlr`), so
that `save_pretrained` can ship it as remote code: `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`
loads a trained JMLR model without `jmlr_hf` installed, and `model.answer(question)` retrieves from the model's
published index and answers with the documents (faiss and pyarrow needed for that, still not `jmlr_hf`).

Reading order: prompt formatting → `JMLRRetriever` (encoding and scoring) → `JMLRForCausalLM` (the generator's causal
LM plus the retriever, the answer NLLs the trainer needs, construction from two existing checkpoints, and
retrieval-augmented answers).
"""

import copy
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_jmlr import OPTION_LETTERS, JMLRConfig, check_count, check_options, check_question
from .retrieval_jmlr import (
    INDEX_REPO_TYPE,
    RELATIVE_PATH_PREFIXES,
    JMLRIndex,
    check_path_or_hub_id,
    document_text,
    download_index,
    is_local_path,
    resolve_index_location,
)

# `from_pretrained` arguments that say where and how to fetch files (passed on when loading a base + adapter).
_HUB_KWARGS = ("revision", "token", "cache_dir", "force_download", "local_files_only", "proxies")
# A saved JMLR model keeps the generator's tokenizer at its root and the retriever's in this subfolder.
RETRIEVER_TOKENIZER_DIR = "retriever_tokenizer"


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """`module` in eval mode (dropout off) inside the block, then every submodule back in the mode it was in.

    The one save-and-restore of train mode (the trainer, its callbacks, candidate re-retrieval and
    `JMLRRetriever.encode_dense_texts` use it). Each submodule's own mode is restored, not the top module's mode
    pushed down: `module.train(was_training)` would also switch on a submodule that was in eval mode on purpose.
    """
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training


# --------------------------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------------------------


def format_options(config: JMLRConfig, options: Sequence[str] | None) -> str:
    """The options of a multiple-choice question, one per line (`""` when there are none)."""
    if not options:
        return ""
    return "".join(
        config.option_template.format(letter=OPTION_LETTERS[i], text=text) for i, text in enumerate(options)
    )


def build_prompt(
    config: JMLRConfig, question: str, documents: Sequence[str] = (), options: Sequence[str] | None = None
) -> str:
    """The generator prompt: the documents, then the question and its options.

    `documents` come ranked, best first; `config.document_order` says where the best one goes: first
    (`"best_first"`) or last, next to the question (`"best_last"`, as the authors' code orders them).
    """
    ordered = list(documents) if config.document_order == "best_first" else list(documents)[::-1]
    formatted_documents = "".join(
        config.document_template.format(index=i + 1, document=doc) for i, doc in enumerate(ordered)
    )
    return config.prompt_template.format(
        documents=formatted_documents, question=question, options=format_options(config, options)
    )


def build_target(
    config: JMLRConfig, answer: str, rationale: str | None = None, options: Sequence[str] | None = None
) -> str:
    """The training target. For multiple choice, `answer` is a letter and the target names the option's text too."""
    if options:
        # `str.find` matches substrings: "" would be found at 0 (option A) and "AB" too; only one letter is valid.
        index = OPTION_LETTERS.find(answer) if len(answer) == 1 else -1
        if index < 0 or index >= len(options):
            raise ValueError(f"answer {answer!r} is not one of the option letters {OPTION_LETTERS[: len(options)]}")
        answer = f"{answer}: {options[index]}"
    if not rationale:
        return answer
    return config.target_template.format(answer=answer, rationale=rationale.strip())


def tokenize_for_lm(
    tokenizer,
    prompts: Sequence[str],
    targets: Sequence[str],
    max_length: int,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenise `prompt + " " + target + eos` with the loss on the target tokens only (and the EOS).

    Prompt and target are tokenised separately, so the label boundary is exact. Sequences longer than `max_length`
    lose prompt tokens from the left ([`left_truncate`], which keeps BOS): the answer is what is scored, so it is
    always kept whole. Right padding keeps every real token at the position it would have unpadded, so a padded batch
    scores exactly like single sequences.
    """
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    rows = []
    for prompt, target in zip(prompts, targets, strict=True):
        target_ids = target_token_ids(tokenizer, target)
        if len(target_ids) >= max_length:
            raise ValueError(f"The target alone has {len(target_ids)} tokens, more than max_length={max_length}")
        prompt_ids = left_truncate(
            tokenizer, tokenizer(prompt, add_special_tokens=True)["input_ids"], max_length - len(target_ids)
        )
        rows.append((prompt_ids + target_ids, len(prompt_ids)))
    length = max(len(ids) for ids, _ in rows)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for i, (ids, prompt_len) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def left_truncate(tokenizer, prompt_ids: list[int], room: int) -> list[int]:
    """`prompt_ids` cut from the left to at most `room` tokens, keeping a leading BOS token.

    The one left cut of a prompt: training (`tokenize_for_lm`) and evaluation (`jmlr_hf.evaluation`'s choice scoring
    and decoding) use it, so that a prompt too long for `max_length` is scored as it was trained. The BOS stays
    because a causal LM has never seen a sequence start without it; the tokens right after it are the ones dropped.
    """
    if room <= 0:
        return []
    cut = max(0, len(prompt_ids) - room)
    if not cut:
        return list(prompt_ids)
    bos_id = getattr(tokenizer, "bos_token_id", None)
    bos = prompt_ids[:1] if bos_id is not None and prompt_ids[:1] == [bos_id] else []
    return bos + list(prompt_ids[len(bos) + cut :])


def target_token_ids(tokenizer, target: str) -> list[int]:
    """The token ids of a target as `tokenize_for_lm` appends it: `" " + target`, then EOS. What a target costs
    of `max_length` (the trainer's collator checks a row's target with it)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return tokenizer(" " + target, add_special_tokens=False)["input_ids"] + eos


def fit_prompt(
    tokenizer,
    config: JMLRConfig,
    question: str,
    documents: Sequence[str],
    options: Sequence[str] | None,
    target: str,
) -> str:
    """`build_prompt` for documents ranked best first, shortened so that prompt and target fit `config.max_length`.

    What does not fit is taken from the lowest-ranked document (cut at the end, then dropped), then the next one up:
    the best document is the last to lose a token. (`tokenize_for_lm` would otherwise cut the prompt from the left,
    where the documents are, and the best one first when `document_order="best_first"`.) A question that does not fit
    even without documents is left to `tokenize_for_lm`'s left cut.
    """
    documents = list(documents)
    budget = config.max_length - len(target_token_ids(tokenizer, target))
    # Each round cuts or drops a document, so it ends; the bound only guards against a tokenizer whose decode and
    # encode do not round-trip.
    for _ in range(4 * len(documents) + 8):
        prompt = build_prompt(config, question, documents, options)
        overflow = len(tokenizer(prompt, add_special_tokens=True)["input_ids"]) - budget
        if overflow <= 0 or not documents:
            return prompt
        ids = tokenizer(documents[-1], add_special_tokens=False)["input_ids"]
        if len(ids) > overflow:
            documents[-1] = tokenizer.decode(ids[: len(ids) - overflow], skip_special_tokens=True)
        else:
            documents.pop()
    return build_prompt(config, question, documents[:-1], options)


def truncate_to_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens (unchanged when it is short enough)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """`[n, L]` boolean mask of the positions whose logits predict a labelled (answer) token: position t predicts
    token t + 1. Passed as `logits_to_keep`, it makes the LM head run at these positions only."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def answer_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(keep, targets)` of right-padded `labels` `[n, L]`: the [`answer_positions`] mask and, in the same order as
    the kept logits, the answer token each kept position predicts `[n_kept]`.

    The one definition of "which logits score which answer token", shared by the NLL pass (`answer_nll`, packed or
    padded) and the trainer's LM loss (`lm_forward`), so that the two cannot drift apart.
    """
    keep = answer_positions(labels)
    return keep, labels[:, 1:][keep[:, :-1]]


def kept_logits(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`[n_kept, V]` logits of a forward given a boolean `logits_to_keep=keep` `[n, L]`.

    transformers' causal LMs flatten the kept positions themselves from 5.21 on (`slice_logits_to_keep` returns
    `[n_kept, V]`; before 5.21 Llama raises IndexError on a boolean mask, hence the `transformers>=5.21` floor). A
    custom model whose forward accepts `logits_to_keep` but ignores it returns every position's logits, `[n, L, V]`,
    which are indexed here, so the result is the same either way.
    """
    return logits if logits.dim() == 2 else logits[keep]


def chunked_token_nll(logits: torch.Tensor, targets: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
    """Per-token NLL `[n_kept]` of `targets` under `logits` `[n_kept, V]`, in float32, `chunk_size` rows at a time:
    the float32 copy of bf16 logits (and its log-softmax) never exists for more than one chunk."""
    return torch.cat(
        [
            F.cross_entropy(logits[i : i + chunk_size].float(), targets[i : i + chunk_size], reduction="none")
            for i in range(0, logits.shape[0], chunk_size)
        ]
    )


def pack_sequences(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Right-padded sequences `[n, L]` laid end to end in one row `[1, T]` (T = their real tokens), no padding.

    `position_ids` restart at 0 for each sequence and no attention mask is given: transformers then masks attention
    block-diagonally, so each sequence sees only itself (the packed-sequence format of its training collators).
    `sequence` `[T]` says which sequence each token belongs to; `keep` `[1, T]` marks the positions that predict an
    answer token of their own sequence.
    """
    lengths = attention_mask.sum(-1).tolist()
    rows = range(len(lengths))
    ids = torch.cat([input_ids[i, : lengths[i]] for i in rows])
    positions = torch.cat([torch.arange(lengths[i], device=input_ids.device) for i in rows])
    sequence = torch.cat([torch.full((lengths[i],), i, device=input_ids.device) for i in rows])
    per_row = [answer_targets(labels[i : i + 1, : lengths[i]]) for i in rows]
    keep = torch.cat([row_keep[0] for row_keep, _ in per_row])
    targets = torch.cat([row_targets for _, row_targets in per_row])
    return {
        "input_ids": ids[None],
        "position_ids": positions[None],
        "keep": keep[None],
        "sequence": sequence,
        "targets": targets,
    }


def packed_groups(lengths: Sequence[int], max_tokens: int | None) -> list[slice]:
    """Consecutive runs of sequences whose lengths add up to at most `max_tokens` each (a longer sequence alone): the
    rows of a packed pass. `None`: one run of all of them.

    Why a cap: transformers masks a packed row block-diagonally, but an attention kernel without variable-length
    support (SDPA, eager) still computes the whole row's T x T scores under that mask, so its attention cost grows
    with the row's length T per token. Rows of about a few sequences keep attention a small share of the forward
    while still sparing the padding.
    """
    if max_tokens is None:
        return [slice(0, len(lengths))]
    groups, start, total = [], 0, 0
    for i, length in enumerate(lengths):
        if i > start and total + length > max_tokens:
            groups.append(slice(start, i))
            start, total = i, 0
        total += length
    groups.append(slice(start, len(lengths)))
    return groups


@torch.no_grad()
def answer_nll(
    causal_lm: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    micro_batch_size: int | None = None,
    *,
    packed: bool = False,
    max_packed_tokens: int | None = None,
) -> torch.Tensor:
    """Mean NLL per sequence `[n]` over its labelled (answer) tokens under `causal_lm`, without gradient.

    The n right-padded sequences go through the model in forwards of `micro_batch_size` sequences (all at once by
    default), not one forward each. The mean (not the sum) over tokens keeps `lm_temperature` comparable across
    answers of different lengths; for ranking the documents of one question the two are equivalent.

    Only the positions that predict an answer token get logits (`logits_to_keep` as a boolean mask), not the prompt:
    the full-vocabulary logits of the documents and the question are the largest tensors of the pass and none of
    them is needed; the cross-entropy then runs in float32 chunks. With `packed=True` each micro-batch's sequences
    are laid end to end in one row without padding (`pack_sequences`): no compute is spent on padding, which is
    what batching costs on a CPU. `max_packed_tokens` caps a packed row (see `packed_groups`): the micro-batch's
    sequences then go through in several rows of at most that many tokens. Packing needs a model whose attention
    follows packed `position_ids` (transformers' Llama-, Mistral-, Qwen-style models do); `JointRetrievalTrainer`
    checks that on its first pass.
    """
    step = micro_batch_size or input_ids.shape[0]
    lengths = attention_mask.sum(-1).tolist()
    batches = [slice(start, start + step) for start in range(0, input_ids.shape[0], step)]
    if packed:
        batches = [
            slice(sl.start + group.start, sl.start + group.stop)
            for sl in batches
            for group in packed_groups(lengths[sl], max_packed_tokens)
        ]
    out = []
    for sl in batches:
        # Trim the shared right padding of this micro-batch: fewer positions, same result.
        width = int(max(lengths[sl]))
        ids, mask, lab = input_ids[sl, :width], attention_mask[sl, :width], labels[sl, :width]
        if packed:
            pack = pack_sequences(ids, mask, lab)
            keep, sequence, targets = pack["keep"], pack["sequence"][pack["keep"][0]], pack["targets"]
            inputs = {"input_ids": pack["input_ids"], "position_ids": pack["position_ids"], "attention_mask": None}
        else:
            keep, targets = answer_targets(lab)
            sequence = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(keep)[keep]
            inputs = {"input_ids": ids, "attention_mask": mask}
        logits = kept_logits(causal_lm(**inputs, use_cache=False, logits_to_keep=keep).logits, keep)
        token_nll = chunked_token_nll(logits, targets)
        rows = ids.shape[0]
        total = torch.zeros(rows, dtype=token_nll.dtype, device=token_nll.device).index_add_(0, sequence, token_nll)
        count = torch.zeros_like(total).index_add_(0, sequence, torch.ones_like(token_nll))
        out.append(total / count.clamp(min=1))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------------------------
# Retriever inputs
# --------------------------------------------------------------------------------------------------------------------

# ColBERT's marker tokens (Khattab & Zaharia 2020): BERT's first two unused vocabulary entries.
COLBERT_QUERY_MARKER = "[unused0]"
COLBERT_DOCUMENT_MARKER = "[unused1]"


def colbert_token_ids(tokenizer) -> dict:
    """The `colbert_token_ids` of a ColBERT checkpoint's (BERT) tokenizer: its markers, `[MASK]`, `[PAD]`, and the
    punctuation tokens that MaxSim skips in documents."""
    import string

    skiplist = {tokenizer.convert_tokens_to_ids(symbol) for symbol in string.punctuation}
    skiplist |= {
        ids[0] for ids in (tokenizer(s, add_special_tokens=False)["input_ids"] for s in string.punctuation) if ids
    }
    skiplist.discard(tokenizer.unk_token_id)
    return {
        "query_marker": tokenizer.convert_tokens_to_ids(COLBERT_QUERY_MARKER),
        "document_marker": tokenizer.convert_tokens_to_ids(COLBERT_DOCUMENT_MARKER),
        "mask": tokenizer.mask_token_id,
        "pad": tokenizer.pad_token_id,
        "skiplist": sorted(skiplist),
    }


def _retriever_batch(
    tokenizer, texts: Sequence[str], *, max_length: int, is_query: bool, colbert_ids: dict | None
) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` `[n, L]` of raw texts for the retriever (see `tokenize_for_retriever`)."""
    if colbert_ids is None:
        return dict(tokenizer(list(texts), max_length=max_length, truncation=True, padding=True, return_tensors="pt"))
    # One position goes to the marker; queries are padded to their full length, then the padding becomes [MASK].
    batch = tokenizer(
        list(texts),
        max_length=max_length - 1,
        truncation=True,
        padding="max_length" if is_query else True,
        return_tensors="pt",
    )
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    marker = torch.full_like(input_ids[:, :1], colbert_ids["query_marker" if is_query else "document_marker"])
    input_ids = torch.cat([input_ids[:, :1], marker, input_ids[:, 1:]], dim=1)
    attention_mask = torch.cat([attention_mask[:, :1], torch.ones_like(marker), attention_mask[:, 1:]], dim=1)
    if is_query:
        input_ids = input_ids.masked_fill(attention_mask == 0, colbert_ids["mask"])
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize_for_retriever(
    config: JMLRConfig, tokenizer, texts: Sequence[str], *, is_query: bool, max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """The retriever's inputs for raw questions (`is_query=True`) or documents: `input_ids`, `attention_mask`.

    Cut to `max_length` (default: the config's `max_query_length` / `max_document_length`) and padded to the longest.
    With `config.colbert_conventions`, ColBERT's: the marker after `[CLS]`, and queries padded to exactly
    `max_length` with `[MASK]` tokens that the attention mask hides from the encoder (`JMLRRetriever` still scores
    them: query augmentation).
    """
    if max_length is None:
        max_length = config.max_query_length if is_query else config.max_document_length
    colbert_ids = config.colbert_token_ids if config.colbert_conventions else None
    return _retriever_batch(tokenizer, texts, max_length=max_length, is_query=is_query, colbert_ids=colbert_ids)


# --------------------------------------------------------------------------------------------------------------------
# Retriever
# --------------------------------------------------------------------------------------------------------------------


class JMLRRetriever(nn.Module):
    """A ColBERT-style retriever: an encoder `AutoModel` plus an optional linear projection (ColBERT's `linear`).

    Token embeddings are L2-normalised, so both scores lie in [-1, 1]:

    * `maxsim` (late interaction): for each query token, the best cosine with any document token, averaged over the
      query's tokens (ColBERT sums; the mean keeps `retrieval_temperature` independent of the query length);
    * `dense`: the cosine of the mean-pooled query and document embeddings.
    """

    def __init__(self, config: JMLRConfig, encoder: PreTrainedModel | None = None):
        super().__init__()
        self.scoring = config.scoring
        # ColBERT's conventions: which positions are scored (see `scoring_mask`) and how texts are tokenised.
        self.colbert_ids = dict(config.colbert_token_ids) if config.colbert_conventions else None
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.retriever)
        # Scores come from token embeddings: a pooler head (BERT's) would be a parameter that never trains, and an
        # unused parameter breaks DDP's gradient reduction.
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None
        hidden_size = self.encoder.config.hidden_size
        self.linear = nn.Linear(hidden_size, config.projection_dim, bias=False) if config.projection_dim else None
        # Query-side-only training: documents go through a frozen copy of the encoder and projection (see
        # `sync_document_tower`), so an index built with them stays valid while the query side trains.
        self.document_encoder = self.document_linear = None
        if not config.train_document_encoder:
            self.document_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            if self.linear is not None:
                self.document_linear = copy.deepcopy(self.linear).requires_grad_(False)

    @torch.no_grad()
    def sync_document_tower(self) -> None:
        """Copy the (query) encoder and projection into the frozen document tower, when there is one."""
        if self.document_encoder is None:
            return
        self.document_encoder.load_state_dict(self.encoder.state_dict())
        if self.linear is not None:
            self.document_linear.load_state_dict(self.linear.state_dict())

    def _tower(self, is_query: bool) -> tuple[nn.Module, nn.Module | None]:
        if is_query or self.document_encoder is None:
            return self.encoder, self.linear
        return self.document_encoder, self.document_linear

    def scoring_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, is_query: bool) -> torch.Tensor:
        """Which token positions take part in the scores: the attention mask, or with ColBERT's conventions every
        non-pad query position (the `[MASK]` augmentation included) and the document tokens that are not
        punctuation."""
        if self.colbert_ids is None:
            return attention_mask
        if is_query:
            return (input_ids != self.colbert_ids["pad"]).to(attention_mask.dtype)
        skip = torch.tensor(self.colbert_ids["skiplist"], dtype=input_ids.dtype, device=input_ids.device)
        return (attention_mask.bool() & ~torch.isin(input_ids, skip)).to(attention_mask.dtype)

    def encode_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, is_query: bool = False
    ) -> torch.Tensor:
        """L2-normalised float32 token embeddings `[n, L, d]`, zero at the positions that are not scored.

        The encoder runs in whatever precision the model and autocast give it (bf16 on GPUs); the projection and the
        normalisation run in float32, outside autocast: the scores are compared at a temperature of ~0.05, and
        bf16's 8-bit mantissa would quantise them (20 candidate scores collapsed to 13 distinct values).
        """
        encoder, linear = self._tower(is_query)
        if is_query:  # ColBERT's queries score their [MASK] padding: it must go through the encoder as it is
            hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            hidden = encode_by_length(encoder, input_ids, attention_mask)
        with _full_precision(hidden.device):
            hidden = hidden.float()
            if linear is not None:
                hidden = F.linear(hidden, linear.weight.float())
            mask = self.scoring_mask(input_ids, attention_mask, is_query)
            return F.normalize(hidden, dim=-1) * mask.unsqueeze(-1).float()

    def encode_dense(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, is_query: bool = False
    ) -> torch.Tensor:
        """L2-normalised mean-pooled embeddings `[n, d]` (the single vector the document index stores)."""
        tokens = self.encode_tokens(input_ids, attention_mask, is_query)
        counts = self.scoring_mask(input_ids, attention_mask, is_query).sum(1, keepdim=True)
        pooled = tokens.sum(1) / counts.clamp(min=1).to(tokens.dtype)
        return F.normalize(pooled, dim=-1)

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        doc_input_ids: torch.Tensor,
        doc_attention_mask: torch.Tensor,
        all_pairs: bool = False,
    ) -> torch.Tensor:
        """Scores `[B, N]` of the N documents of each of the B questions.

        Documents come as `[B, N, L]` or flattened `[B * N, L]`; all of a batch's candidates are encoded in one pass.
        With `all_pairs=True`, every question is scored against every candidate of the batch: `[B, B * N]`, where
        question b's own candidates are columns `b * N` to `(b + 1) * N - 1` (the others are in-batch negatives).
        """
        batch_size = query_input_ids.shape[0]
        doc_input_ids = doc_input_ids.reshape(-1, doc_input_ids.shape[-1])
        doc_attention_mask = doc_attention_mask.reshape(-1, doc_attention_mask.shape[-1])
        num_docs = doc_input_ids.shape[0] // batch_size
        # Group the documents per question [B, N, ...], or give every question all of them [B, B * N, ...].
        groups, per_group = (1, batch_size * num_docs) if all_pairs else (batch_size, num_docs)
        if self.scoring == "dense":
            query = self.encode_dense(query_input_ids, query_attention_mask, is_query=True)  # [B, d]
            docs = self.encode_dense(doc_input_ids, doc_attention_mask).view(groups, per_group, -1)
            with _full_precision(query.device):
                return torch.einsum("bd,bnd->bn", query, docs.expand(batch_size, -1, -1))
        query = self.encode_tokens(query_input_ids, query_attention_mask, is_query=True)  # [B, Lq, d]
        docs = self.encode_tokens(doc_input_ids, doc_attention_mask)
        docs = docs.view(groups, per_group, docs.shape[-2], docs.shape[-1])  # [B or 1, N or B * N, Ld, d]
        query_mask = self.scoring_mask(query_input_ids, query_attention_mask, is_query=True)
        doc_mask = self.scoring_mask(doc_input_ids, doc_attention_mask, is_query=False).view(groups, per_group, -1)
        with _full_precision(query.device):
            return maxsim(query, query_mask, docs.expand(batch_size, -1, -1, -1), doc_mask.expand(batch_size, -1, -1))

    @torch.no_grad()
    def encode_dense_texts(
        self, texts: Sequence[str], tokenizer, *, max_length: int, batch_size: int = 64, is_query: bool = False
    ) -> torch.Tensor:
        """Dense embeddings `[n, d]` of raw texts, in batches, without gradient (for building and searching indices).

        Questions (`is_query=True`) and documents are tokenised as in training (`tokenize_for_retriever`, ColBERT's
        markers included). Dropout is off while encoding (an index built right after training would otherwise hold
        noisy vectors), and the module's mode is restored afterwards.
        """
        device = next(self.parameters()).device
        out = []
        with eval_mode(self):
            for start in range(0, len(texts), batch_size):
                batch = _retriever_batch(
                    tokenizer,
                    texts[start : start + batch_size],
                    max_length=max_length,
                    is_query=is_query,
                    colbert_ids=self.colbert_ids,
                )
                input_ids, attention_mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                out.append(self.encode_dense(input_ids, attention_mask, is_query).float().cpu())
        return torch.cat(out) if out else torch.empty(0, 0)

    def weights_fingerprint(self) -> str:
        """A SHA-256 of the weights that encode documents: an index built by other weights is stale. That is the
        whole retriever, or only its frozen document tower when it trains on the query side only — hashed under the
        names the one-tower retriever gives those weights (`encoder.*`, `linear.*`), so that the index of a base
        retriever stays valid for a query-side model started from it (the same document embeddings)."""
        digest = hashlib.sha256()
        state = self.state_dict()
        if self.document_encoder is not None:
            state = {
                name.removeprefix("document_"): tensor
                for name, tensor in state.items()
                if name.startswith("document_")
            }
        for name, tensor in sorted(state.items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()


def length_groups(lengths: Sequence[int], max_padding: float = 0.25, min_rows: int = 8) -> list[list[int]]:
    """Row indices grouped for encoding, longest first: a new group starts when the next row is shorter than
    `1 - max_padding` of its group's longest (groups of at least `min_rows` rows, so a GPU still gets wide
    batches). Within a group, padding is at most about `max_padding` of the positions."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) < min_rows or lengths[i] >= (1 - max_padding) * lengths[groups[-1][0]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def encode_by_length(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`encoder(...).last_hidden_state` `[n, L, h]` of right-padded rows, computed in groups of similar length.

    A batch of documents pads every row to its longest (128 tokens for passages of 4 to 128): the encoder spends
    on padding what it would on text. Grouping the rows by length (`length_groups`) and trimming each group's
    padding gives the same hidden states at the real positions (zeros at the padding), with gradient, in less
    time. One group, one forward: as before.
    """
    lengths = attention_mask.sum(-1).tolist()
    groups = length_groups(lengths)
    if len(groups) == 1:
        return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    width, parts, rows = input_ids.shape[1], [], []
    for group in groups:
        index = torch.tensor(group, device=input_ids.device)
        trim = int(max(lengths[i] for i in group))
        hidden = encoder(
            input_ids=input_ids[index, :trim], attention_mask=attention_mask[index, :trim]
        ).last_hidden_state
        parts.append(F.pad(hidden, (0, 0, 0, width - trim)))
        rows.append(index)
    return torch.cat(parts)[torch.cat(rows).argsort()]


def _full_precision(device: torch.device):
    """A context in which autocast is off on `device`: float32 inputs stay float32."""
    return torch.autocast(device_type=device.type, enabled=False)


def maxsim(query: torch.Tensor, query_mask: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """ColBERT late interaction, averaged over query tokens.

    `query` `[B, Lq, d]`, `docs` `[B, N, Ld, d]` (both normalised), masks `[B, Lq]` and `[B, N, Ld]` → `[B, N]`.
    """
    sim = torch.einsum("bqd,bnkd->bnqk", query, docs)
    sim = sim.masked_fill(~doc_mask.bool()[:, :, None, :], torch.finfo(sim.dtype).min)
    best = sim.max(-1).values  # [B, N, Lq]
    qmask = query_mask.to(best.dtype)[:, None, :]
    return (best * qmask).sum(-1) / qmask.sum(-1).clamp(min=1)


# --------------------------------------------------------------------------------------------------------------------
# The JMLR model
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class JMLRCausalLMOutput(CausalLMOutputWithPast):
    """The generator's causal LM output, plus `retrieval_scores` `[B, N]` when documents were passed to score."""

    retrieval_scores: torch.Tensor | None = None


@dataclass
class JMLRAnswer:
    """What `JMLRForCausalLM.answer` returns: the generated `answer`, the `documents` it was given (best first,
    as `JMLRForCausalLM.retrieve` returns them) and the `prompt` it answered."""

    answer: str
    documents: list[dict]
    prompt: str


class JMLRPreTrainedModel(PreTrainedModel):
    config_class = JMLRConfig
    config: JMLRConfig
    base_model_prefix = "jmlr"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    # The retriever loads in float32 whatever dtype the generator loads in. A model trained in bf16 is saved with a
    # bf16 generator, a float32 retriever (see `prepare_retriever_for_training`) and `dtype: bfloat16` in its config;
    # transformers 5 loads with `dtype="auto"` by default, which would cast the retriever to bf16: its scores would
    # lose precision and its `weights_fingerprint` would no longer match the index built with it. (The non-strict
    # `_keep_in_fp32_modules` applies to fp16 only.)
    _keep_in_fp32_modules_strict = ["retriever"]

    def _init_weights(self, module):
        # The sub-models initialise themselves; only the retriever's projection belongs to this class.
        if isinstance(module, JMLRRetriever) and module.linear is not None:
            nn.init.normal_(module.linear.weight, std=0.02)


class JMLRForCausalLM(JMLRPreTrainedModel, GenerationMixin):
    """A causal LM (`generator`) that owns the retriever (`retriever`) trained with it.

    `forward` is the generator's causal LM, so SFT, evaluation and `generate` work as for any causal LM. Passing
    `query_input_ids`/`doc_input_ids` as well scores the documents with the retriever in the same call (the joint
    trainer does this so that one forward, under DDP, carries both sub-models' gradients).

    Example (a tiny random model; `from_components("meta-llama/Llama-2-7b-hf", "colbert-ir/colbertv2.0", ...)` builds
    one from two existing checkpoints):

    ```python
    >>> import torch
    >>> from transformers import BertConfig, LlamaConfig
    >>> from jmlr_hf import JMLRConfig, JMLRForCausalLM

    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100)
    >>> model = JMLRForCausalLM(
    ...     JMLRConfig(
    ...         generator=LlamaConfig(**tiny),
    ...         retriever=BertConfig(**tiny),
    ...         num_candidates=2,
    ...         num_sampled=2,
    ...         num_context_documents=1,
    ...     )
    ... ).eval()
    >>> out = model(
    ...     input_ids=torch.tensor([[1, 5, 9]]),
    ...     query_input_ids=torch.tensor([[2, 3, 4]]),
    ...     query_attention_mask=torch.ones(1, 3, dtype=torch.long),
    ...     doc_input_ids=torch.tensor([[5, 6, 7], [8, 9, 10]]),
    ...     doc_attention_mask=torch.ones(2, 3, dtype=torch.long),
    ... )
    >>> tuple(out.logits.shape), tuple(out.retrieval_scores.shape)
    ((1, 3, 100), (1, 2))

    ```
    """

    def __init__(
        self,
        config: JMLRConfig,
        generator: PreTrainedModel | None = None,
        retriever_encoder: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        self.generator = generator if generator is not None else AutoModelForCausalLM.from_config(config.generator)
        self.retriever = JMLRRetriever(config, encoder=retriever_encoder)
        self.post_init()
        self.retriever.sync_document_tower()

    # Generation and embeddings are the generator's.
    def get_input_embeddings(self):
        return self.generator.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.generator.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.generator.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.generator.set_output_embeddings(value)

    @property
    def generation_config(self):
        return self.generator.generation_config

    @generation_config.setter
    def generation_config(self, value):
        # PreTrainedModel.__init__ assigns one before the generator exists.
        if "generator" in self._modules:
            self.generator.generation_config = value

    def can_generate(self) -> bool:
        return True

    def generate(self, *args, **kwargs):
        return self.generator.generate(*args, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        query_input_ids: torch.LongTensor | None = None,
        query_attention_mask: torch.Tensor | None = None,
        doc_input_ids: torch.LongTensor | None = None,
        doc_attention_mask: torch.Tensor | None = None,
        score_all_pairs: bool = False,
        **kwargs,
    ) -> JMLRCausalLMOutput:
        r"""
        query_input_ids, query_attention_mask (`[B, Lq]`), doc_input_ids, doc_attention_mask (`[B * N, Ld]`):
            Retriever inputs; when given, `retrieval_scores` holds the scores of each question's documents.
        score_all_pairs (`bool`): score every question against every document of the batch (`[B, B * N]`).
        """
        scores = None
        if query_input_ids is not None:
            scores = self.retriever(
                query_input_ids, query_attention_mask, doc_input_ids, doc_attention_mask, all_pairs=score_all_pairs
            )
        if input_ids is None and inputs_embeds is None:
            return JMLRCausalLMOutput(retrieval_scores=scores)
        if past_key_values is not None:  # passed on only when given: transformers 5 deprecates the name
            kwargs["past_key_values"] = past_key_values
        outputs = self.generator(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        return JMLRCausalLMOutput(
            loss=outputs.loss,
            logits=outputs.logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            retrieval_scores=scores,
        )

    def score_documents(
        self,
        questions: Sequence[str],
        documents: Sequence[Sequence[str]],
        retriever_tokenizer,
    ) -> torch.Tensor:
        """Retriever scores `[B, N]` of N documents for each of B questions (N equal across questions)."""
        num_docs = {len(docs) for docs in documents}
        if len(num_docs) != 1:
            raise ValueError(f"every question needs the same number of documents, got {sorted(num_docs)}")
        device = next(self.retriever.parameters()).device
        query = tokenize_for_retriever(self.config, retriever_tokenizer, questions, is_query=True)
        docs = tokenize_for_retriever(
            self.config, retriever_tokenizer, [doc for docs in documents for doc in docs], is_query=False
        )
        return self.retriever(
            query["input_ids"].to(device),
            query["attention_mask"].to(device),
            docs["input_ids"].to(device),
            docs["attention_mask"].to(device),
        )

    def answer_nll(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        micro_batch_size: int | None = None,
        *,
        packed: bool = False,
        max_packed_tokens: int | None = None,
    ) -> torch.Tensor:
        """Mean NLL per sequence `[n]` of the generator over its labelled (answer) tokens; see `answer_nll`."""
        return answer_nll(
            self.generator,
            input_ids,
            attention_mask,
            labels,
            micro_batch_size,
            packed=packed,
            max_packed_tokens=max_packed_tokens,
        )

    @classmethod
    def from_components(
        cls,
        generator_name_or_path: str,
        retriever_name_or_path: str,
        *,
        generator_kwargs: dict | None = None,
        retriever_kwargs: dict | None = None,
        **retrieval_kwargs,
    ) -> "JMLRForCausalLM":
        """Build a JMLR model from an existing causal LM and an existing encoder (e.g. Llama-2 + ColBERTv2), each a
        local folder or a Hub id; with `jmlr_hf` installed, also the short names of its packaged demo models, as
        the `jmlr` command accepts them (`"smollm2-135m-instruct"`, `"all-minilm-l6-v2"`).

        `retrieval_kwargs` are `JMLRConfig` fields (`num_candidates=20`, `retrieval_loss="lsr"`, ...). When the
        retriever checkpoint is a ColBERT one (it carries a `linear.weight` projection, like
        `colbert-ir/colbertv2.0`), the projection is loaded, `projection_dim` is set from it, and ColBERT's input
        conventions are turned on (`colbert_conventions`, with the token ids read from the checkpoint's tokenizer);
        pass `colbert_conventions=False` to score without them.
        """
        generator_name_or_path = _resolve_demo_alias(generator_name_or_path)
        retriever_name_or_path = _resolve_demo_alias(retriever_name_or_path)
        generator = AutoModelForCausalLM.from_pretrained(generator_name_or_path, **(generator_kwargs or {}))
        encoder = AutoModel.from_pretrained(retriever_name_or_path, **(retriever_kwargs or {}))
        hub_kwargs = {key: value for key, value in (retriever_kwargs or {}).items() if key in _HUB_KWARGS}
        colbert_linear = _find_colbert_linear(retriever_name_or_path, **hub_kwargs)
        if colbert_linear is not None:
            retrieval_kwargs.setdefault("projection_dim", colbert_linear.shape[0])
            retrieval_kwargs.setdefault("colbert_conventions", True)
        if retrieval_kwargs.get("colbert_conventions") and retrieval_kwargs.get("colbert_token_ids") is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(retriever_name_or_path, **hub_kwargs)
            retrieval_kwargs["colbert_token_ids"] = colbert_token_ids(tokenizer)
        config = JMLRConfig(generator=generator.config, retriever=encoder.config, **retrieval_kwargs)
        model = cls(config, generator=generator, retriever_encoder=encoder)
        if colbert_linear is not None and model.retriever.linear is not None:
            if tuple(model.retriever.linear.weight.shape) != tuple(colbert_linear.shape):
                raise ValueError(
                    f"projection_dim={config.projection_dim} does not match the checkpoint's ColBERT projection "
                    f"{tuple(colbert_linear.shape)}"
                )
            with torch.no_grad():
                model.retriever.linear.weight.copy_(colbert_linear)
            model.retriever.sync_document_tower()
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """As for any model; a checkpoint that stores its generator as a LoRA adapter (`config.generator_adapter`)
        is loaded as the base causal LM it names (`config.generator_base_model`) plus that adapter."""
        config = kwargs.get("config")
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        if isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            # A mistyped folder would otherwise reach the Hub client as "Repo id must be in the form ...".
            check_path_or_hub_id(pretrained_model_name_or_path, "model")
        if config is None or isinstance(config, (str, os.PathLike)):
            config = cls.config_class.from_pretrained(config or pretrained_model_name_or_path, **hub_kwargs)
        if getattr(config, "generator_adapter", None) is None:
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        else:
            model = cls._from_base_and_adapter(pretrained_model_name_or_path, config, kwargs.get("dtype"), hub_kwargs)
        # `load_tokenizers` and `load_index` fetch from where the model came from, at the same revision.
        model._source = (os.fspath(pretrained_model_name_or_path), hub_kwargs)
        index = model.config.index_repo_id
        if index is not None and index.startswith(RELATIVE_PATH_PREFIXES) and os.path.isdir(model._source[0]):
            # Recorded relative to the model folder (see `save_pretrained`); in memory it is an absolute path, so
            # that it still names the same folder after the working directory changes or the model is saved again.
            model.config.index_repo_id = os.path.abspath(resolve_index_location(index, model._source[0]))
        return model

    @classmethod
    def _from_base_and_adapter(cls, path, config: JMLRConfig, dtype, hub_kwargs: dict) -> "JMLRForCausalLM":
        try:  # peft is needed only for adapter checkpoints; the try keeps it out of the remote code's requirements
            from peft import PeftModel
        except ImportError as err:
            raise ImportError(
                f"{path} stores its generator as a LoRA adapter on {config.generator_base_model}: loading it needs "
                "`pip install peft`"
            ) from err
        from safetensors.torch import load_file
        from transformers.utils import cached_file

        base_kwargs = {key: value for key, value in hub_kwargs.items() if key != "revision"}
        dtype_kwargs = {"dtype": dtype} if dtype is not None else {}
        generator = AutoModelForCausalLM.from_pretrained(
            config.generator_base_model, revision=config.generator_base_revision, **base_kwargs, **dtype_kwargs
        )
        # In float32 whatever `dtype` says, as `_keep_in_fp32_modules_strict` keeps it for a full checkpoint.
        encoder = AutoModel.from_config(config.retriever, dtype=torch.float32)
        model = cls(config, generator=generator, retriever_encoder=encoder)
        model.set_generator(
            PeftModel.from_pretrained(generator, path, subfolder=config.generator_adapter, **hub_kwargs)
        )
        state = load_file(cached_file(path, "model.safetensors", **hub_kwargs))
        unexpected = sorted(key for key in state if not key.startswith("retriever."))
        if unexpected:
            raise ValueError(
                f"{path}/model.safetensors of an adapter checkpoint must hold only retriever weights; it also has "
                f"{unexpected[:5]}"
            )
        model.retriever.load_state_dict({key[len("retriever.") :]: value for key, value in state.items()})
        return model.eval()

    def set_generator(self, generator: nn.Module) -> None:
        """Replace the generator, e.g. by its PEFT-wrapped or merged self, keeping the tied-weights map in step
        (a PEFT wrapper moves the generator's parameters under `base_model.model.`)."""
        self.generator = generator
        inner = generator.get_base_model() if hasattr(generator, "get_base_model") else generator
        prefix = "generator.base_model.model." if inner is not generator else "generator."
        self.all_tied_weights_keys = {
            f"{prefix}{target}": f"{prefix}{source}" for target, source in (inner.all_tied_weights_keys or {}).items()
        }

    def load_index(self, index=None, revision: str | None = None, **kwargs):
        """The document index that goes with this model: by default the one its config records (`index_repo_id`,
        pinned to `index_revision`), from the Hub or a local folder.

        With `jmlr_hf` installed this is its `DocumentIndex` (GPU search, building, saving); without it, a
        `JMLRIndex` read with faiss and pyarrow alone, which searches the same way. The index's encoder fingerprint
        is compared with this model's retriever; a mismatch warns, because the index vectors were then computed by
        other weights. Keyword arguments: `token`, `cache_dir`, `local_files_only`, `on_stale`,
        `verify_checksums`, `nprobe`, `ef_search` (and, with `jmlr_hf`, `use_gpu` and `gpu_shards`).
        """
        if index is None:
            index, revision = self.config.index_repo_id, revision or self.config.index_revision
        if index is None:
            raise ValueError("This model's config records no index (index_repo_id): pass one, load_index('org/index')")
        index = resolve_index_location(index, self._source_folder())
        kwargs.setdefault("expected_fingerprint", self.retriever.weights_fingerprint())
        kwargs.setdefault("on_stale", "warn")
        try:  # not a requirement: jmlr_hf's index adds GPU search, the reader below is the same
            from jmlr_hf.retrieval.index import load_index
        except ImportError:
            load_index = None
        if load_index is not None:
            return load_index(index, revision=revision, **kwargs)
        gpu = [name for name in ("use_gpu", "gpu_shards") if kwargs.pop(name, None)]
        if gpu:
            raise ValueError(
                f"GPU search ({', '.join(gpu)}) needs jmlr_hf (`pip install 'jmlr_hf[faiss-gpu]'`); this index "
                "searches on CPU"
            )
        download = {key: kwargs.pop(key) for key in ("token", "cache_dir", "local_files_only") if key in kwargs}
        return JMLRIndex.load(download_index(index, revision, **download), **kwargs)

    def _source_folder(self) -> str | None:
        """The local folder this model was loaded from, if it was loaded from one."""
        source = getattr(self, "_source", (None, {}))[0] or getattr(self.config, "_name_or_path", None)
        return source if source and os.path.isdir(source) else None

    def load_tokenizers(self, **hub_kwargs):
        """`(tokenizer, retriever_tokenizer)`: the generator's tokenizer (at the root of the model folder or
        repository) and the retriever's (in its `retriever_tokenizer/` subfolder), from where this model was loaded
        and at the same revision.

        Each is loaded with its sub-model's config, so `AutoTokenizer` does not read the composite config (whose
        `auto_map` would make it ask to trust remote code). Equivalent by hand::

            tokenizer = AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
            retriever_tokenizer = AutoTokenizer.from_pretrained(repo_id, subfolder="retriever_tokenizer", revision=revision)
        """
        from transformers import AutoTokenizer

        source, loaded_with = getattr(self, "_source", (getattr(self.config, "_name_or_path", None), {}))
        if not source:
            raise ValueError("This model was not loaded from a folder or a Hub id: pass the tokenizers explicitly")
        kwargs = {**loaded_with, **hub_kwargs}
        tokenizer = AutoTokenizer.from_pretrained(source, config=self.config.generator, **kwargs)
        retriever_tokenizer = AutoTokenizer.from_pretrained(
            source, subfolder=RETRIEVER_TOKENIZER_DIR, config=self.config.retriever, **kwargs
        )
        return tokenizer, retriever_tokenizer

    def _tokenizers(self, tokenizer, retriever_tokenizer) -> tuple:
        """The given tokenizers, the missing ones loaded once from where the model came from."""
        if tokenizer is None or retriever_tokenizer is None:
            if getattr(self, "_cached_tokenizers", None) is None:
                self._cached_tokenizers = self.load_tokenizers()
            tokenizer = tokenizer if tokenizer is not None else self._cached_tokenizers[0]
            retriever_tokenizer = (
                retriever_tokenizer if retriever_tokenizer is not None else self._cached_tokenizers[1]
            )
        return tokenizer, retriever_tokenizer

    def _default_index(self):
        """The config's index, loaded once."""
        key = (self.config.index_repo_id, self.config.index_revision)
        cached = getattr(self, "_cached_index", None)
        if cached is None or cached[0] != key:
            self._cached_index = (key, self.load_index())
        return self._cached_index[1]

    @torch.no_grad()
    def retrieve(
        self,
        questions: str | Sequence[str],
        retriever_tokenizer=None,
        *,
        index=None,
        num_candidates: int | None = None,
        num_documents: int | None = None,
    ) -> list[list[dict]]:
        """For each question, the documents this model puts in its prompt, best first: the index's top
        `num_candidates` (N, default `config.num_candidates`) by dense search, re-scored by the retriever as in
        training (MaxSim), the best `num_documents` (K, default `config.num_context_documents`) kept.

        Each document is a dict: the index's stored columns (`id`, `text`, `title`, ...), `score` (the index's
        cosine) and `retriever_score`. `index` is a loaded index, a folder or Hub id for `load_index`, or by default
        the model's own; the retriever tokenizer defaults to the one saved with the model.
        """
        if isinstance(questions, str):
            questions = [check_question(questions)]
        elif isinstance(questions, Sequence):
            questions = [check_question(question, f"questions[{i}]") for i, question in enumerate(questions)]
        else:
            raise TypeError(f"questions must be a string or a list of strings, got {type(questions).__name__}")
        if retriever_tokenizer is None:
            retriever_tokenizer = self._tokenizers(None, None)[1]
        cfg = self.config
        num_documents = cfg.num_context_documents if num_documents is None else num_documents
        if num_documents == 0:
            return [[] for _ in questions]
        if index is None:
            index = self._default_index()
        elif isinstance(index, (str, os.PathLike)):
            index = self.load_index(os.fspath(index))

        def encode(texts: Sequence[str]) -> torch.Tensor:
            return self.retriever.encode_dense_texts(
                list(texts), retriever_tokenizer, max_length=cfg.max_query_length, batch_size=64, is_query=True
            )

        hits = index.retrieve(list(questions), encode, num_candidates or cfg.num_candidates, show_progress=False)
        results = []
        for question, candidates in zip(questions, hits):
            if not candidates:
                results.append([])
                continue
            texts = [document_text(hit) for hit in candidates]
            scores = self.score_documents([question], [texts], retriever_tokenizer)[0].float().cpu()
            order = scores.argsort(descending=True)[:num_documents].tolist()
            results.append([{**candidates[i], "retriever_score": float(scores[i])} for i in order])
        return results

    @torch.no_grad()
    def answer(
        self,
        question: str,
        tokenizer=None,
        retriever_tokenizer=None,
        *,
        options: Sequence[str] | None = None,
        index=None,
        max_new_tokens: int = 64,
        **generate_kwargs,
    ) -> "JMLRAnswer":
        """Answer a question with documents: retrieve them (`retrieve`), write the prompt as in training (the
        documents cut to `config.max_document_length` tokens, the whole fitted to `config.max_length` by
        `fit_prompt`), and generate (greedy unless `generate_kwargs` say otherwise).

        The tokenizers default to the ones saved with the model, the index to the one its config records, so that
        `AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True).answer("...")` needs nothing else.
        `options` makes a multiple-choice question (lettered A, B, ...).

        The question and the options are checked first ([`check_question`], [`check_options`]: one question as a
        string, 2 to 10 option texts given as a list), and a question that does not fit `config.max_length` tokens
        even without documents is refused: it would be generated from at full length, far from anything the model
        was trained on. Raises `TypeError` / `ValueError` naming `question` or `options`.
        """
        question = check_question(question)
        options = check_options(options)
        check_count(max_new_tokens, "max_new_tokens")
        tokenizer, retriever_tokenizer = self._tokenizers(tokenizer, retriever_tokenizer)
        cfg = self.config
        budget = cfg.max_length - len(target_token_ids(tokenizer, ""))
        bare = len(tokenizer(build_prompt(cfg, question, (), options), add_special_tokens=True)["input_ids"])
        if bare > budget:
            raise ValueError(
                f"question: the question{' and its options' if options else ''} take {bare} tokens, more than "
                f"max_length={cfg.max_length} (less the answer's room) allows even without documents; shorten it"
            )
        documents = self.retrieve(question, retriever_tokenizer, index=index)[0]
        texts = [truncate_to_tokens(tokenizer, document_text(doc), cfg.max_document_length) for doc in documents]
        prompt = fit_prompt(tokenizer, cfg, question, texts, options, target="")
        device = next(self.generator.parameters()).device
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        generate_kwargs.setdefault("do_sample", False)
        if tokenizer.pad_token_id is not None or tokenizer.eos_token_id is not None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            generate_kwargs.setdefault("pad_token_id", pad)
        output = self.generate(**inputs, max_new_tokens=max_new_tokens, **generate_kwargs)
        text = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        return JMLRAnswer(answer=text, documents=documents, prompt=prompt)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As for any model, with the document index recorded so that the saved model can be moved or published: a
        local index folder as a path relative to `save_directory` (`../index`, never an absolute path), a Hub
        index as its id and revision. `push_to_hub=True` needs a published index (see `push_to_hub`)."""
        sharded_class = type(self)
        plain_class = next(c for c in sharded_class.__mro__ if not c.__module__.startswith("torch."))
        if plain_class is not sharded_class:
            # FSDP2's `fully_shard` swaps the class for a generated `FSDPJMLRForCausalLM`, defined in torch's own
            # module: saved as is, the remote code copied would be torch's FSDP files and `auto_map` would name that
            # class. The save writes this class (the weights come as the gathered `state_dict` argument).
            self.__class__ = plain_class
            try:
                return self.save_pretrained(save_directory, *args, **kwargs)
            finally:
                self.__class__ = sharded_class
        if kwargs.get("push_to_hub"):
            self._pin_published_index(kwargs.get("token"))
        # One class serves both auto classes; `register_for_auto_class` records a single one.
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map["AutoModelForCausalLM"] = f"{self.__class__.__module__.split('.')[-1]}.{self.__class__.__name__}"
            self.config.auto_map = auto_map
        index = self.config.index_repo_id
        if index is None or not is_local_path(index):
            return super().save_pretrained(save_directory, *args, **kwargs)
        target = os.path.abspath(os.path.expanduser(index))
        relative = os.path.relpath(target, os.path.abspath(os.fspath(save_directory))).replace(os.sep, "/")
        self.config.index_repo_id = relative if relative.startswith(RELATIVE_PATH_PREFIXES) else f"./{relative}"
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.index_repo_id = index

    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """As for any model, but only with a published index: a model on the Hub that named a folder on the
        author's disk would load and then fail to retrieve. A Hub index without a revision is pinned to its
        current commit, so that the model keeps retrieving from the index it was published with."""
        self._pin_published_index(kwargs.get("token"))
        return super().push_to_hub(repo_id, *args, **kwargs)

    def _pin_published_index(self, token=None) -> None:
        """Refuse a local index (naming how to publish it); pin a Hub index's revision to its current commit."""
        index = self.config.index_repo_id
        if index is None:
            return
        if is_local_path(index):
            raise ValueError(
                f"This model's index is the local folder {index}: publish it before the model, or Hub users get a "
                "model whose index they cannot load. `jmlr push model <model folder> --repo-id <id>` (or "
                "`jmlr_hf.hub.push_model`) publishes both in one go; or publish the index with `jmlr push index "
                "<index folder> --repo-id <id>-index` (`jmlr_hf.hub.push_index`) and set "
                "`model.config.index_repo_id` (and `index_revision`) to it; or set `model.config.index_repo_id = "
                "None` to publish the model without an index."
            )
        if self.config.index_revision is None:
            from huggingface_hub import HfApi

            self.config.index_revision = HfApi(token=token).repo_info(index, repo_type=INDEX_REPO_TYPE).sha


def _resolve_demo_alias(name_or_path: str | os.PathLike) -> str | os.PathLike:
    """The local folder of a packaged demo model named by its short name (`jmlr_hf.utils.demo_models`), as the
    `jmlr` command resolves it; any other name unchanged. Without `jmlr_hf` (remote code) the packaged models are not
    installed either, so names pass through."""
    try:  # optional: the short names are jmlr_hf's packaged models
        from jmlr_hf.utils.demo_models import resolve_demo_alias
    except ImportError:
        return name_or_path
    return resolve_demo_alias(name_or_path) if isinstance(name_or_path, str) else name_or_path


def _find_colbert_linear(name_or_path: str, **hub_kwargs) -> torch.Tensor | None:
    """The `linear.weight` of a ColBERT checkpoint (a local folder or a Hub id), if it has one."""
    from transformers.modeling_utils import load_state_dict
    from transformers.utils import cached_file

    for filename in ("model.safetensors", "pytorch_model.bin"):
        if os.path.isdir(name_or_path):
            path = os.path.join(name_or_path, filename)
            path = path if os.path.exists(path) else None
        else:
            path = cached_file(
                name_or_path,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                **hub_kwargs,
            )
        if path is not None:
            return load_state_dict(path).get("linear.weight")
    return None


JMLRConfig.register_for_auto_class()
JMLRForCausalLM.register_for_auto_class("AutoModel")

__all__ = [
    "RETRIEVER_TOKENIZER_DIR",
    "JMLRAnswer",
    "JMLRForCausalLM",
    "JMLRPreTrainedModel",
    "JMLRRetriever",
    "answer_positions",
    "answer_targets",
    "chunked_token_nll",
    "eval_mode",
    "encode_by_length",
    "kept_logits",
    "length_groups",
    "pack_sequences",
    "build_prompt",
    "build_target",
    "colbert_token_ids",
    "fit_prompt",
    "left_truncate",
    "target_token_ids",
    "tokenize_for_retriever",
]
