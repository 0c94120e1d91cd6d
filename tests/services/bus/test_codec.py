import json

import pytest

from schemas.messages import Candidate
from services.bus.codec import UndecodableMessage, decode_message, encode_message

GOOD = Candidate(sample_id="s1", family="arithmetic", difficulty=2, problem="12+34", answers=["46"])


def test_a_good_message_decodes_to_its_model():
    assert decode_message("loop.candidates", encode_message(GOOD), max_bytes=10_000) == GOOD


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\x00\x13garbage", "not JSON"),
        (b"[1, 2, 3]", "expected a JSON object"),
        (json.dumps({"schema_version": 1, "hello": "world"}).encode(), "does not match Candidate"),
        (json.dumps({**GOOD.model_dump(mode="json"), "schema_version": 7}).encode(), "unknown schema_version 7"),
        (json.dumps({**GOOD.model_dump(mode="json"), "problem": "x" * 5000}).encode(), "exceeds the cap"),
        (None, "empty message"),
    ],
)
def test_unreadable_messages_say_why(raw, reason):
    with pytest.raises(UndecodableMessage, match=reason):
        decode_message("loop.candidates", raw, max_bytes=4096)


def test_a_topic_without_contract_is_refused():
    with pytest.raises(UndecodableMessage, match="no contract"):
        decode_message("loop.unknown", encode_message(GOOD), max_bytes=10_000)
