"""OpenAI's Responses in the core: conversations of items, their output, and the store that keeps them."""
