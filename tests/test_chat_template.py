"""Chat prompts come from the model's own template, rendered in Jinja's sandbox."""

from __future__ import annotations

import pytest

from inferno.core.chat_template import ChatTemplate
from inferno.core.embedded import embedded_model_path
from inferno.core.engines.llamacpp.model import GgufModel, init_llama_backend
from inferno.errors import InfernoError


@pytest.fixture(scope="module")
def smollm_template() -> ChatTemplate:
    init_llama_backend()
    model = GgufModel(embedded_model_path())
    try:
        source = model.chat_template()
        assert source is not None
        return ChatTemplate(source, model.token_text(model.bos), model.token_text(model.eos))
    finally:
        model.close()


def test_embedded_model_template_renders_chatml_with_its_default_system_message(smollm_template) -> None:
    prompt = smollm_template.render([{"role": "user", "content": "Hi"}])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_given_system_message_replaces_the_default(smollm_template) -> None:
    prompt = smollm_template.render(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert "SmolLM" not in prompt


def test_template_cannot_reach_python_internals() -> None:
    hostile = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}", "", "")
    with pytest.raises(InfernoError) as caught:
        hostile.render([{"role": "user", "content": "x"}])
    assert caught.value.code == "invalid_parameters"


def test_template_raise_exception_becomes_an_invalid_parameters_error() -> None:
    strict = ChatTemplate("{{ raise_exception('roles must alternate') }}", "", "")
    with pytest.raises(InfernoError, match="roles must alternate"):
        strict.render([{"role": "user", "content": "x"}])
