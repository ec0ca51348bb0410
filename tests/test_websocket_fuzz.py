"""WebSocket fuzz (issue 10, point 3): a stream of fuzzed frames (random JSON, text that is not JSON, binary
frames, frames near the size limit, wrong types for type/id/data, chats with bad params) interleaved with a
valid chat on one socket. The socket stays open, every frame with an id gets its answer, and the valid chat
ends with chat_done."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from inferno.adapters.websocket import WS_MAX_MESSAGE_BYTES
from tests.property_settings import against_a_server
from tests.servers import RunningServer
from tests.test_property_parsers import ANY_TEXT, CHAT_BODY, JSON, SHORT_TEXT

SOCKETS = 8
FRAMES_PER_SOCKET = 30
FUZZ = against_a_server(SOCKETS)
RECEIVE_TIMEOUT_S = 60
# Replies that stream before a chat's last frame; every other reply answers its frame.
_STREAMING = ("chat_chunk",)
# Subscriptions answer with a stream and no end, so the fuzz leaves them to their own tests.
_TYPES = st.one_of(
    st.sampled_from(["chat", "cancel", "ping", "unsubscribe", "auth", "teleport", "", "CHAT"]),
    JSON.filter(lambda v: not (isinstance(v, str) and v.startswith("subscribe"))),
)
_IDS = st.one_of(st.integers(-(2**70), 2**70), SHORT_TEXT, ANY_TEXT, JSON)


def _small(body: dict[str, Any]) -> dict[str, Any]:
    """A fuzzed chat body that cannot run long if it happens to be valid."""
    body = {k: v for k, v in body.items() if k not in ("n", "max_completion_tokens")}
    return {**body, "max_tokens": 2}


def _frames(model_id: str) -> st.SearchStrategy[Any]:
    chat_data = st.one_of(
        CHAT_BODY.map(_small),
        CHAT_BODY.map(lambda b: {**_small(b), "model": model_id}),
        JSON,
    )
    object_frame = st.fixed_dictionaries(
        {},
        optional={"type": _TYPES, "id": _IDS, "data": st.one_of(chat_data, JSON)},
    ).map(lambda f: {"type": "cancel", **f} if str(f.get("type", "")).startswith("subscribe") else f)
    chat_frame = st.fixed_dictionaries({"type": st.just("chat"), "id": _IDS, "data": chat_data})
    near_limit = st.integers(1, WS_MAX_MESSAGE_BYTES - 200).map(
        lambda n: {"type": "ping", "id": "big", "data": {"pad": "x" * n}}
    )
    return st.one_of(
        object_frame.map(json.dumps),
        chat_frame.map(json.dumps),
        near_limit.map(json.dumps),
        JSON.map(json.dumps),  # JSON, mostly not an object
        ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace")),
        st.binary(max_size=64),
    )


def _answered_id(raw: str | bytes) -> Any:
    """The id a frame is answered under, or None where the server has no id to answer with."""
    if isinstance(raw, bytes):
        return None
    try:
        frame = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(frame, dict):
        return None
    chat_id = frame.get("id")
    if isinstance(chat_id, str) and chat_id:
        return chat_id
    if isinstance(chat_id, int) and not isinstance(chat_id, bool):
        return chat_id
    return None


def _key(chat_id: Any) -> str:
    return json.dumps(chat_id)


async def _fuzz(base_url: str, model_id: str, frames: list[str | bytes]) -> None:
    valid = {"model": model_id, "messages": [{"role": "user", "content": "Count to five"}], "max_tokens": 6}
    async with aiohttp.ClientSession() as session, session.ws_connect(base_url + "/ws") as socket:
        # An id no fuzzed frame can take, so its chat_done is unambiguous.
        await socket.send_json({"type": "chat", "id": "valid-chat-\x01", "data": valid})
        expected: Counter[str] = Counter({_key("valid-chat-\x01"): 1})
        for raw in frames:
            if isinstance(raw, bytes):
                await socket.send_bytes(raw)
            else:
                await socket.send_str(raw)
            chat_id = _answered_id(raw)
            if chat_id is not None:
                expected[_key(chat_id)] += 1
        answered: Counter[str] = Counter()
        valid_done = False
        while any(answered[k] < n for k, n in expected.items()) or not valid_done:
            message = await socket.receive(timeout=RECEIVE_TIMEOUT_S)
            assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data, socket.close_code)
            reply = json.loads(message.data)
            assert reply["type"] != "error" or reply["data"]["error"]["code"] != "internal_error", reply
            if reply["type"] == "error":
                error = reply["data"]["error"]
                assert error["message"] and (
                    error["code"] != "invalid_parameters" or error["details"]["param"]
                )
            if reply["id"] == "valid-chat-\x01":
                assert reply["type"] in ("chat_chunk", "chat_done"), reply
                valid_done = reply["type"] == "chat_done"
            if reply["type"] not in _STREAMING and reply["id"] is not None:
                # A cancel's chat_done answers the cancel and ends the chat it cancelled.
                cancelled = reply["type"] == "chat_done" and reply["data"]["finish_reason"] == "cancelled"
                answered[_key(reply["id"])] += 2 if cancelled else 1
        # Still open and still answering.
        await socket.send_json({"type": "ping", "id": "after"})
        while True:
            reply = json.loads((await socket.receive(timeout=RECEIVE_TIMEOUT_S)).data)
            if reply["id"] == "after":
                assert reply["type"] == "pong"
                break
        assert not socket.closed


@FUZZ
@given(data=st.data())
def test_fuzzed_frames_never_close_the_socket_and_each_gets_its_answer(
    server: RunningServer, model_id: str, data: st.DataObject
) -> None:
    frames = data.draw(st.lists(_frames(model_id), min_size=FRAMES_PER_SOCKET, max_size=FRAMES_PER_SOCKET))
    asyncio.run(asyncio.wait_for(_fuzz(server.base_url, model_id, frames), timeout=300))
