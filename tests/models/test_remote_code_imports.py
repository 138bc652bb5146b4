"""The remote code of a saved model needs only what transformers itself needs (issue 23, item 7).

`from_pretrained(id, trust_remote_code=True)` runs transformers' `check_imports` on every remote-code file before
loading it, and that check counts every `import` it finds, function-level ones included (only those inside a `try`
block, or under an `if is_..._available()` test, are left out). A library imported anywhere else in those files is
required to *load* the model, even when only retrieval uses it. The test asks transformers' own `get_imports`, on
each Python file that `save_pretrained` writes, so it follows whatever rule the installed transformers applies.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest
from transformers.dynamic_module_utils import get_imports

from jmlr_hf.models import save_model

pytestmark = pytest.mark.usefixtures("single_thread")


def distribution_modules(distribution: str) -> set[str]:
    """The top-level modules of `distribution`'s unconditional requirements (those without an `extra ==` marker):
    what every install of it brings, hence what a transformers user has."""
    names = set()
    for requirement in requires(distribution) or []:
        if "extra ==" in requirement:
            continue
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)[0]
        names.add(name.lower().replace("-", "_"))
    return names


def test_every_remote_code_file_imports_only_what_transformers_and_torch_bring(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    saved = Path(save_model(make_tiny_model(0), generator_tokenizer, retriever_tokenizer, tmp_path / "model"))
    remote_code = sorted(saved.glob("*.py"))
    assert {path.name for path in remote_code} >= {"configuration_jmlr.py", "modeling_jmlr.py", "retrieval_jmlr.py"}
    available = (
        set(sys.stdlib_module_names)
        | {"torch", "transformers"}
        | distribution_modules("transformers")
        | distribution_modules("torch")
    )
    needed = {path.name: sorted(set(get_imports(path)) - available) for path in remote_code}
    assert needed == {path.name: [] for path in remote_code}, (
        "loading the model by Hub id would require these libraries (transformers' check_imports counts imports "
        f"outside try blocks, in functions too): {needed}"
    )
