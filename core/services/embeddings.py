"""CreateEmbeddings: inputs to token ids, checked against the model's limits, embedded in batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from inferno.core.runtime.served_model import ServedModel
from inferno.core.services.generation import EngineLookup
from inferno.core.services.request_work import off_loop
from inferno.core.validation import DEFAULT_LIMITS, check_model, check_token_ids
from inferno.errors import InfernoError, invalid_param
from inferno.v1 import common_pb2
from inferno.v1 import inference_service_pb2 as pb

log = logging.getLogger(__name__)

MAX_INPUTS = 2048


async def create_embeddings(
    engine_for: EngineLookup, request: pb.CreateEmbeddingsRequest
) -> pb.CreateEmbeddingsResponse:
    engine = await engine_for(check_model(request.model))
    if not request.inputs:
        raise invalid_param("input", "'input' must hold at least one text or token array")
    if len(request.inputs) > MAX_INPUTS:
        raise invalid_param("input", f"'input' takes at most {MAX_INPUTS} items, got {len(request.inputs)}")
    max_tokens, dimensions = engine.embedding_limits
    if request.HasField("dimensions") and request.dimensions != dimensions:
        raise invalid_param(
            "dimensions",
            f"model '{engine.description.id}' makes {dimensions}-dimensional vectors and cannot shorten "
            "them; leave 'dimensions' out",
        )
    for i, item in enumerate(request.inputs):
        DEFAULT_LIMITS.check_text_size(len(item.text), max_tokens, f"input[{i}]")
    tokenized = await off_loop(_tokenize_inputs, engine, request.inputs, max_tokens)
    vectors = await engine.embed(tokenized)
    count = sum(len(t) for t in tokenized)
    log.info(
        "embeddings model=%s user=%r inputs=%d tokens=%d",
        engine.description.id,
        request.user,
        len(tokenized),
        count,
    )
    return pb.CreateEmbeddingsResponse(
        model=engine.description.id,
        data=[pb.Embedding(index=i, values=v) for i, v in enumerate(vectors)],
        usage=common_pb2.Usage(prompt_tokens=count, total_tokens=count),
    )


def _tokenize_inputs(
    engine: ServedModel, inputs: Sequence[pb.Prompt], max_tokens: int
) -> list[tuple[int, ...]]:
    """Inputs as token ids, each checked against the model's limits; CPU-heavy, so run off the event loop."""
    tokenized: list[tuple[int, ...]] = []
    for i, item in enumerate(inputs):
        if item.WhichOneof("kind") == "tokens":
            tokens = tuple(item.tokens.ids)
            check_token_ids(tokens, engine.description.vocab_size, f"input[{i}]")
        else:
            tokens = tuple(engine.tokenize(item.text))
        if not tokens:
            raise invalid_param(f"input[{i}]", f"'input[{i}]' is empty")
        if len(tokens) > max_tokens:
            raise InfernoError(
                "context_length_exceeded",
                f"input[{i}] has {len(tokens)} tokens; this model embeds at most {max_tokens} per input",
                {
                    "param": f"input[{i}]",
                    "index": str(i),
                    "max_tokens": str(max_tokens),
                    "tokens": str(len(tokens)),
                },
            )
        tokenized.append(tokens)
    return tokenized
