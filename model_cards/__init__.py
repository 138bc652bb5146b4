"""The card templates of jmlr_hf (Jinja, rendered by `jmlr_hf.hub.model_card`).

This folder is the source of the packaged templates: pyproject.toml installs it as the package
`jmlr_hf.hub.templates`, where `importlib.resources` finds the files in a wheel, an editable or a `--user` install.
"""
