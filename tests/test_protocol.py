"""Checking of browser → server messages."""

from __future__ import annotations

import json

import pytest

from stream_assist.server.protocol import Pause, ProtocolError, Resume, Settings, encode, parse_client_message


def parse(raw):
    return parse_client_message(raw, max_bytes=1024, max_prompt_chars=100)


def test_valid_messages() -> None:
    assert parse('{"type":"pause"}') == Pause()
    assert parse('{"type":"resume"}') == Resume()
    message = parse('{"type":"settings","preset":"next_step","task":"fix a tap"}')
    assert message == Settings("next_step", "fix a tap")
    custom = parse('{"type":"settings","preset":"custom","prompt":"What tool?"}')
    assert custom == Settings("custom", None, "What tool?")
    assert parse('{"type":"settings","interval_s":5}') == Settings(interval_s=5.0)
    assert parse('{"type":"settings","interval_s":0.5}') == Settings(interval_s=0.5)


@pytest.mark.parametrize(("raw", "code"), [
    ("x" * 2000, "too_large"),
    (b'{"type":"pause"}', "bad_message"),
    ("{not json", "bad_json"),
    ("[1,2]", "bad_message"),
    ('{"kind":"pause"}', "bad_message"),
    ('{"type":"dance"}', "unknown_type"),
    ('{"type":"settings","preset":"nope"}', "bad_field"),
    ('{"type":"settings","preset":"custom"}', "bad_field"),
    ('{"type":"settings","task":5}', "bad_field"),
    ('{"type":"settings","task":"' + "t" * 101 + '"}', "bad_field"),
    ('{"type":"settings","colour":"red"}', "bad_field"),
    ('{"type":"settings","interval_s":-1}', "bad_field"),
    ('{"type":"settings","interval_s":601}', "bad_field"),
    ('{"type":"settings","interval_s":true}', "bad_field"),
    ('{"type":"settings","interval_s":"5"}', "bad_field"),
    ('{"type":"settings","interval_s":1e999}', "bad_field"),
    ("[" * 900, "bad_json"),
])
def test_bad_messages_are_refused_with_a_code(raw, code) -> None:
    with pytest.raises(ProtocolError) as e:
        parse(raw)
    assert e.value.code == code
    assert str(e.value)


def test_encode_is_compact_json_with_type() -> None:
    assert json.loads(encode("status", state="ready")) == {"type": "status", "state": "ready"}


def test_rate_limit_allows_bursts_then_the_sustained_rate() -> None:
    from stream_assist.server.protocol import RateLimit

    limit = RateLimit(rate=10)
    assert sum(limit.allow(0.0) for _ in range(50)) == 20  # burst: twice the rate
    assert not limit.allow(0.05)  # half a token earned
    assert limit.allow(0.1)  # one earned
    assert sum(limit.allow(1.1) for _ in range(50)) == 10  # a second later: ten more


def test_task_messages() -> None:
    from stream_assist.server.protocol import Draft, TaskCommand

    assert parse('{"type":"settings","card":"bicycle-puncture"}') == Settings(card="bicycle-puncture")
    assert parse('{"type":"settings","task":"Tea","steps":["Boil","Pour"]}') == Settings(task="Tea",
                                                                                       steps=("Boil", "Pour"))
    names = ("next", "back", "repeat", "what_now")
    assert [parse(json.dumps({"type": t})) for t in names] == [TaskCommand(t) for t in names]
    assert parse('{"type":"draft","task":"change a fuse"}') == Draft("change a fuse")
    for bad in ('{"type":"settings","steps":"Boil"}', '{"type":"settings","steps":[1]}',
                '{"type":"draft","task":" "}', '{"type":"settings","card":5}'):
        with pytest.raises(ProtocolError) as e:
            parse(bad)
        assert e.value.code == "bad_field"
