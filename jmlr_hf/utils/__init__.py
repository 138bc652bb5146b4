"""Small shared utilities: crash-safe writes (`atomic`), the offline demo models (`demo_models`), training plots
(`plotting`). Nothing here imports the rest of the package."""

from .atomic import atomic_directory, write_json, write_text
from .demo_models import HUB_IDS, minilm_path, resolve_model_path, smollm2_path
from .plotting import plot_training_curves

__all__ = [
    "HUB_IDS",
    "atomic_directory",
    "minilm_path",
    "plot_training_curves",
    "resolve_model_path",
    "smollm2_path",
    "write_json",
    "write_text",
]
