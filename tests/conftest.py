import pytest

from tests.helpers import tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Gemma 3 text model + tokenizer folder, built once per test session."""
    return tiny_model(tmp_path_factory)
