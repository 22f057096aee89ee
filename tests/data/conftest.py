"""Fixtures for the data pipeline tests (helpers live in data_fixtures.py, importable by name)."""

from __future__ import annotations

import pytest
from data_fixtures import train_chat_tokenizer
from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="session")
def chat_tokenizer() -> PreTrainedTokenizerFast:
    return train_chat_tokenizer()


@pytest.fixture(scope="session")
def image_token_id(chat_tokenizer) -> int:
    return chat_tokenizer.convert_tokens_to_ids("<image>")
