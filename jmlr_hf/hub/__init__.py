"""Publishing to the Hugging Face Hub: a JMLR model (with its index as its own repository), an index, a data set,
each in one commit ([`push_model`], [`push_index`], [`push_dataset_folder`], [`pull`]); and their cards
(`model_card`, templates in `templates/`, whose source is the repository's `model_cards/`)."""

from .model_card import (
    card_template_path,
    eval_results_from_evaluation,
    eval_results_from_metrics,
    render_dataset_card,
    render_index_card,
    render_model_card,
)
from .push import HubError, PushResult, pull, push_dataset_folder, push_index, push_model

__all__ = [
    "HubError",
    "PushResult",
    "card_template_path",
    "eval_results_from_evaluation",
    "eval_results_from_metrics",
    "pull",
    "push_dataset_folder",
    "push_index",
    "push_model",
    "render_dataset_card",
    "render_index_card",
    "render_model_card",
]
