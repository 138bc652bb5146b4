"""The whole-corpus topic metrics of `experiments.corpus_topics`, hand-computed."""

from __future__ import annotations

import pytest

from experiments.corpus_topics import topic_metrics, topic_table


def hit(doc_id: str, title: str) -> dict:
    return {"id": doc_id, "title": title}


def test_topic_metrics_hand_computed():
    rows = [
        {"gold_doc_ids": ["a-2"], "focus": "Asthma"},
        {"gold_doc_ids": ["b-1"], "focus": "Gout"},
    ]
    hits = [
        # gold second; 2 of 4 passages about asthma (titles compared case-insensitively)
        [hit("a-1", "asthma"), hit("a-2", "Asthma"), hit("c-1", "Croup"), hit("d-1", "Dengue")],
        # gold missed; the topic absent from the top 1, present once in the top 4
        [hit("c-2", "Croup"), hit("d-2", "Dengue"), hit("e-1", "Eczema"), hit("b-3", "gout")],
    ]
    metrics = topic_metrics(hits, rows, k_values=(1, 4))
    assert metrics == {
        "corpus_recall@1": 0.0,
        "own_topic_in_top@1": 0.5,
        "own_topic_share@1": 0.5,
        "corpus_recall@4": 0.5,
        "own_topic_in_top@4": 1.0,
        "own_topic_share@4": (2 / 4 + 1 / 4) / 2,
    }
    assert topic_table({"base": metrics}).splitlines()[2].startswith("| base | 0.000 | 0.500 |")


def test_topic_metrics_needs_one_long_enough_hit_list_per_question():
    rows = [{"gold_doc_ids": ["a"], "focus": "A"}]
    with pytest.raises(ValueError, match="one per question"):
        topic_metrics([], rows)
    with pytest.raises(ValueError, match="at least 8 passages"):
        topic_metrics([[hit("a", "A")]], rows)
