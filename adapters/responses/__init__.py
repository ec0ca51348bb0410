"""OpenAI's Responses API (/v1/responses): JSON and semantic SSE events over the core's ResponseService."""
