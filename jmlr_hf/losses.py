"""Retrieval losses that teach the retriever what helps the LLM.

Every function takes the retriever's *logits* over a set of documents (`score / τ`, shape `[B, S]`) and the LLM's
answer NLL given each of those documents (shape `[B, S]`, no gradient needed), and returns a scalar. The NLL side
is always treated as a fixed target: it is detached here, so a caller cannot train the LLM through it by mistake.

`mask` (bool, `[B, S]`, optional) marks the valid documents of each row; padded entries are ignored.

A NaN or infinite logit or NLL at a valid position makes every loss NaN: the losses never turn such an input into a
finite, wrong number (a NaN NLL compares unequal to everything, so the pairwise loss would otherwise count it as the
worse document of every pair). The trainer detects the NaN and stops the run or skips the step
(`JointRetrievalConfig.nonfinite_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _mask_or_ones(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(logits, dtype=torch.bool) if mask is None else mask.bool()


def _nan_if_not_finite(loss: torch.Tensor, valid: torch.Tensor, *inputs: torch.Tensor | None) -> torch.Tensor:
    """`loss`, or NaN when an input holds a NaN or an infinity at a valid position (padding is ignored)."""
    finite = torch.ones((), dtype=torch.bool, device=loss.device)
    for tensor in inputs:
        if tensor is not None:
            check = valid if tensor.shape == valid.shape else torch.ones_like(tensor, dtype=torch.bool)
            finite = finite & (torch.isfinite(tensor.detach()) | ~check).all()
    return torch.where(finite, loss, torch.full_like(loss, float("nan")))


def llm_rank_loss(
    retriever_logits: torch.Tensor,
    lm_nll: torch.Tensor,
    mask: torch.Tensor | None = None,
    negative_logits: torch.Tensor | None = None,
    min_nll_gap: float = 0.0,
    weight_by_nll_gap: bool = False,
) -> torch.Tensor:
    r"""Pairwise RankNet loss over the sampled documents (JMLR, Wang et al. 2024, arXiv 2402.17887, §3).

    For every ordered pair (i, j) of documents of one question whose NLLs differ, with target
    $y_{ij} = 1[\mathrm{NLL}_i < \mathrm{NLL}_j]$ and logit difference $d_{ij} = s_i - s_j$:

    $$\mathcal{L} = \frac{1}{|P|} \sum_{(i,j) \in P} \mathrm{BCEWithLogits}(d_{ij}, y_{ij})
                  = \frac{1}{|P|} \sum_{(i,j) \in P} \big[\log(1 + e^{d_{ij}}) - y_{ij} d_{ij}\big]$$

    where P holds the pairs i < j with $\mathrm{NLL}_i \neq \mathrm{NLL}_j$ over all questions of the batch.

    Two defects of the authors' released code are avoided on purpose: the loss is computed from logits with the
    numerically stable BCE-with-logits (not `log(1 - sigmoid(d))`, which is `-inf` once `sigmoid` rounds to 1), and
    tied pairs carry no preference, so they are skipped rather than counted as negatives. Returns 0 (with a
    gradient path) when no pair is left.

    Two options (not in the paper; both off by default, which is the paper's loss) decide how much each pair of P
    counts. They were built to test whether near-tied pairs hold the retriever back: on MedQuAD, half of the pairs
    that do not involve the LLM's best candidate differ by < 0.1 nats/token, and the plain mean weights those
    orderings like the decisive ones. Measured there, neither option raised the share of the headroom the retriever
    captures (0.34 with or without them); the listwise `ppl_distill_loss` at a small β did (experiments/RESULTS.md §6).

    * `min_nll_gap` = δ ≥ 0 keeps only the pairs with $|\mathrm{NLL}_i - \mathrm{NLL}_j| > δ$ (δ = 0: every pair
      that is not tied).
    * `weight_by_nll_gap=True` weights each pair by its gap, $w_{ij} = |\mathrm{NLL}_i - \mathrm{NLL}_j|$, and
      takes the weighted mean (as LambdaRank weights a pair by how much swapping it changes the metric):

    $$\mathcal{L}_{\text{pairs}} = \frac{\sum_{(i,j) \in P} w_{ij}\, \mathrm{BCEWithLogits}(d_{ij}, y_{ij})}
                                    {\sum_{(i,j) \in P} w_{ij}}$$

      `False` is $w_{ij} = 1$, the mean above.

    With `negative_logits` (`[B, M]`: the other questions' candidates of the batch, scored against this question)
    a second mean joins it, over the pairs (own sampled document i, in-batch negative m), each with target 1:

    $$\mathcal{L} = \frac{1}{|P|} \sum_{(i,j) \in P} \mathrm{BCEWithLogits}(d_{ij}, y_{ij})
                  + \frac{1}{|N|} \sum_{(i,m) \in N} \log\big(1 + e^{-(s_i - s_m)}\big)$$

    The LLM's NLL of another question's document is not measured; the pairs only say that a question's own
    candidates (its first stage's top N, passages about its topic) rank above the others' (other topics). Trained
    on its own candidates alone, a query can drift off its topic against the rest of the corpus, since nothing in
    the first mean holds its position there (measured on MedQuAD: experiments/RESULTS.md §6). The two means are
    kept apart so that the N pairs (S · M per question) do not dilute the LLM's preference: while the query keeps
    its topic, the negative pairs sit at large margins and add little gradient. A negative identical to an own
    document scores the same and adds no gradient.
    """
    if min_nll_gap < 0 or not math.isfinite(min_nll_gap):
        raise ValueError(f"min_nll_gap must be a finite number >= 0, got {min_nll_gap}")
    valid = _mask_or_ones(retriever_logits, mask)
    nll = lm_nll.detach()
    diff = retriever_logits.unsqueeze(-1) - retriever_logits.unsqueeze(-2)  # [B, S, S]: s_i - s_j
    target = (nll.unsqueeze(-1) < nll.unsqueeze(-2)).to(retriever_logits.dtype)
    gap = (nll.unsqueeze(-1) - nll.unsqueeze(-2)).abs()
    upper = torch.triu(torch.ones_like(diff, dtype=torch.bool), diagonal=1)
    # At δ = 0 `gap > δ` is `NLL_i != NLL_j`; a NaN gap makes no pair, and `_nan_if_not_finite` returns NaN anyway.
    pairs = upper & (gap > min_nll_gap) & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    if not pairs.any():
        loss = retriever_logits.masked_fill(~valid, 0.0).sum() * 0.0
    else:
        per_pair = F.binary_cross_entropy_with_logits(diff[pairs], target[pairs], reduction="none")
        if weight_by_nll_gap:
            weights = gap[pairs].to(per_pair.dtype)
            loss = (weights * per_pair).sum() / weights.sum()
        else:
            loss = per_pair.mean()
    if negative_logits is not None and negative_logits.shape[-1] > 0:
        margins = retriever_logits.unsqueeze(-1) - negative_logits.unsqueeze(-2)  # [B, S, M]: s_i - s_m
        own = valid.unsqueeze(-1).expand_as(margins)
        loss = loss + F.softplus(-margins[own]).mean()
    return _nan_if_not_finite(loss, valid, retriever_logits, nll, negative_logits)


def lsr_loss(
    retriever_logits: torch.Tensor,
    lm_nll: torch.Tensor,
    lm_temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    negative_logits: torch.Tensor | None = None,
    negative_mass: float = 1e-3,
) -> torch.Tensor:
    r"""LM-supervised retrieval (RePlug, Shi et al. 2023, arXiv 2301.12652, eq. 4), as the paper writes it:

    $$P_R(d) = \mathrm{softmax}(s)_d, \qquad Q_{LM}(d) = \mathrm{softmax}(-\mathrm{NLL}/\beta)_d, \qquad
      \mathcal{L} = \frac{1}{B} \sum_{b} \mathrm{KL}\big(P_R \,\|\, Q_{LM}\big)
                  = \frac{1}{B} \sum_b \sum_d P_R(d) \big[\log P_R(d) - \log Q_{LM}(d)\big]$$

    with the LM side detached. With `negative_logits` (`[B, M]`, other questions' documents as in-batch negatives),
    both distributions range over the S + M documents; Q_LM would be zero on the negatives, where this direction of
    the KL is infinite, so the negatives share a total LM-side mass of `negative_mass` and the sampled documents
    the remaining `1 - negative_mass`.
    """
    valid = _mask_or_ones(retriever_logits, mask)
    neg_inf = torch.finfo(retriever_logits.dtype).min
    logits = retriever_logits.masked_fill(~valid, neg_inf)
    lm_logits = (-lm_nll.detach() / lm_temperature).masked_fill(~valid, neg_inf)
    log_q = F.log_softmax(lm_logits, dim=-1)
    if negative_logits is not None and negative_logits.shape[-1] > 0:
        num_neg = negative_logits.shape[-1]
        logits = torch.cat([logits, negative_logits], dim=-1)
        log_q_neg = torch.full_like(negative_logits, math.log(negative_mass / num_neg))
        log_q = torch.cat([log_q + math.log1p(-negative_mass), log_q_neg], dim=-1)
        valid = torch.cat([valid, torch.ones_like(negative_logits, dtype=torch.bool)], dim=-1)
    log_p = F.log_softmax(logits, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).masked_fill(~valid, 0.0)
    own_valid = _mask_or_ones(retriever_logits, mask)
    return _nan_if_not_finite(kl.sum(-1).mean(), own_valid, retriever_logits, lm_nll, negative_logits)


def ppl_distill_loss(
    retriever_logits: torch.Tensor,
    lm_nll: torch.Tensor,
    lm_temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    negative_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Perplexity distillation (Atlas, Izacard et al. 2022, arXiv 2208.03299, §2.2): the LM's preference over the
    documents is a fixed teacher for the retriever,

    $$\mathcal{L} = \frac{1}{B} \sum_b \mathrm{KL}\big(Q_{LM} \,\|\, P_R\big)
                  = \frac{1}{B} \sum_b \sum_d Q_{LM}(d) \big[\log Q_{LM}(d) - \log P_R(d)\big]$$

    with $Q_{LM} = \mathrm{softmax}(-\mathrm{NLL}/\beta)$ (detached) and $P_R = \mathrm{softmax}(s)$. In-batch
    negatives (`negative_logits`, `[B, M]`) enter P_R's normalisation only: their teacher probability is zero.
    """
    valid = _mask_or_ones(retriever_logits, mask)
    neg_inf = torch.finfo(retriever_logits.dtype).min
    logits = retriever_logits.masked_fill(~valid, neg_inf)
    log_q = F.log_softmax((-lm_nll.detach() / lm_temperature).masked_fill(~valid, neg_inf), dim=-1)
    if negative_logits is not None and negative_logits.shape[-1] > 0:
        log_p = F.log_softmax(torch.cat([logits, negative_logits], dim=-1), dim=-1)[..., : logits.shape[-1]]
    else:
        log_p = F.log_softmax(logits, dim=-1)
    kl = (log_q.exp() * (log_q - log_p)).masked_fill(~valid, 0.0)
    return _nan_if_not_finite(kl.sum(-1).mean(), valid, retriever_logits, lm_nll, negative_logits)


def pairwise_agreement(
    retriever_logits: torch.Tensor,
    lm_nll: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    skip_score_ties: bool = False,
) -> torch.Tensor:
    r"""Diagnostic: the fraction of document pairs with different NLLs that the retriever orders like the LLM,

    $$\frac{1}{|P|} \sum_{(i,j) \in P} 1\big[(s_i - s_j)(\mathrm{NLL}_j - \mathrm{NLL}_i) > 0\big].$$

    0.5 is chance; 1.0 means the retriever ranks documents exactly by how much they help. NaN when no pair differs,
    or when a score or NLL is NaN or infinite.
    A pair the retriever scores equally counts as a disagreement (it fails to order them), unless `skip_score_ties`
    leaves such pairs out too (as the headroom analysis does, where duplicate candidates tie exactly).
    """
    valid = _mask_or_ones(retriever_logits, mask)
    s, nll = retriever_logits.detach(), lm_nll.detach()
    upper = torch.triu(torch.ones(s.shape[-1], s.shape[-1], dtype=torch.bool, device=s.device), diagonal=1)
    nll_gap = nll.unsqueeze(-2) - nll.unsqueeze(-1)  # NLL_j - NLL_i
    score_gap = s.unsqueeze(-1) - s.unsqueeze(-2)  # s_i - s_j
    pairs = upper & (nll_gap != 0) & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    if skip_score_ties:
        pairs = pairs & (score_gap != 0)
    if not pairs.any():
        return torch.tensor(float("nan"), device=s.device)
    agree = (score_gap * nll_gap > 0)[pairs]
    return _nan_if_not_finite(agree.float().mean(), valid, s, nll)


RETRIEVAL_LOSSES = {"llm_rank": llm_rank_loss, "lsr": lsr_loss, "ppl_distill": ppl_distill_loss}
