"""vLLM's tokenizer routes at the root (POST /tokenize, POST /detokenize, GET /tokenizer_info), checked in
vLLM's shapes and by lm-evaluation-harness's local-completions model with its remote tokenizer."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import grpc
import httpx

from inferno.adapters.openapi import DOCUMENT
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc
from tests.servers import RunningServer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a cat?"}]


def test_tokenize_a_prompt_in_vllm_shape(http: httpx.Client, model_id: str) -> None:
    body = http.post("/tokenize", json={"model": model_id, "prompt": "Hello"}).json()
    assert body["tokens"] == [19556] and body["count"] == 1 and body["max_model_len"] == 8192


def test_tokenize_messages_with_and_without_the_generation_prompt(http: httpx.Client, model_id: str) -> None:
    with_prompt = http.post("/tokenize", json={"model": model_id, "messages": MESSAGES}).json()
    without = http.post(
        "/tokenize", json={"model": model_id, "messages": MESSAGES, "add_generation_prompt": False}
    ).json()
    assert without["count"] < with_prompt["count"]
    assert with_prompt["tokens"][: without["count"]] == without["tokens"]
    reply = http.post("/v1/chat/completions", json={"model": model_id, "messages": MESSAGES, "max_tokens": 1})
    assert with_prompt["count"] == reply.json()["usage"]["prompt_tokens"]


def test_token_strs_spell_the_prompt(http: httpx.Client, model_id: str) -> None:
    text = "Hello, world! How are you?"
    body = http.post("/tokenize", json={"model": model_id, "prompt": text, "return_token_strs": True}).json()
    assert len(body["token_strs"]) == body["count"] and "".join(body["token_strs"]) == text


def test_detokenize_gives_the_prompt_back(http: httpx.Client, model_id: str) -> None:
    text = "The quick brown fox."
    tokens = http.post("/tokenize", json={"model": model_id, "prompt": text}).json()["tokens"]
    assert http.post("/detokenize", json={"model": model_id, "tokens": tokens}).json()["prompt"] == text


def test_tokenizer_info_gives_the_special_tokens_and_the_template(http: httpx.Client, model_id: str) -> None:
    info = http.get("/tokenizer_info").json()
    assert info["tokenizer_class"] == "llama.cpp gguf" and info["model"] == model_id
    assert info["bos_token"] == "<|im_start|>" and info["eos_token"] == "<|im_end|>"
    assert info["add_bos_token"] is False and info["add_eos_token"] is False
    assert info["model_max_length"] == 8192 and info["vocab_size"] == 49152
    assert "<|im_start|>" in info["chat_template"]
    eos = http.post("/tokenize", json={"prompt": info["eos_token"], "add_special_tokens": False}).json()
    assert eos["tokens"] == [2]
    assert http.get("/tokenizer_info", params={"model": model_id}).json() == info


def test_tokenizer_info_of_an_unknown_model_is_a_404(http: httpx.Client) -> None:
    reply = http.get("/tokenizer_info", params={"model": "no-such-model"})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"


def test_grpc_get_tokenizer_info(grpc_channel: grpc.Channel, model_id: str) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    info = stub.GetTokenizerInfo(pb.GetTokenizerInfoRequest(model=model_id))
    assert info.eos_token == "<|im_end|>" and info.model_max_length == 8192


def test_the_openapi_document_describes_the_root_routes() -> None:
    paths = DOCUMENT["paths"]
    assert paths["/tokenize"]["post"]["operationId"] == "tokenize_root"
    assert paths["/detokenize"]["post"]["operationId"] == "detokenize_root"
    assert "get" in paths["/tokenizer_info"]
    assert {"guided_json", "guided_regex", "guided_choice", "grammar", "min_tokens", "typical_p"} <= set(
        paths["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )


DOCS = [
    {
        "question": "What colour is the sky on a clear day?",
        "choices": ["blue", "green", "purple"],
        "answer": 0,
    },
    {"question": "How many legs does a cat have?", "choices": ["two", "four", "eight"], "answer": 1},
    {"question": "What is the opposite of hot?", "choices": ["warm", "cold", "loud"], "answer": 1},
    {"question": "Which animal barks?", "choices": ["dog", "fish", "bird"], "answer": 0},
    {"question": "What do bees make?", "choices": ["milk", "silk", "honey"], "answer": 2},
]
TASK = """task: inferno_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: answer
doc_to_choice: choices
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def test_lm_eval_harness_scores_a_multiple_choice_task_with_the_remote_tokenizer(
    server: RunningServer, http: httpx.Client, model_id: str, tmp_path: Path
) -> None:
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    (tmp_path / "tiny.yaml").write_text(TASK.format(data=data))
    # Everything offline: the task's data is the local JSON file, and the tokenizer is the server's.
    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    model_args = f"base_url={server.base_url}/v1/completions,model={model_id},tokenizer_backend=remote"
    command = [sys.executable, "-m", "lm_eval", "run", "--model", "local-completions"]
    command += ["--model_args", model_args, "--tasks", "inferno_tiny_mc", "--include_path", str(tmp_path)]
    command += ["--output_path", str(tmp_path / "out"), "--log_samples"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Using remote tokenizer" in run.stderr
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    task = results["results"]["inferno_tiny_mc"]
    assert task["sample_len"] == len(DOCS) and 0.0 <= task["acc,none"] <= 1.0
    samples = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_*.jsonl")).open()]
    # The harness's log-likelihood of a choice is the sum of its tokens' log-probabilities, as the server
    # scores the same text itself.
    first = samples[0]
    context, continuation = (
        first["arguments"]["gen_args_0"]["arg_0"],
        first["arguments"]["gen_args_0"]["arg_1"],
    )
    harness_score = float(first["resps"][0][0][0])
    assert math.isclose(
        _server_log_likelihood(http, model_id, context, continuation), harness_score, abs_tol=1e-3
    )


def _server_log_likelihood(http: httpx.Client, model_id: str, context: str, continuation: str) -> float:
    tokenize = http.post("/tokenize", json={"prompt": context, "add_special_tokens": False}).json()
    whole = http.post(
        "/tokenize", json={"prompt": context + continuation, "add_special_tokens": False}
    ).json()
    body = {"model": model_id, "prompt": whole["tokens"], "max_tokens": 0, "echo": True, "logprobs": 1}
    logprobs = http.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]["token_logprobs"]
    return float(sum(logprobs[tokenize["count"] :]))
