"""What imap.py repeats so that an idle sync stays light (no inbox import) stays true."""

from outreach.conversations.inbox import InboundSummary
from outreach.mail import imap, parse


def test_the_sync_and_the_parser_agree_on_the_size_limits() -> None:
    assert imap.MAX_MESSAGE_BYTES == parse.MAX_MESSAGE_BYTES
    assert imap.HEAD_BYTES == parse.HEAD_BYTES


def test_an_idle_sync_reports_the_same_keys_as_a_summary() -> None:
    assert InboundSummary().as_dict() == imap.NOTHING_READ
