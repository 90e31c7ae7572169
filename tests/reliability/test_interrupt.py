"""Ctrl-C or SIGTERM on a run that is working through a rate-limited outbox: the run says
"stopping…", stops within two seconds (not once every claimed delivery has waited for
its slot), leaves nothing ``sending``, and the next run sends the rest exactly once."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from .support import make_workspace, outreach_toml, run_cli, spawn, statuses, stop, wait_until

CUSTOMERS = 1300
# at 100 a second, 1,300 messages take 13 s: a stop has far more to wait for than 2 s
RATED = '[channels.sms]\nprovider = "outbox"\nrate = "100/s"\n'


def _files(ws: Path) -> list[Path]:
    folder = ws / "outbox" / "sms"
    return [f for f in folder.iterdir() if f.suffix == ".json"] if folder.exists() else []


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(
        tmp_path_factory.mktemp("seed") / "ws", outreach_toml(RATED), customers=CUSTOMERS
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_within_two_seconds_and_leaves_nothing_sending(
    seed: Path, tmp_path: Path, sig: int
) -> None:
    ws = Path(shutil.copytree(seed, tmp_path / "ws"))
    proc = spawn(ws, "run", "blast")
    assert wait_until(lambda: len(_files(ws)) >= 20, timeout=60), "the run never started sending"
    started = time.monotonic()
    code, _, err = stop(proc, sig)
    took = time.monotonic() - started
    assert code == 128 + sig, err
    assert took < 2.0, f"took {took:.1f} s to stop"
    assert "stopping…" in err
    left = statuses(ws)
    assert left["sending"] == 0 and left["unknown"] == 0, left
    assert left["queued"] > 0 and left["sent"] + left["queued"] == CUSTOMERS, left
    # the next run sends the rest, each customer once
    toml = ws / "outreach.toml"
    toml.write_text(toml.read_text().replace('rate = "100/s"\n', ""), encoding="utf-8")
    result = run_cli(ws, "run", "--json")
    assert result.returncode == 0, result.stderr
    per_customer = Counter(json.loads(f.read_bytes())["customer_id"] for f in _files(ws))
    assert len(per_customer) == CUSTOMERS and max(per_customer.values()) == 1
    assert statuses(ws) == Counter(sent=CUSTOMERS)
