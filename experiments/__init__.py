"""Research code, kept out of the installed `jmlr_hf` package (as transformers keeps RAG's end-to-end retriever
training in `examples/research_projects/`): the JMLR-vs-RAG-vs-SFT experiment (`jmlr_vs_rag`), the retrieval
headroom analysis (`headroom`), their configs (`configs/`), results (`RESULTS.md`, `results/`) and tests (`tests/`).

Run from the repository root: `python -m experiments.jmlr_vs_rag --config experiments/configs/experiment-pubmedqa.yaml`.
"""
