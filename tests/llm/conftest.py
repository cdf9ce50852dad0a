"""Fixtures of the LLM attribution tests: the trained toy LM (see ``_toy.py``)."""

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


@pytest.fixture(scope="session")
def toy():
    """``(model, tokenizer)``: the trained key-value toy LM, in eval mode."""
    from llm._toy import model_and_tokenizer

    return model_and_tokenizer()


#: prompts of the toy language and the keys their two generated values come from
PROMPT = "d3 K5 d1 <unk> K2 d0 ?"  # -> "V5 V2 ."


@pytest.fixture
def prompt():
    return PROMPT
