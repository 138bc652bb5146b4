"""pytest's root configuration: the fixtures shared by `tests/` and `experiments/tests/` (see
`tests/testing_utils/fixtures.py`, which also starts the stand-in Hugging Face Hub for the whole session)."""

pytest_plugins = ["tests.testing_utils.fixtures"]
