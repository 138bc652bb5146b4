"""Tiny random JMLR models and toy rows for fast unit tests (real tokenizers, random 2-layer Llama and BERT)."""

from __future__ import annotations

from transformers import BertConfig, LlamaConfig

from jmlr_hf import JMLRConfig


def tiny_config(generator_tokenizer, retriever_tokenizer, **retrieval_kwargs) -> JMLRConfig:
    generator = LlamaConfig(
        vocab_size=len(generator_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=generator_tokenizer.pad_token_id,
        eos_token_id=generator_tokenizer.eos_token_id,
        bos_token_id=generator_tokenizer.bos_token_id,
    )
    retriever = BertConfig(
        vocab_size=retriever_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    defaults = {
        "num_candidates": 4,
        "num_sampled": 3,
        "num_context_documents": 2,
        "max_document_length": 32,
        "max_query_length": 32,
        "max_length": 256,
    }
    defaults.update(retrieval_kwargs)
    return JMLRConfig(generator=generator, retriever=retriever, **defaults)


class BosTokenizer:
    """The generator tokenizer, prepending a BOS token as Llama's does (SmolLM2's adds none)."""

    bos_token_id = 1

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eos_token_id, self.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.pad_token, self.eos_token = tokenizer.pad_token, tokenizer.eos_token

    def __call__(self, text, add_special_tokens=True, **kwargs):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}

    def decode(self, ids, **kwargs) -> str:
        return self.tokenizer.decode(ids, **kwargs)


#: Six one-sentence medical passages: the corpus file of the recipe tests.
RECIPE_CORPUS = [
    "Intramuscular epinephrine is the first-line treatment of anaphylaxis.",
    "Iron deficiency causes a microcytic anemia with a low ferritin.",
    "Hyperkalemia produces peaked T waves on the ECG.",
    "A midshaft humerus fracture can injure the radial nerve.",
    "The kidney filters the blood and makes urine.",
    "The pancreas secretes insulin from its beta cells.",
]

TOY_ROWS = [
    {
        "id": "q1",
        "question": "Does aspirin reduce the risk of heart attack?",
        "options": [],
        "answer": "yes",
        "rationale": "Aspirin lowers the risk of a first heart attack.",
        "candidates": [
            "Aspirin lowers the risk of a first heart attack in adults.",
            "The liver stores glycogen.",
            "Insulin is made by the pancreas.",
            "Bones contain calcium.",
        ],
    },
    {
        "id": "q2",
        "question": "Which organ makes insulin?",
        "options": ["Liver", "Pancreas", "Kidney", "Spleen"],
        "answer": "B",
        "rationale": "Beta cells of the pancreas secrete insulin.",
        "candidates": [
            "The kidney filters blood.",
            "Beta cells of the pancreas secrete insulin.",
            "The spleen removes old red cells.",
            "The liver makes bile.",
        ],
    },
]
