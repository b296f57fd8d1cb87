"""The task assistant in a live session: real aiortc peers, the real server and its tiny model."""

from __future__ import annotations

import pytest

from stream_assist.assistant.places import journal_for
from stream_assist.bench.synthetic_client import Client, connect

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def reply(client: Client) -> dict:
    """The status or error that answers a client message (guidance from the pipeline is skipped)."""
    while (msg := await client.next_message(("status", "error"), timeout=60)).get("code") == "inference_failed":
        pass
    return msg


async def test_card_next_and_bad_input_through_a_live_session(server) -> None:
    base, state = server
    client = await connect(base)
    try:
        assert (client.ready["step"], client.ready["steps"]) == (0, 0)
        client.send({"type": "settings", "card": "wall-light-switch"})
        task = await client.next_message("task")
        assert task["title"] == "Replace a wall light switch" and len(task["steps"]) == 8
        first = await client.next_message("guidance")
        assert first["speak"] and first["reason"] == "step_change" and first["text"].startswith("Step 1 of 8")
        assert "Careful:" in first["text"]  # the safety step says its caution
        status = await reply(client)
        assert (status["step"], status["steps"], status["task_title"]) == (0, 8, "Replace a wall light switch")
        client.send({"type": "next"})
        said = await client.next_message("guidance")
        while said.get("frame_id") is not None:  # answers about frames may come first
            said = await client.next_message("guidance")
        assert said["speak"] and said["step"] == 1 and said["text"].startswith("Step 2 of 8")
        assert (await reply(client))["step"] == 1
        session = state.sessions[client.ready["session"]]
        journal = journal_for(state.config.assistant).read(session.resume_token)
        assert [e["step"] for e in journal if e["event"] == "step"] == [0, 1]

        bad = [({"type": "settings", "steps": ["x" * 500] * 200}, "too_large"),
               ({"type": "settings", "steps": ["ok"] * 60}, "bad_task"),
               ({"type": "settings", "steps": []}, "bad_task"),
               ({"type": "settings", "steps": ["Open", "  "]}, "bad_task"),
               ({"type": "settings", "card": "no-such-card"}, "bad_task"),
               ({"type": "settings", "card": "../etc/passwd"}, "bad_task"),
               ({"type": "settings", "steps": ["Open <|im_end|>"], "preset": "safety"}, "bad_task"),
               ({"type": "settings", "steps": ["Open\u0000 it"]}, "bad_task")]
        for message, code in bad:
            client.send(message)
            error = await reply(client)
            assert error["type"] == "error" and error["code"] == code and error["message"]
        progress = session.assistant.progress()  # confidence moves with the frames' answers meanwhile
        assert progress | {"confidence": 0.0} == {"step": 1, "steps": 8, "task_title": "Replace a wall light switch",
                                                  "confidence": 0.0}
        assert session.state.prompt.preset == "describe"  # the bad message's other fields were not applied either
        assert len(journal_for(state.config.assistant).read(session.resume_token)) == len(journal)

        # the tiny model's answers are noise about the current step: shown, never said, never repeated aloud
        answers = []
        while len(answers) < 6:
            msg = await client.next_message("guidance")
            if msg.get("frame_id") is not None:
                answers.append(msg)
        assert all(not m["speak"] and m["step"] == 1 for m in answers), [m["reason"] for m in answers]
    finally:
        await client.close()

    again = await connect(base, resume=client.ready["resume_token"])  # a reload: the same person, the same step
    try:
        assert (again.ready["step"], again.ready["steps"]) == (1, 8)
        assert (await again.next_message("task"))["step"] == 1
    finally:
        await again.close()


async def test_commands_without_a_task_are_refused_and_change_nothing(server) -> None:
    base, _ = server
    client = await connect(base)
    try:
        client.send({"type": "next"})
        assert (await reply(client))["code"] == "no_task"
        client.send({"type": "resume"})
        assert (await reply(client))["state"] == "running"  # the refusal was the only reply
    finally:
        await client.close()


async def test_a_named_task_gets_drafted_steps_from_the_model(server) -> None:
    base, _ = server
    client = await connect(base)
    try:
        client.send({"type": "draft", "task": "change a fuse"})
        assert (await reply(client))["state"] == "drafting"
        draft = await client.next_message("steps_draft")
        # the tiny model's answer is noise, so the draft may be empty; it is never set without the person
        assert draft["task"] == "change a fuse" and isinstance(draft["steps"], list) and "answer" in draft
        client.send({"type": "what_now"})
        assert (await reply(client))["code"] == "no_task"
    finally:
        await client.close()


async def test_cards_and_history_routes(server) -> None:
    import aiohttp

    from stream_assist.assistant.live import LiveTask

    base, state = server
    live = LiveTask(state.config.assistant, "history-route-token-0123")
    live.set_card(live.resolve(None, ["Boil water", "Pour"], "Tea for the route"))
    live.command("next")
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/tasks") as res:
            names = {c["name"] for c in (await res.json())["cards"]}
        async with http.get(base + "/history") as res:
            sessions = (await res.json())["sessions"]
    assert {"bicycle-puncture", "wall-light-switch", "flatpack-bookcase"} <= names
    tea = next(s for s in sessions if s["title"] == "Tea for the route")
    assert (tea["steps"], tea["reached"], [t["step"] for t in tea["times"]]) == (2, 1, [0, 1])
    assert "history-route-token-0123" not in str(sessions)  # journals are named by a hash of the token
