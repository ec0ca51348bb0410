"""Property tests of the core's gRPC requests (issue 10, point 3): hypothesis builds request messages field
by field (huge, empty and odd strings, numbers in and out of range, random logit_bias maps, random tool and
response schemas as JSON text) and sends them to the session server. Every call ends OK or with one of our
error codes carrying an ErrorInfo reason, never INTERNAL or UNKNOWN."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import given
from hypothesis import strategies as st

from inferno.errors import ERROR_KINDS
from inferno.v1 import common_pb2, inference_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb
from tests.property_settings import against_a_server

EXAMPLES = 40
PROPERTY = against_a_server(EXAMPLES)
CALL_TIMEOUT_S = 60

# protobuf refuses lone surrogates when a message is built, so strings here are valid Unicode.
TEXT = st.one_of(
    st.sampled_from(["", "hi", "user", "assistant", "system", "tool", "f", "\x00", "1"]),
    st.text(max_size=24),
    st.integers(1, 300_000).map(lambda n: "x" * n),
)
SHORT = st.one_of(st.sampled_from(["", "hi", "user", "f"]), st.text(max_size=12))
UINT32 = st.one_of(
    st.sampled_from([0, 1, 2, 3, 64, 65, 128, 129, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)
)
FLOAT = st.one_of(
    st.floats(width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, 1e30, -1e30, float("inf"), float("nan")]),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), SHORT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(SHORT, children, max_size=4)),
    max_leaves=16,
)


def _nested(depth: int) -> str:
    return '{"type": "array", "items": ' * depth + '{"type": "string"}' + "}" * depth


SCHEMA_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            "{}",
            '{"type": "bogus"}',
            '{"type": "object", "properties": {"a": {"type": "integer", "minimum": 1e400}}}',
            '{"$ref": "#/nowhere"}',
            '{"type": "string", "maxLength": -1}',
            '{"type": "string", "pattern": "("}',
            "[1, 2",
            "null",
            "1e400",
        ]
    ),
    st.integers(0, 1200).map(_nested),
    JSON.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["object", "string", "integer", "array", "boolean", "null"])},
        optional={
            "properties": st.dictionaries(SHORT, JSON, max_size=3),
            "required": st.lists(SHORT, max_size=3),
        },
    ).map(json.dumps),
)
SAMPLING = st.builds(
    common_pb2.SamplingParams,
    temperature=FLOAT,
    top_p=FLOAT,
    presence_penalty=FLOAT,
    frequency_penalty=FLOAT,
    seed=st.integers(0, 2**64 - 1),
    top_k=UINT32,
    min_p=FLOAT,
    repetition_penalty=FLOAT,
    logit_bias=st.dictionaries(UINT32, FLOAT, max_size=4),
)
# max_tokens stays tiny: the property is about refusals, not generation.
LIMITS = st.builds(
    common_pb2.GenerationLimits,
    max_tokens=st.integers(0, 2),
    stop=st.lists(SHORT, max_size=4),
    ignore_eos=st.booleans(),
)
TOOL_CALL = st.builds(
    pb.ToolCall,
    id=SHORT,
    type=SHORT,
    function=st.builds(pb.FunctionCall, name=SHORT, arguments=st.one_of(SHORT, JSON.map(json.dumps))),
)
MESSAGE = st.builds(
    pb.ChatMessage,
    role=st.one_of(st.sampled_from(["user", "system", "assistant", "tool"]), SHORT),
    content=TEXT,
    name=SHORT,
    tool_calls=st.lists(TOOL_CALL, max_size=2),
    tool_call_id=SHORT,
)
TOOL = st.builds(
    pb.Tool,
    type=st.one_of(st.just("function"), SHORT),
    function=st.builds(
        pb.FunctionDefinition,
        name=SHORT,
        description=SHORT,
        strict=st.booleans(),
        parameters_json=SCHEMA_TEXT,
    ),
)
RESPONSE_FORMAT = st.builds(
    pb.ResponseFormat,
    type=st.integers(0, 5),  # open enum: values past the defined ones travel too
    schema_name=SHORT,
    json_schema_text=SCHEMA_TEXT,
)
TOOL_CHOICE = st.builds(pb.ToolChoice, mode=st.integers(0, 5), function_name=SHORT)
COUNT = st.sampled_from([0, 1, 2, 65, 129, 2**32 - 1])
PROMPT = st.one_of(
    st.builds(pb.Prompt, text=TEXT),
    st.builds(pb.Prompt, tokens=st.builds(pb.TokenIds, ids=st.lists(UINT32, max_size=6))),
    st.just(pb.Prompt()),
)
MODEL = st.one_of(st.just("MODEL"), st.just("MODEL"), SHORT, st.integers(500, 200_000).map(lambda n: "m" * n))


def _chat_params(model: str) -> st.SearchStrategy[pb.ChatCompletionParams]:
    return st.builds(
        pb.ChatCompletionParams,
        model=MODEL.map(lambda m: model if m == "MODEL" else m),
        messages=st.lists(MESSAGE, max_size=3),
        sampling=SAMPLING,
        limits=LIMITS,
        user=SHORT,
        n=COUNT,
        response_format=RESPONSE_FORMAT,
        logprobs=st.booleans(),
        top_logprobs=UINT32,
        tools=st.lists(TOOL, max_size=2),
        tool_choice=TOOL_CHOICE,
        parallel_tool_calls=st.booleans(),
    )


def _completion_params(model: str) -> st.SearchStrategy[pb.CompletionParams]:
    return st.builds(
        pb.CompletionParams,
        model=MODEL.map(lambda m: model if m == "MODEL" else m),
        prompts=st.lists(PROMPT, max_size=3),
        sampling=SAMPLING,
        limits=LIMITS,
        user=SHORT,
        n=COUNT,
        logprobs=st.one_of(st.integers(0, 21), UINT32),
        echo=st.booleans(),
        best_of=COUNT,
    )


@pytest.fixture(scope="module")
def stub(grpc_channel: grpc.Channel) -> inference_service_pb2_grpc.InferenceServiceStub:
    return inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)


def _answers(call: Callable[..., Any], request: Any) -> None:
    """The call ends OK, or with a status carrying an ErrorInfo whose reason is one of our codes; never
    INTERNAL or UNKNOWN."""
    try:
        call(request, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        code = error.code()
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (code, error.details())
        assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, "the core did not answer"
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None, (code, error.details())
        reasons = []
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reasons.append(info.reason)
        assert reasons and reasons[0] in ERROR_KINDS, (code, status.message, reasons)
        assert reasons[0] != "internal_error", status.message


@PROPERTY
@given(data=st.data())
def test_chat_completion_requests_answer_ok_or_our_error(
    stub: inference_service_pb2_grpc.InferenceServiceStub, model_id: str, data: st.DataObject
) -> None:
    params = data.draw(_chat_params(model_id))
    _answers(stub.CreateChatCompletion, pb.CreateChatCompletionRequest(params=params))


@PROPERTY
@given(data=st.data())
def test_completion_requests_answer_ok_or_our_error(
    stub: inference_service_pb2_grpc.InferenceServiceStub, model_id: str, data: st.DataObject
) -> None:
    params = data.draw(_completion_params(model_id))
    _answers(stub.CreateCompletion, pb.CreateCompletionRequest(params=params))


@PROPERTY
@given(data=st.data())
def test_tokenize_requests_answer_ok_or_our_error(
    stub: inference_service_pb2_grpc.InferenceServiceStub, model_id: str, data: st.DataObject
) -> None:
    request = data.draw(
        st.builds(
            pb.TokenizeRequest,
            # Over-long ids: test_tokenize_refuses_an_over_long_model_as_invalid_parameters.
            model=st.one_of(
                st.just(""), SHORT, st.just(model_id), st.integers(500, 512).map(lambda n: "m" * n)
            ),
            text=TEXT,
            messages=st.lists(MESSAGE, max_size=3),
            add_special=st.booleans(),
            with_pieces=st.booleans(),
        )
    )
    _answers(stub.Tokenize, request)


@PROPERTY
@given(data=st.data())
def test_embeddings_requests_answer_ok_or_our_error(
    stub: inference_service_pb2_grpc.InferenceServiceStub, model_id: str, data: st.DataObject
) -> None:
    request = data.draw(
        st.builds(
            pb.CreateEmbeddingsRequest,
            model=MODEL.map(lambda m: model_id if m == "MODEL" else m),
            inputs=st.lists(PROMPT, max_size=3),
            user=SHORT,
            dimensions=st.one_of(st.integers(0, 4), UINT32),
        )
    )
    _answers(stub.CreateEmbeddings, request)


@PROPERTY
@given(data=st.data())
def test_batch_requests_answer_ok_or_our_error(
    stub: inference_service_pb2_grpc.InferenceServiceStub, model_id: str, data: st.DataObject
) -> None:
    item = st.one_of(
        st.builds(pb.BatchItem, id=SHORT, params=_chat_params(model_id)),
        st.builds(pb.BatchItem, id=SHORT, completion_params=_completion_params(model_id)),
        st.builds(pb.BatchItem, id=SHORT),
    )
    request = data.draw(
        st.builds(
            pb.CreateBatchRequest,
            model=MODEL.map(lambda m: model_id if m == "MODEL" else m),
            items=st.lists(item, max_size=3),
        )
    )
    _answers(stub.CreateBatch, request)


def test_tokenize_refuses_an_over_long_model_as_invalid_parameters(
    stub: inference_service_pb2_grpc.InferenceServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Tokenize(pb.TokenizeRequest(model="m" * 5000, text="hi"), timeout=CALL_TIMEOUT_S)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    _answers(stub.Tokenize, pb.TokenizeRequest(model="m" * 5000, text="hi"))
