"""Plots of a training run (matplotlib, PNG)."""

from __future__ import annotations

from collections.abc import Sequence

CURVES = (
    ("lm_loss", "LM loss"),
    ("retrieval_loss", "retrieval loss"),
    ("retrieval_agreement", "retriever/LLM pairwise agreement"),
    ("lm_best_is_retriever_top1", "LLM's best sampled doc = retriever's top 1"),
)


def plot_training_curves(log_history: Sequence[dict], path: str, title: str = "JMLR joint training") -> list[str]:
    """One panel per logged JMLR metric against the step; returns the metrics it drew."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [(key, label) for key, label in CURVES if any(key in entry for entry in log_history)]
    if not present:
        raise ValueError("the log history has none of the JMLR metrics; was logging_steps set?")
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], present, strict=True):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key == "retrieval_agreement":
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [key for key, _ in present]
