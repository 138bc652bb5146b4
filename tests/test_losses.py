"""Pinning tests of jmlr_hf.losses against hand-computed values.

Conventions used in the comments: softplus(x) = log(1 + e^x); BCEWithLogits(d, y=1) = softplus(-d) and
BCEWithLogits(d, y=0) = softplus(d).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from jmlr_hf.losses import RETRIEVAL_LOSSES, llm_rank_loss, lsr_loss, pairwise_agreement, ppl_distill_loss


def t(values, dtype=torch.float64, requires_grad=False) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, requires_grad=requires_grad)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_registry_names():
    assert {"llm_rank": llm_rank_loss, "lsr": lsr_loss, "ppl_distill": ppl_distill_loss} == RETRIEVAL_LOSSES


# ---------------------------------------------------------------------------------------------------------------------
# llm_rank_loss
# ---------------------------------------------------------------------------------------------------------------------

# logits s = [2, 0, 1], NLL = [0.5, 1.5, 1.0]; pairs i < j:
#   (0, 1): d = 2 - 0 = 2,   NLL_0 < NLL_1 -> y = 1: softplus(-2) = 0.1269280110
#   (0, 2): d = 2 - 1 = 1,   NLL_0 < NLL_2 -> y = 1: softplus(-1) = 0.3132616875
#   (1, 2): d = 0 - 1 = -1,  NLL_1 > NLL_2 -> y = 0: softplus(-1) = 0.3132616875
#   mean = (0.1269280110 + 2 * 0.3132616875) / 3 = 0.7534513860 / 3 = 0.2511504620
RANK_EXPECTED = 0.2511504620


def test_llm_rank_hand_computed():
    assert softplus(-2) + 2 * softplus(-1) == pytest.approx(3 * RANK_EXPECTED, abs=1e-9)
    loss = llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, 1.5, 1.0]]))
    assert loss.item() == pytest.approx(RANK_EXPECTED, abs=1e-9)


def test_llm_rank_hand_computed_gradient():
    # dL/ds_i = (1/|P|) * sum over pairs of (sigmoid(d_ij) - y_ij) * (+1 for i, -1 for j).
    logits = t([[2.0, 0.0, 1.0]], requires_grad=True)
    llm_rank_loss(logits, t([[0.5, 1.5, 1.0]])).backward()
    sig = torch.sigmoid
    g01, g02, g12 = sig(t(2.0)) - 1, sig(t(1.0)) - 1, sig(t(-1.0)) - 0
    expected = torch.stack([g01 + g02, -g01 + g12, -g02 - g12]) / 3
    torch.testing.assert_close(logits.grad[0], expected, atol=1e-12, rtol=0)


def test_llm_rank_is_float32_equal_to_float64():
    loss = llm_rank_loss(t([[2.0, 0.0, 1.0]], dtype=torch.float32), t([[0.5, 1.5, 1.0]], dtype=torch.float32))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(RANK_EXPECTED, abs=1e-6)


def test_llm_rank_ties_are_skipped():
    # NLL = [0.5, 0.5, 1.0]: the tied pair (0, 1) is skipped (it is NOT a negative with y = 0).
    #   (0, 2): d = 1,  y = 1: softplus(-1) = 0.3132616875
    #   (1, 2): d = -1, y = 1: softplus(1)  = 1.3132616875
    #   mean over the 2 remaining pairs = 1.6265233750 / 2 = 0.8132616875
    loss = llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, 0.5, 1.0]]))
    assert loss.item() == pytest.approx(0.8132616875, abs=1e-9)
    # Counting the tie as a y = 0 pair (softplus(2) = 2.1269280110) would give (1.6265233750 + 2.1269280110) / 3.
    assert loss.item() != pytest.approx((1.6265233750 + 2.1269280110) / 3, abs=1e-3)


def test_llm_rank_tied_row_changes_nothing():
    # An all-tied row adds no pairs, so it does not dilute the mean of the other rows.
    alone = llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, 1.5, 1.0]]))
    with_tied = llm_rank_loss(t([[2.0, 0.0, 1.0], [5.0, -3.0, 0.0]]), t([[0.5, 1.5, 1.0], [0.7, 0.7, 0.7]]))
    assert with_tied.item() == pytest.approx(alone.item(), abs=1e-12)
    assert with_tied.item() == pytest.approx(RANK_EXPECTED, abs=1e-9)


def test_llm_rank_all_tied_is_zero_with_grad_path():
    logits = t([[2.0, 0.0, 1.0], [1.0, 3.0, -1.0]], requires_grad=True)
    loss = llm_rank_loss(logits, t([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_llm_rank_stable_for_huge_logit_gaps():
    # d = 1e4 - (-1e4) = 2e4 on a wrongly ordered pair (NLL_0 > NLL_1, y = 0): loss = softplus(2e4) = 2e4 exactly
    # in floating point; the gradient is sigmoid(d) - y = 1 on s_0 and -1 on s_1.
    for dtype in (torch.float32, torch.float64):
        logits = t([[1e4, -1e4]], dtype=dtype, requires_grad=True)
        loss = llm_rank_loss(logits, t([[2.0, 1.0]], dtype=dtype))
        assert torch.isfinite(loss)
        assert loss.item() == pytest.approx(2e4, rel=1e-6)
        loss.backward()
        assert torch.isfinite(logits.grad).all()
        torch.testing.assert_close(logits.grad, t([[1.0, -1.0]], dtype=dtype))
        # The naive form -log(1 - sigmoid(d)) of the same pair is infinite: sigmoid(2e4) rounds to 1.
        naive = -torch.log(1 - torch.sigmoid(t(2e4, dtype=dtype)))
        assert torch.isinf(naive)

    # Correctly ordered: softplus(-2e4) = 0, with zero (finite) gradients.
    logits = t([[1e4, -1e4]], dtype=torch.float32, requires_grad=True)
    loss = llm_rank_loss(logits, t([[1.0, 2.0]], dtype=torch.float32))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_llm_rank_masked_entries_ignored():
    logits = t([[2.0, 0.0, 1.0, 100.0]], requires_grad=True)
    nll = t([[0.5, 1.5, 1.0, -5.0]])  # the masked document would dominate every pair it is in
    mask = torch.tensor([[True, True, True, False]])
    loss = llm_rank_loss(logits, nll, mask=mask)
    assert loss.item() == pytest.approx(RANK_EXPECTED, abs=1e-9)
    loss.backward()
    assert logits.grad[0, 3].item() == 0.0
    reference = t([[2.0, 0.0, 1.0]], requires_grad=True)
    llm_rank_loss(reference, t([[0.5, 1.5, 1.0]])).backward()
    torch.testing.assert_close(logits.grad[:, :3], reference.grad, atol=1e-12, rtol=0)


def test_llm_rank_pairs_pooled_over_batch():
    # Row 2: s = [0, 1], NLL = [1, 2] -> one pair, d = -1, y = 1: softplus(1) = 1.3132616875.
    # The mean is over all 3 + 1 pairs of the batch: (0.7534513860 + 1.3132616875) / 4 = 0.5166782684.
    logits = t([[2.0, 0.0, 1.0], [0.0, 1.0, 7.0]])
    nll = t([[0.5, 1.5, 1.0], [1.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert llm_rank_loss(logits, nll, mask=mask).item() == pytest.approx(0.5166782684, abs=1e-9)


def test_llm_rank_in_batch_negatives_hand_computed():
    # Own s = [2, 0, 1], NLL = [0.5, 1.5, 1.0] (the first mean: RANK_EXPECTED); M = 2 negatives, s_m = [0.5, 3].
    # Negative pairs (i, m), target 1: softplus(-(s_i - s_m)) for margins
    #   i=0: 1.5, -1;  i=1: -0.5, -3;  i=2: 0.5, -2
    #   softplus(-1.5) = 0.2014132779, softplus(1) = 1.3132616875, softplus(0.5) = 0.9740769842,
    #   softplus(3) = 3.0485873516, softplus(-0.5) = 0.4740769842, softplus(2) = 2.1269280110
    #   mean = 8.1383442964 / 6 = 1.3563907161;  total = 0.2511504620 + 1.3563907161 = 1.6075411781
    margins = [1.5, -1.0, -0.5, -3.0, 0.5, -2.0]
    assert sum(softplus(-m) for m in margins) / 6 == pytest.approx(1.3563907161, abs=1e-9)
    own = t([[2.0, 0.0, 1.0]], requires_grad=True)
    negatives = t([[0.5, 3.0]], requires_grad=True)
    loss = llm_rank_loss(own, t([[0.5, 1.5, 1.0]]), negative_logits=negatives)
    assert loss.item() == pytest.approx(1.6075411781, abs=1e-9)
    # Empty negatives change nothing; descent lowers every negative's logit and raises the own documents' total.
    assert llm_rank_loss(own, t([[0.5, 1.5, 1.0]]), negative_logits=t([[]]).view(1, 0)).item() == pytest.approx(
        RANK_EXPECTED, abs=1e-9
    )
    loss.backward()
    assert (negatives.grad > 0).all() and own.grad.sum().item() < 0


def test_llm_rank_negatives_do_not_dilute_the_llm_preference():
    # Negatives far below every own document (margins of 40 in logits) add ~0 loss and ~0 gradient: the gradient on
    # the own documents is the one without negatives, however many negatives there are.
    own = t([[2.0, 0.0, 1.0]], requires_grad=True)
    llm_rank_loss(own, t([[0.5, 1.5, 1.0]])).backward()
    alone = own.grad.clone()
    own.grad = None
    far = torch.full((1, 50), -40.0, dtype=torch.float64)
    loss = llm_rank_loss(own, t([[0.5, 1.5, 1.0]]), negative_logits=far)
    assert loss.item() == pytest.approx(RANK_EXPECTED, abs=1e-9)
    loss.backward()
    torch.testing.assert_close(own.grad, alone, atol=1e-15, rtol=0)


def test_llm_rank_negative_identical_to_an_own_document_adds_no_gradient():
    # The same passage among another question's candidates: equal scores, and the two sides of its pair cancel.
    from jmlr_hf.trainer import split_in_batch_scores

    query = t([[1.0, 0.0]], requires_grad=True)
    docs = t([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])  # question 1's candidates: docs 2-3 (doc 3 = doc 0)
    scores = (query @ docs.T).repeat(2, 1)  # [B = 2, B * N = 4], both rows the same query for the arithmetic
    own, negatives = split_in_batch_scores(scores, 2)
    loss = llm_rank_loss(own[:1], t([[0.5, 1.0]]), negative_logits=negatives[:1, 1:])  # only the duplicate
    assert loss.item() > 0
    (grad,) = torch.autograd.grad(loss - llm_rank_loss(own[:1], t([[0.5, 1.0]])), query)
    # The negative term's gradient: pairs (doc 0, doc 3) cancel exactly; (doc 1, doc 3) does not.
    margins_grad = torch.sigmoid(-(own[0, 1] - negatives[0, 1])).item()
    expected = -0.5 * margins_grad * (docs[1] - docs[3])
    assert expected.abs().sum() > 0
    torch.testing.assert_close(grad[0], expected.detach(), atol=1e-12, rtol=0)


# The pair-shaping options on the same example. Gaps |NLL_i - NLL_j|: (0, 1) 1.0, (0, 2) 0.5, (1, 2) 0.5 (all exact
# in binary floating point). Per-pair losses as above: 0.1269280110, 0.3132616875, 0.3132616875.


def test_llm_rank_min_nll_gap_keeps_only_pairs_above_it():
    # δ = 0.5: the two pairs at exactly 0.5 are dropped (strictly greater), (0, 1) is left: softplus(-2).
    assert llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, 1.5, 1.0]]), min_nll_gap=0.5).item() == pytest.approx(
        0.1269280110, abs=1e-9
    )
    # δ just below 0.5 keeps all three: the paper's mean.
    assert llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, 1.5, 1.0]]), min_nll_gap=0.4999).item() == pytest.approx(
        RANK_EXPECTED, abs=1e-9
    )
    # δ = 0 is the default exactly (ties still skipped).
    assert llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, 0.5, 1.0]]), min_nll_gap=0.0).item() == pytest.approx(
        0.8132616875, abs=1e-9
    )


def test_llm_rank_min_nll_gap_above_every_pair_is_zero_with_grad_path():
    logits = t([[2.0, 0.0, 1.0]], requires_grad=True)
    loss = llm_rank_loss(logits, t([[0.5, 1.5, 1.0]]), min_nll_gap=1.0)  # the largest gap is 1.0: nothing left
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_llm_rank_nll_gap_weighting_hand_computed():
    # (1.0 * 0.1269280110 + 0.5 * 0.3132616875 + 0.5 * 0.3132616875) / (1.0 + 0.5 + 0.5) = 0.2200948493
    logits = t([[2.0, 0.0, 1.0]], requires_grad=True)
    loss = llm_rank_loss(logits, t([[0.5, 1.5, 1.0]]), weight_by_nll_gap=True)
    assert loss.item() == pytest.approx((0.1269280110 + 0.3132616875) / 2, abs=1e-9)
    # dL/ds_i = sum over pairs of w_ij (sigmoid(d_ij) - y_ij) (+1 for i, -1 for j) / sum of w.
    loss.backward()
    sig = torch.sigmoid
    g01, g02, g12 = 1.0 * (sig(t(2.0)) - 1), 0.5 * (sig(t(1.0)) - 1), 0.5 * (sig(t(-1.0)) - 0)
    expected = torch.stack([g01 + g02, -g01 + g12, -g02 - g12]) / 2.0
    torch.testing.assert_close(logits.grad[0], expected, atol=1e-12, rtol=0)


def test_llm_rank_nll_gap_weighting_shrinks_a_near_tie_against_a_decisive_pair():
    # Two questions, one pair each, both wrongly ordered by 1 logit: a decisive pair (gap 1.0) and a near-tie (gap
    # 0.01). Uniform: equal gradients. Weighted by the gap: the near-tie gets 1/100 of the decisive pair's.
    logits = t([[0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    nll = t([[1.0, 2.0], [1.0, 1.01]])
    llm_rank_loss(logits, nll).backward()
    assert logits.grad[0, 0].item() == pytest.approx(logits.grad[1, 0].item(), rel=1e-12)
    logits.grad = None
    llm_rank_loss(logits, nll, weight_by_nll_gap=True).backward()
    assert logits.grad[1, 0].item() / logits.grad[0, 0].item() == pytest.approx(0.01, rel=1e-6)


def test_llm_rank_options_combine_and_ignore_masked_pairs():
    # δ = 0.6 leaves (0, 1) alone, whatever the weighting; the masked 4th document (gap 6.5 to the others) adds nothing.
    logits, nll = t([[2.0, 0.0, 1.0, 9.0]]), t([[0.5, 1.5, 1.0, 7.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss = llm_rank_loss(logits, nll, mask=mask, min_nll_gap=0.6, weight_by_nll_gap=True)
    assert loss.item() == pytest.approx(0.1269280110, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_nll_gap": -0.1}, "min_nll_gap must be a finite number >= 0, got -0.1"),
        ({"min_nll_gap": math.inf}, "min_nll_gap must be a finite number >= 0, got inf"),
    ],
)
def test_llm_rank_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, 1.5, 1.0]]), **kwargs)


def test_llm_rank_options_keep_a_nan_nll_nan():
    for kwargs in ({"min_nll_gap": 0.2}, {"weight_by_nll_gap": True}):
        assert math.isnan(llm_rank_loss(t([[2.0, 0.0, 1.0]]), t([[0.5, math.nan, 1.0]]), **kwargs).item())


@pytest.mark.parametrize("name", ["llm_rank", "lsr", "ppl_distill"])
def test_no_gradient_into_nll(name):
    logits = t([[2.0, 0.0, 1.0]], requires_grad=True)
    nll = t([[0.5, 1.5, 1.0]], requires_grad=True)
    loss = RETRIEVAL_LOSSES[name](logits, nll)
    assert loss.item() > 0
    (grad_nll,) = torch.autograd.grad(loss, nll, allow_unused=True, retain_graph=True)
    assert grad_nll is None
    loss.backward()
    assert nll.grad is None
    assert logits.grad is not None and logits.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------------
# lsr_loss = KL(P_R || Q_LM)
# ---------------------------------------------------------------------------------------------------------------------

# 3 documents: logits s = [1, 0, -1], NLL = [0.2, 1.0, 0.5], beta = 1.
#   P_R = softmax(s) = [e, 1, 1/e] / 4.0861612696 = [0.6652409558, 0.2447284711, 0.0900305732]
#   Q_LM = softmax(-NLL) = [e^-0.2, e^-1, e^-0.5] / 1.7931408540 = [0.4565903182, 0.2051592547, 0.3382504271]
#   KL(P || Q) = 0.6652409558 * ln(0.6652409558 / 0.4565903182)    =  0.2503719387
#              + 0.2447284711 * ln(0.2447284711 / 0.2051592547)    =  0.0431609947
#              + 0.0900305732 * ln(0.0900305732 / 0.3382504271)    = -0.1191678172
#              = 0.1743651162
#   KL(Q || P) = 0.4565903182 * ln(0.4565903182 / 0.6652409558)    = -0.1718436037
#              + 0.2051592547 * ln(0.2051592547 / 0.2447284711)    = -0.0361824575
#              + 0.3382504271 * ln(0.3382504271 / 0.0900305732)    =  0.4477208534
#              = 0.2396947922
S3 = [[1.0, 0.0, -1.0]]
NLL3 = [[0.2, 1.0, 0.5]]
LSR_EXPECTED = 0.1743651162
PPL_EXPECTED = 0.2396947922


def test_lsr_hand_computed():
    assert lsr_loss(t(S3), t(NLL3)).item() == pytest.approx(LSR_EXPECTED, abs=1e-9)


def test_lsr_lm_temperature():
    # beta = 2 on NLL x 2 is the same Q_LM.
    nll_doubled = t(NLL3) * 2
    assert lsr_loss(t(S3), nll_doubled, lm_temperature=2.0).item() == pytest.approx(LSR_EXPECTED, abs=1e-9)
    assert lsr_loss(t(S3), nll_doubled).item() != pytest.approx(LSR_EXPECTED, abs=1e-3)


def test_lsr_matches_torch_kl_div():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=gen, dtype=torch.float64) * 3
    nll = torch.rand(4, 5, generator=gen, dtype=torch.float64) * 4
    log_p, log_q = F.log_softmax(logits, -1), F.log_softmax(-nll / 0.7, -1)
    # kl_div(input, target) = sum target * (log target - input): KL(target || input), here KL(P || Q).
    expected = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    assert lsr_loss(logits, nll, lm_temperature=0.7).item() == pytest.approx(expected.item(), abs=1e-10)


def test_lsr_masked_entry_equals_removed_entry():
    logits = t([[1.0, 0.0, 9.0, -1.0]], requires_grad=True)
    nll = t([[0.2, 1.0, -3.0, 0.5]])
    mask = torch.tensor([[True, True, False, True]])
    loss = lsr_loss(logits, nll, mask=mask)
    assert loss.item() == pytest.approx(LSR_EXPECTED, abs=1e-9)
    loss.backward()
    assert logits.grad[0, 2].item() == 0.0


def test_lsr_in_batch_negatives_hand_computed():
    # Own logits [0, 0], NLL [0, 0]; M = 2 negatives with logits [0, 0]; negative_mass m = 0.1.
    #   P_R = [1/4, 1/4 | 1/4, 1/4]
    #   Q_LM = [(1 - m)/2, (1 - m)/2 | m/2, m/2] = [0.45, 0.45 | 0.05, 0.05]
    #   KL = 2 * 0.25 * ln(0.25/0.45) + 2 * 0.25 * ln(0.25/0.05) = 0.5 * (-0.5877866649) + 0.5 * 1.6094379124
    #      = 0.5108256238
    loss = lsr_loss(t([[0.0, 0.0]]), t([[0.0, 0.0]]), negative_logits=t([[0.0, 0.0]]), negative_mass=0.1)
    assert loss.item() == pytest.approx(0.5108256238, abs=1e-9)


def test_lsr_negatives_receive_total_mass_negative_mass():
    # With P_R one-hot on document k (its logit 200 above all others), KL(P_R || Q_LM) = -log Q_LM(k): the loss
    # reads each document's LM-side mass. The M negatives must get negative_mass / M each (summing to
    # negative_mass) and the sampled documents (1 - negative_mass) * softmax(-NLL / beta).
    own_nll = t([[0.2, 1.0, 0.5]])
    num_own, num_neg, mass = 3, 4, 0.02
    q_mass = []
    for k in range(num_own + num_neg):
        all_logits = torch.zeros(1, num_own + num_neg, dtype=torch.float64)
        all_logits[0, k] = 200.0
        loss = lsr_loss(all_logits[:, :num_own], own_nll, negative_logits=all_logits[:, num_own:], negative_mass=mass)
        q_mass.append(math.exp(-loss.item()))
    expected_own = (1 - mass) * torch.softmax(-own_nll[0], -1)
    torch.testing.assert_close(t(q_mass[:num_own]), expected_own, atol=1e-9, rtol=0)
    torch.testing.assert_close(t(q_mass[num_own:]), torch.full((num_neg,), mass / num_neg, dtype=torch.float64))
    assert sum(q_mass[num_own:]) == pytest.approx(mass, abs=1e-12)
    assert sum(q_mass) == pytest.approx(1.0, abs=1e-9)


def test_lsr_pushes_negative_logits_down():
    own = t([[1.0, 0.5, -0.5]], requires_grad=True)
    negatives = t([[0.8, 0.3, -1.0, 0.0]], requires_grad=True)
    lsr_loss(own, t([[0.2, 1.0, 0.5]]), negative_logits=negatives, negative_mass=1e-3).backward()
    # Gradient descent lowers every negative's logit; the sum of all logit gradients of a softmax is 0.
    assert (negatives.grad > 0).all()
    assert (own.grad.sum() + negatives.grad.sum()).item() == pytest.approx(0.0, abs=1e-12)
    # A gradient step indeed lowers the loss and the negatives' share of P_R.
    with torch.no_grad():
        p_neg_before = torch.softmax(torch.cat([own, negatives], -1), -1)[0, 3:].sum()
        p_neg_after = torch.softmax(torch.cat([own - 0.1 * own.grad, negatives - 0.1 * negatives.grad], -1), -1)
        assert p_neg_after[0, 3:].sum() < p_neg_before


def test_lsr_empty_negatives_is_plain_lsr():
    loss = lsr_loss(t(S3), t(NLL3), negative_logits=torch.zeros(1, 0, dtype=torch.float64))
    assert loss.item() == pytest.approx(LSR_EXPECTED, abs=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# ppl_distill_loss = KL(Q_LM || P_R)
# ---------------------------------------------------------------------------------------------------------------------


def test_ppl_distill_hand_computed():
    assert ppl_distill_loss(t(S3), t(NLL3)).item() == pytest.approx(PPL_EXPECTED, abs=1e-9)


def test_ppl_distill_differs_from_lsr_on_asymmetric_example():
    lsr = lsr_loss(t(S3), t(NLL3)).item()
    ppl = ppl_distill_loss(t(S3), t(NLL3)).item()
    assert abs(lsr - ppl) > 0.06  # 0.1743651162 vs 0.2396947922
    # ... and they agree when P_R = Q_LM (both KLs are 0).
    assert lsr_loss(-t(NLL3), t(NLL3)).item() == pytest.approx(0.0, abs=1e-12)
    assert ppl_distill_loss(-t(NLL3), t(NLL3)).item() == pytest.approx(0.0, abs=1e-12)


def test_ppl_distill_matches_torch_kl_div():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, generator=gen, dtype=torch.float64) * 3
    nll = torch.rand(4, 5, generator=gen, dtype=torch.float64) * 4
    log_p, log_q = F.log_softmax(logits, -1), F.log_softmax(-nll / 0.7, -1)
    expected = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")  # KL(Q || P)
    assert ppl_distill_loss(logits, nll, lm_temperature=0.7).item() == pytest.approx(expected.item(), abs=1e-10)


def test_ppl_distill_masked_entry_equals_removed_entry():
    logits = t([[1.0, 0.0, 9.0, -1.0]], requires_grad=True)
    nll = t([[0.2, 1.0, -3.0, 0.5]])
    loss = ppl_distill_loss(logits, nll, mask=torch.tensor([[True, True, False, True]]))
    assert loss.item() == pytest.approx(PPL_EXPECTED, abs=1e-9)
    loss.backward()
    assert logits.grad[0, 2].item() == 0.0


def test_ppl_distill_negatives_only_in_p_normalisation():
    # Own logits [0, 0], NLL [0, 0], negatives [0, 0]: Q_LM = [1/2, 1/2] (no mass on negatives),
    # P_R(own) = [1/4, 1/4] (normalised over all 4). KL = 2 * 0.5 * ln(0.5 / 0.25) = ln 2 = 0.6931471806.
    own = t([[0.0, 0.0]], requires_grad=True)
    negatives = t([[0.0, 0.0]], requires_grad=True)
    loss = ppl_distill_loss(own, t([[0.0, 0.0]]), negative_logits=negatives)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)
    loss.backward()
    # dL/ds_k = P_R(k) - Q_LM(k): negatives 1/4 - 0 (pushed down), own 1/4 - 1/2 (pushed up).
    torch.testing.assert_close(negatives.grad, t([[0.25, 0.25]]))
    torch.testing.assert_close(own.grad, t([[-0.25, -0.25]]))


def test_ppl_distill_negatives_identity():
    # Since sum Q = 1: KL(Q || P_all) = KL(Q || P_own) - log(Z_own / Z_all) for P_all normalised over own+negatives.
    gen = torch.Generator().manual_seed(2)
    own = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    neg = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    nll = torch.rand(3, 4, generator=gen, dtype=torch.float64)
    log_share = torch.logsumexp(own, -1) - torch.logsumexp(torch.cat([own, neg], -1), -1)  # log(Z_own / Z_all)
    expected = ppl_distill_loss(own, nll) - log_share.mean()
    assert ppl_distill_loss(own, nll, negative_logits=neg).item() == pytest.approx(expected.item(), abs=1e-10)


# ---------------------------------------------------------------------------------------------------------------------
# pairwise_agreement
# ---------------------------------------------------------------------------------------------------------------------


def test_pairwise_agreement_values():
    logits = t([[3.0, 2.0, 1.0]])
    assert pairwise_agreement(logits, t([[1.0, 2.0, 3.0]])).item() == 1.0  # same order
    assert pairwise_agreement(logits, t([[3.0, 2.0, 1.0]])).item() == 0.0  # reversed
    # NLL [1, 3, 2]: pairs (0,1) and (0,2) agree, (1,2) does not -> 2/3.
    assert pairwise_agreement(logits, t([[1.0, 3.0, 2.0]])).item() == pytest.approx(2 / 3)
    # Tied NLL pairs are left out: NLL [1, 1, 2] -> pairs (0,2), (1,2), both agree.
    assert pairwise_agreement(logits, t([[1.0, 1.0, 2.0]])).item() == 1.0


def test_pairwise_agreement_nan_when_all_tie():
    assert torch.isnan(pairwise_agreement(t([[3.0, 2.0, 1.0]]), t([[1.5, 1.5, 1.5]])))


def test_pairwise_agreement_mask():
    # The masked last document would make two disagreeing pairs.
    value = pairwise_agreement(
        t([[3.0, 2.0, 1.0, 9.0]]), t([[1.0, 2.0, 3.0, 5.0]]), mask=torch.tensor([[True, True, True, False]])
    )
    assert value.item() == 1.0


@pytest.mark.parametrize("name", [*sorted(RETRIEVAL_LOSSES), "llm_rank[nll_gap]"])
@pytest.mark.parametrize("tau", [0.05, 1.0])
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_descending_each_loss_orders_the_scores_as_the_llm_prefers(name, tau, beta):
    """The defect hunt's constructed case: whatever the loss and its temperatures, gradient descent on the retriever's
    scores (cosine-like, 0.5 ± 0.05, in the reverse of the LLM's order) ends with the documents ordered by the LLM's
    answer NLL, lowest first. NLL gaps of 0.1-0.3 nats, as between MedQuAD candidates. (The first step need not
    raise the best document: the KL losses' gradient also depends on where P_R stands against the target.)"""
    nll = torch.tensor([[2.1, 1.8, 2.4, 1.9, 2.0]], dtype=torch.float64)
    scores = (0.5 + 0.01 * nll).clone().requires_grad_()  # higher NLL, higher score: the reverse order
    loss_fn = RETRIEVAL_LOSSES[name.split("[")[0]]
    kwargs = {"lm_temperature": beta}
    if name.startswith("llm_rank"):  # β is not a knob of llm_rank; its pair weighting is
        kwargs = {"weight_by_nll_gap": True} if name == "llm_rank[nll_gap]" else {}
    for _ in range(400):
        (grad,) = torch.autograd.grad(loss_fn(scores / tau, nll, **kwargs), scores)
        with torch.no_grad():
            scores -= 0.25 * tau * grad
    assert torch.argsort(scores[0], descending=True).tolist() == torch.argsort(nll[0]).tolist()
