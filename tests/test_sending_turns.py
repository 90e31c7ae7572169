"""How the send engine keeps the event loop free for a network channel's sessions: the
turns it gives, how much it claims and records in one commit, and the WAL checkpoints it
leaves to a thread."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from outreach.sending.channel import BUDGET_PER_SESSION
from outreach.sending.engine import _after_io
from outreach.sending.senders import SenderPool
from outreach.store.sqlite.checkpoints import THREAD_NAME
from tests.conftest import Cli
from tests.servers.fixtures import smtp_server as smtp_server
from tests.servers.smtp import SmtpEmulator
from tests.test_email_edges import add_news, run, use_smtp


async def _who_runs_first(give_a_turn: Callable[[], Awaitable[None]]) -> list[str]:
    """A session waits for its server's answer; the channel worker, busy meanwhile (the
    answer arrives), gives the loop a turn: which of the two runs first afterwards."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    answered: asyncio.Future[None] = loop.create_future()

    class Wire(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            answered.set_result(None)

    transport, _ = await loop.connect_accepted_socket(Wire, ours)
    order: list[str] = []
    try:
        for _ in range(3):  # the transport starts reading a turn or two after it is made
            await asyncio.sleep(0)

        async def session() -> None:
            await answered
            order.append("session")

        async def worker() -> None:
            theirs.send(b"250 OK\r\n")  # the answer comes in while the worker holds the loop
            await give_a_turn()
            order.append("worker")

        await asyncio.gather(session(), worker())
    finally:
        transport.close()
        theirs.close()
    return order


def test_a_session_woken_by_its_answer_runs_before_the_worker_that_gave_the_turn() -> None:
    assert asyncio.run(_who_runs_first(_after_io)) == ["session", "worker"]


def test_sleep_0_would_run_the_worker_first_so_the_test_above_can_tell() -> None:
    assert asyncio.run(_who_runs_first(lambda: asyncio.sleep(0))) == ["worker", "session"]


def test_a_turn_given_by_a_cancelled_task_leaves_no_error_behind() -> None:
    errors: list[object] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context)
        )
        task = asyncio.create_task(_after_io())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert errors == []


async def _top_up_as_the_last_sender_ends() -> list[str]:
    """A pool of one sender: its answer comes, it finds the queue empty and ends; in the
    very turn it ended (its done callbacks not yet run), the worker puts a message and
    tops up. What was sent a few turns later, before anything else tops up."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[None] = loop.create_future()
    sent: list[str] = []

    async def send(item: str) -> None:
        if item == "first":
            await answer
        sent.append(item)

    pool: SenderPool[str] = SenderPool(1, send)
    pool.put("first")
    pool.top_up()
    await asyncio.sleep(0)  # the sender waits for its answer
    answer.set_result(None)  # its task steps in the next turn, ...

    def worker() -> None:  # ... and this runs right after it, in the same turn
        pool.put("second")
        pool.top_up()

    loop.call_soon(worker)
    for _ in range(5):
        await asyncio.sleep(0)
    taken = list(sent)
    await asyncio.wait_for(pool.drain(), 1)  # drain starts a sender for what is left
    return taken


def test_a_sender_that_ended_in_this_turn_is_not_counted_so_the_next_message_is_sent() -> None:
    # counted until its done callbacks ran, it looked busy: "second" waited with nobody
    # to send it, and a stopped run left such messages claimed (``sending``)
    assert asyncio.run(_top_up_as_the_last_sender_ends()) == ["first", "second"]


def test_a_pool_sends_in_order_with_at_most_its_size_at_once() -> None:
    async def main() -> tuple[list[int], int]:
        taken: list[int] = []
        busy = most = 0

        async def send(item: int) -> None:
            nonlocal busy, most
            taken.append(item)
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.001 * (item % 3))
            busy -= 1

        pool: SenderPool[int] = SenderPool(3, send)
        for i in range(20):
            pool.put(i)
            if i % 4 == 0:
                pool.top_up()
                await asyncio.sleep(0)
        await pool.drain()
        return taken, most

    taken, most = asyncio.run(main())
    assert taken == list(range(20)) and most == 3


def _on_each_message(server: SmtpEmulator, look: Callable[[], None]) -> None:
    """Call ``look`` as ``server`` takes each message (it runs in a thread of this process,
    so ``look`` sees what the run is doing at that moment)."""
    handler = server.handler_obj
    take = handler.handle_DATA

    async def handle_DATA(*args: Any) -> str:
        look()
        return await take(*args)

    handler.handle_DATA = handle_DATA  # type: ignore[method-assign,assignment]


def _checkpointing() -> bool:
    return any(t.name == THREAD_NAME for t in threading.enumerate())


def test_a_run_over_smtp_checkpoints_on_a_thread_while_it_sends(
    ws: Path, cli: Cli, smtp_server: SmtpEmulator
) -> None:
    seen: list[bool] = []
    _on_each_message(smtp_server, lambda: seen.append(_checkpointing()))
    use_smtp(ws, smtp_server)
    add_news(ws, cli)
    sent = int(str(run(cli)["sent"]))
    # every message the server took (it refuses the one to an address in UTF-8)
    assert sent and seen == [True] * sent
    assert not _checkpointing()  # stopped with the pass


def test_a_journaled_channel_claims_a_few_per_session_ahead_not_more(
    ws: Path, cli: Cli, smtp_server: SmtpEmulator
) -> None:
    sessions = 2
    in_flight: list[int] = []

    def count_claimed() -> None:
        with sqlite3.connect(ws / "outreach.db") as db:
            (claimed,) = db.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'sending'"
            ).fetchone()
        in_flight.append(claimed)

    _on_each_message(smtp_server, count_claimed)
    use_smtp(ws, smtp_server)
    toml = ws / "outreach.toml"
    text = toml.read_text()
    email = text.index("[channels.email]")
    text = text[:email] + text[email:].replace("concurrency = 4", f"concurrency = {sessions}", 1)
    toml.write_text(text)
    add_news(ws, cli)
    more = ws / "more.csv"
    more.write_text(
        "id,name,email,preferred_channel,timezone,opted_in\n"
        + "".join(f"c{i},C {i},c{i}@example.com,email,Europe/Amsterdam,email\n" for i in range(300))
    )
    assert cli("customers", "import", str(more)).exit_code == 0
    assert int(str(run(cli)["sent"])) > 300
    # the pace of the sends let the budget grow past the sessions, up to its bound
    assert sessions < max(in_flight) <= BUDGET_PER_SESSION * sessions
