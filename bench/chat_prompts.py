"""The prompts every benchmark sends: the same rendered chat text for every engine."""

from __future__ import annotations

# The GGUF's own chat template (ChatML with this default system message), rendered once so that every engine
# sees byte-identical prompt text. Questions ask for long answers so greedy decoding does not hit EOS early.
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTIONS = (
    "Explain in detail how a steam engine works.",
    "Describe the water cycle step by step.",
    "What were the main causes of the French Revolution?",
    "How do vaccines train the immune system?",
    "Give me detailed tips for learning a new programming language.",
    "Describe the life cycle of a star.",
    "What should I pack for a week-long hiking trip?",
    "Explain how the internet works to a beginner.",
)


def render_prompt(question: str, request_number: int = 0) -> str:
    """ChatML as produced by the model's template with add_generation_prompt=True.

    The user message starts with a request number, so no two requests share more than the system message and
    the user header: a server's prefix cache can save that much and no more.
    """
    return (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\nRequest {request_number:04d}. {question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
