"""POST /v1/embeddings on the embedded GGUF model through llama.cpp's embedding mode (mean pooling,
L2-normalized): OpenAI's shapes, batching, limits, and values checked against llama.cpp run independently."""

from __future__ import annotations

import base64
import struct

import grpc
import httpx
import numpy as np
import pytest
from llama_cpp import Llama
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from inferno.core.embedded import embedded_model_path
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc

SENTENCES = [
    "The cat sat on the mat.",
    "A dog is running in the park.",
    "Quantum computers use qubits.",
    "Paris is the capital of France.",
]


def _cosine(a: list[float], b: list[float]) -> float:
    x, y = np.array(a), np.array(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_embeddings_in_openais_shape_are_unit_vectors(openai_client: OpenAI, model_id: str) -> None:
    reply = openai_client.embeddings.create(model=model_id, input=SENTENCES, encoding_format="float")
    assert [d.index for d in reply.data] == [0, 1, 2, 3]
    assert reply.model == model_id
    vectors = [d.embedding for d in reply.data]
    assert all(len(v) == 576 for v in vectors)  # SmolLM2-135M's hidden size
    assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in vectors)
    assert len({tuple(v) for v in vectors}) == 4
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > len(SENTENCES)


def test_batch_results_equal_single_results_and_match_llama_cpp(openai_client: OpenAI, model_id: str) -> None:
    together = [d.embedding for d in openai_client.embeddings.create(model=model_id, input=SENTENCES).data]
    alone = [openai_client.embeddings.create(model=model_id, input=s).data[0].embedding for s in SENTENCES]
    assert all(_cosine(a, b) > 0.9999 for a, b in zip(together, alone, strict=True))
    reference = Llama(
        str(embedded_model_path()), embedding=True, pooling_type=1, n_ctx=512, n_threads=2, verbose=False
    )
    try:
        expected = [reference.embed(s, normalize=True) for s in SENTENCES]
    finally:
        reference.close()
    assert all(_cosine(a, b) > 0.999 for a, b in zip(together, expected, strict=True))


def test_base64_and_token_inputs(http: httpx.Client, model_id: str) -> None:
    plain = http.post("/v1/embeddings", json={"model": model_id, "input": SENTENCES[0]}).json()
    packed = http.post(
        "/v1/embeddings", json={"model": model_id, "input": SENTENCES[0], "encoding_format": "base64"}
    ).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert np.allclose(decoded, plain["data"][0]["embedding"], atol=1e-6)
    tokens = http.post("/v1/tokenize", json={"content": SENTENCES[0]}).json()["tokens"]
    by_tokens = http.post("/v1/embeddings", json={"model": model_id, "input": [tokens, tokens]}).json()
    assert len(by_tokens["data"]) == 2
    assert _cosine(by_tokens["data"][1]["embedding"], plain["data"][0]["embedding"]) > 0.9999
    assert by_tokens["usage"]["prompt_tokens"] == 2 * len(tokens)


def _decodes(http: httpx.Client, model_id: str) -> float:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "inferno_embedding_decodes_total" and sample.labels["model"] == model_id:
                return sample.value
    return 0.0


def test_many_inputs_share_decodes(http: httpx.Client, model_id: str) -> None:
    before = _decodes(http, model_id)
    inputs = [f"Sentence number {i} about something." for i in range(100)]
    reply = http.post("/v1/embeddings", json={"model": model_id, "input": inputs})
    assert reply.status_code == 200 and len(reply.json()["data"]) == 100
    # At most 64 sequences per decode: 100 short inputs take 2 decodes, not 100.
    assert _decodes(http, model_id) - before == 2


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"input": []}, "invalid_parameters", "input"),
        ({"input": ["ok", ""]}, "invalid_parameters", "input[1]"),
        ({"input": "x", "dimensions": 64}, "invalid_parameters", "dimensions"),
        ({"input": "x", "encoding_format": "hex"}, "invalid_parameters", "encoding_format"),
        ({"input": ["short", "word " * 3000]}, "context_length_exceeded", "input[1]"),
        ({"input": [[1, 2], [99999999]]}, "invalid_parameters", "input[1]"),
    ],
)
def test_bad_embedding_requests_name_the_field(
    http: httpx.Client, model_id: str, body: dict[str, object], code: str, param: str
) -> None:
    reply = http.post("/v1/embeddings", json={"model": model_id, **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == code and error["details"]["param"] == param
    if code == "context_length_exceeded":
        assert error["details"]["index"] == 1


def test_native_dimensions_are_accepted_and_grpc_works(grpc_channel: grpc.Channel, model_id: str) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    reply = stub.CreateEmbeddings(
        pb.CreateEmbeddingsRequest(model=model_id, inputs=[pb.Prompt(text="hello")], dimensions=576)
    )
    assert len(reply.data[0].values) == 576
