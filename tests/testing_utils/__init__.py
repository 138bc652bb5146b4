"""Helpers of the test suites: the stand-in Hub (`hub_server`), tiny models and toy rows (`models`), and the pytest
fixtures (`fixtures`, a plugin loaded by the root `conftest.py`). Importing this package imports no Hugging Face
library: the fixtures must point them at the stand-in Hub first."""
