"""Helper send processes (``outreach.sending.helpers``): a large run to the outbox is sent from
more than one process, and still exactly once, whichever process is killed.

The outbox is the witness here: one file per delivery, named by its delivery id, each
naming its customer. After every scenario each customer has exactly one file, exactly one
outbound message in their conversation, and every delivery is ``sent``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from outreach.sending.helpers import HELPER_MIN, Helpers
from outreach.workspace import Workspace

from .support import (
    BLAST,
    make_workspace,
    outreach_toml,
    query,
    run_cli,
    spawn,
    statuses,
    stop,
    wait_until,
)

CUSTOMERS = HELPER_MIN + 7000  # enough that the helpers run for a while
OUTBOX = '[channels.sms]\nprovider = "outbox"\n\n[channels.email]\nprovider = "outbox"\n'
TWO = ("[sending]\n", "[sending]\nprocesses = 2\n")  # as on any machine of two or more CPUs
HELPER_CLAIMED = (
    "SELECT 1 FROM deliveries WHERE claimed_by IN (SELECT id FROM workers WHERE kind = 'helper') "
    "LIMIT 1"
)
HELPER_NOTE = re.compile(r"(\d+) helper process(?:es)? sent (\d+) of the campaign messages")


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(
        tmp_path_factory.mktemp("seed") / "ws",
        outreach_toml(OUTBOX).replace(*TWO),
        customers=CUSTOMERS,
    )


@pytest.fixture
def ws(seed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(seed, tmp_path / "ws"))


def _files(ws: Path) -> list[Path]:
    folder = ws / "outbox" / "sms"
    return list(folder.iterdir()) if folder.exists() else []


def _assert_each_customer_once(ws: Path) -> None:
    files = _files(ws)
    assert not [f for f in files if f.suffix != ".json"], "temporary files left behind"
    per_customer = Counter(json.loads(f.read_bytes())["customer_id"] for f in files)
    assert len(per_customer) == CUSTOMERS
    assert max(per_customer.values()) == 1
    assert statuses(ws) == Counter(sent=CUSTOMERS)
    out = query(
        ws,
        "SELECT customer_id, count(*) FROM messages WHERE direction = 'out' GROUP BY customer_id",
    )
    assert len(out) == CUSTOMERS
    assert {n for _, n in out} == {1}


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name (2nd field) may hold spaces: the fields after it are fixed
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("processes", [2, 1])
def test_a_large_outbox_run_is_shared_with_a_helper_and_sends_each_customer_once(
    ws: Path, processes: int
) -> None:
    toml = ws / "outreach.toml"
    toml.write_text(toml.read_text().replace("processes = 2", f"processes = {processes}"))
    result = run_cli(ws, "run", "blast")
    assert result.returncode == 0, result.stderr
    assert f"sent {CUSTOMERS}" in result.stdout
    note = HELPER_NOTE.search(result.stderr)
    if processes == 1:
        assert note is None, result.stderr
    else:
        assert note is not None, result.stderr
        count, helped = int(note[1]), int(note[2])
        assert count == 1
        assert 0 < helped < CUSTOMERS  # both processes sent
    _assert_each_customer_once(ws)
    again = run_cli(ws, "run", "blast", "--json")
    assert json.loads(again.stdout)["sent"] == 0


def _start_run_with_helper(ws: Path) -> tuple[subprocess.Popen[str], int]:
    proc = spawn(ws, "run", "blast")
    helpers: list[int] = []

    def helper_busy() -> bool:
        if not helpers:
            helpers.extend(_children(proc.pid))
        # as early as it is sending (it has claimed deliveries), so that however long a
        # busy machine takes to deliver the signal, much is still left to send
        return bool(helpers) and bool(query(ws, HELPER_CLAIMED))

    assert wait_until(helper_busy, timeout=60, step=0.01), "no helper started"
    return proc, helpers[0]


def test_a_killed_helper_leaves_its_deliveries_to_the_run(ws: Path) -> None:
    proc, helper = _start_run_with_helper(ws)
    os.kill(helper, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert re.search(rf"send helper process {helper} ended with exit code -9", err), err
    assert f"sent {CUSTOMERS}" in out
    _assert_each_customer_once(ws)


def test_a_killed_run_stops_its_helper_and_the_next_run_finishes(ws: Path) -> None:
    proc, helper = _start_run_with_helper(ws)
    os.kill(helper, signal.SIGSTOP)  # hold it still, mid-send, while its run dies
    stop(proc, signal.SIGKILL)
    # a helper still at work holds the workspace lock: no second run beside it
    locked = run_cli(ws, "run", "blast")
    assert locked.returncode == 5, locked.stderr
    os.kill(helper, signal.SIGCONT)
    # its input closed: the helper records what it sent and ends by itself
    assert wait_until(lambda: not _alive(helper), timeout=30), "the helper outlived the run"
    assert statuses(ws)["sent"] < CUSTOMERS
    result = run_cli(ws, "run", "blast", "--json")
    assert result.returncode == 0, result.stderr
    _assert_each_customer_once(ws)


def test_sigterm_stops_run_and_helper_and_leaves_nothing_in_flight(ws: Path) -> None:
    proc, helper = _start_run_with_helper(ws)
    before = statuses(ws)
    code, _, err = stop(proc, signal.SIGTERM)
    assert code == 143, err
    assert not _alive(helper)
    left = statuses(ws)
    assert left["sending"] == 0 and left["unknown"] == 0, left
    assert 0 < left["sent"] < CUSTOMERS
    # both stop claiming at once: what was claimed when the signal went out, and at most
    # a batch of 1,024 each that the signal may take to land, not batch after batch (a
    # local send gave the loop no turn, so the handler waited: 6,144 sent, from 2,048)
    assert left["sent"] <= before.get("sent", 0) + before.get("sending", 0) + 2 * 1024, (
        before,
        left,
    )
    # every planned delivery is sent or queued (on a busy machine the signal may land
    # while the run still plans: the next run plans the rest)
    assert left["queued"] + left["sent"] == sum(left.values()), left
    result = run_cli(ws, "run", "blast", "--json")
    assert result.returncode == 0, result.stderr
    _assert_each_customer_once(ws)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (
            lambda t: t.replace('provider = "outbox"\n', 'provider = "outbox"\nrate = "50/s"\n'),
            "both channels are rate-limited",
        ),
        (lambda t: t.replace("processes = 2", "processes = 1"), "processes = 1"),
    ],
)
def test_no_helpers_where_two_processes_would_break_a_limit(
    tmp_path: Path, edit: object, why: str
) -> None:
    toml = edit(outreach_toml(OUTBOX).replace(*TWO))  # type: ignore[operator]
    ws = make_workspace(tmp_path / "ws", toml)
    workspace = Workspace.load(ws)
    assert Helpers.for_run(workspace, ["blast"], None, -1, None) is None, why


def test_no_helpers_with_a_limit_or_a_rate_limited_campaign(tmp_path: Path) -> None:
    ws = make_workspace(
        tmp_path / "ws",
        outreach_toml(OUTBOX).replace(*TWO),
        campaigns={
            "blast": BLAST,
            "slow": 'kind = "update"\ntemplate = "product_update"\nchannels = ["sms"]\n\n'
            '[schedule]\nstart = "2026-12-01 08:00"\n\n[limits]\nrate = "10/s"\n',
        },
    )
    workspace = Workspace.load(ws)
    assert Helpers.for_run(workspace, ["blast"], None, -1, None) is not None
    assert Helpers.for_run(workspace, ["blast"], 100, -1, None) is None
    assert Helpers.for_run(workspace, ["slow"], None, -1, None) is None
    assert Helpers.for_run(workspace, [], None, -1, None) is None  # --due: any campaign


def test_a_helper_that_cannot_start_leaves_everything_to_the_run(ws: Path, tmp_path: Path) -> None:
    # a sitecustomize that refuses to run the helper module: a broken helper install
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "if 'outreach.sending.helpers' in sys.orig_argv:\n"
        "    raise SystemExit('helper refused to start (test)')\n"
    )
    result = run_cli(ws, "run", "blast", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"send helper process \d+ ended with exit code 1 "
        r"\(.*helper refused to start \(test\)\)",
        result.stderr,
    ), result.stderr
    assert f"sent {CUSTOMERS}" in result.stdout
    _assert_each_customer_once(ws)


@pytest.mark.postgresql
def test_on_postgresql_a_large_outbox_run_is_shared_with_a_helper_and_sends_each_once(
    postgresql_database: str, tmp_path: Path
) -> None:
    import psycopg

    from tests.postgresql import empty_database

    toml = outreach_toml(OUTBOX).replace(*TWO)
    toml = toml.replace('database = "outreach.db"', f'database = "{postgresql_database}"')
    ws = make_workspace(tmp_path / "ws", toml, customers=CUSTOMERS)
    try:
        result = run_cli(ws, "run", "blast")
        assert result.returncode == 0, result.stderr
        note = HELPER_NOTE.search(result.stderr)
        assert note is not None, result.stderr
        assert int(note[1]) == 1 and 0 < int(note[2]) < CUSTOMERS  # both processes sent
        files = _files(ws)
        per_customer = Counter(json.loads(f.read_bytes())["customer_id"] for f in files)
        assert len(per_customer) == CUSTOMERS and max(per_customer.values()) == 1
        with psycopg.connect(postgresql_database) as conn:
            by_status: dict[str, int] = dict(
                conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
            )
            out = conn.execute(
                "SELECT count(*), count(DISTINCT customer_id) FROM messages WHERE direction = 'out'"
            ).fetchone()
            claimers = conn.execute("SELECT count(DISTINCT claimed_by) FROM deliveries").fetchone()
        assert by_status == {"sent": CUSTOMERS}
        assert out == (CUSTOMERS, CUSTOMERS)
        assert claimers == (2,)
        again = run_cli(ws, "run", "blast", "--json")
        assert json.loads(again.stdout)["sent"] == 0
    finally:
        empty_database(postgresql_database)
