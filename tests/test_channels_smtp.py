"""The smtp provider against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from outreach.channels.base import OutboundMessage
from outreach.channels.smtp import SmtpProvider
from outreach.errors import ConfigError, ProviderError
from tests.servers.fixtures import (
    SMTP_PASSWORD,
    assert_no_secret,
    channel_config,
    context,
)
from tests.servers.fixtures import smtp_auth_server as smtp_auth_server
from tests.servers.fixtures import smtp_server as smtp_server
from tests.servers.smtp import SmtpEmulator
from tests.servers.smtp_pipelining import PipeliningServer


def make(
    server: SmtpEmulator | PipeliningServer,
    *,
    concurrency: int = 4,
    timeout: float = 2,
    **settings: Any,
) -> SmtpProvider:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "from": "Acme <hello@acme.example>",
        "reply_to": "replies@acme.example",
    }
    values.update(settings)
    channel = channel_config("smtp", values, name="email", concurrency=concurrency, timeout=timeout)
    return SmtpProvider(channel, context())


def message(n: int = 1, **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": f"01JD{n:04d}",
        "channel": "email",
        "customer_id": "c1",
        "to": "anna@example.nl",
        "customer_name": "Anna de Vries",
        "subject": "Hoe was uw bestelling?",
        "body": "Beste Anna,\n\nGeef ons een cijfer van 0 tot 10.",
        "html": "<p>Beste Anna,</p><p>Geef ons een cijfer.</p>",
        "unsubscribe_url": "https://hooks.acme.example/unsubscribe/tok123",
        "reply_token": "c0nv42",
    }
    values.update(fields)
    return OutboundMessage(**values)


def run(provider: SmtpProvider, *messages: OutboundMessage, together: bool = False) -> list[Any]:
    async def go() -> list[Any]:
        try:
            if together:
                return list(await asyncio.gather(*(provider.send(m) for m in messages)))
            return [await provider.send(m) for m in messages]
        finally:
            await provider.aclose()

    return asyncio.run(go())


def test_message_headers_and_multipart_body(smtp_server: SmtpEmulator) -> None:
    [result] = run(make(smtp_server), message())
    [received] = smtp_server.received
    assert received.mail_from == "hello@acme.example"
    assert received.rcpt_tos == ["anna@example.nl"]
    mail = received.message
    assert mail["From"] == "Acme <hello@acme.example>"
    assert mail["To"] == "Anna de Vries <anna@example.nl>"
    assert mail["Subject"] == "Hoe was uw bestelling?"
    assert mail["Message-ID"] == "<01JD0001@acme.example>" == result.provider_message_id
    assert mail["Date"]
    assert mail["Reply-To"] == "replies+c0nv42@acme.example"
    assert mail["List-Unsubscribe"] == "<https://hooks.acme.example/unsubscribe/tok123>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and "cijfer van 0 tot 10" in text.get_content()
    assert html is not None and "<p>Beste Anna,</p>" in html.get_content()


def test_plain_text_without_html_or_unsubscribe(smtp_server: SmtpEmulator) -> None:
    run(make(smtp_server, reply_to=None), message(html=None, unsubscribe_url=None))
    mail = smtp_server.received[0].message
    assert mail.get_content_type() == "text/plain"
    assert mail["List-Unsubscribe"] is None
    # no reply_to setting: the plus-address is built from the sender
    assert mail["Reply-To"] == "hello+c0nv42@acme.example"


def test_lines_starting_with_a_dot_arrive_as_written(smtp_server: SmtpEmulator) -> None:
    """A line that starts with "." is doubled on the wire (a lone "." would end the text)
    and undoubled by the server: the customer reads the line as written."""
    body = "Beste Anna,\n.\n.punt vooraan\n..twee punten\nEinde."
    run(make(smtp_server), message(body=body, html=None))
    [received] = smtp_server.received
    text = received.message.get_body(("plain",))
    # the server keeps the wire's CRLF line ends
    assert text is not None and text.get_content().replace("\r\n", "\n") == body + "\n"
    assert b"\n.punt vooraan" in received.data and b"\n..twee punten" in received.data


def test_a_message_over_the_announced_size_is_refused_before_its_text() -> None:
    """MAIL FROM carries SIZE when the server announces a limit: a message over it is
    refused (552, permanent) before any text went out, so it is not ambiguous."""
    server = SmtpEmulator(size_limit=400)
    server.start()
    try:
        provider = make(server)

        async def go() -> ProviderError:
            with pytest.raises(ProviderError) as info:
                await provider.send(message(1, body="Een lange vraag. " * 40))
            await provider.send(message(2, body="Kort.", html=None, unsubscribe_url=None))
            await provider.aclose()
            return info.value

        error = asyncio.run(go())
    finally:
        server.stop()
    assert (error.retryable, error.ambiguous, error.code) == (False, False, "552")
    assert [r.message["Message-ID"] for r in server.received] == ["<01JD0002@acme.example>"]
    assert provider.sessions_opened == 1


def test_a_server_that_speaks_only_helo_gets_the_mail() -> None:
    server = SmtpEmulator(esmtp=False)
    server.start()
    try:
        run(make(server), message(1), message(2))
    finally:
        server.stop()
    assert [r.rcpt_tos for r in server.received] == [["anna@example.nl"]] * 2


@pytest.mark.parametrize("to", ["anna de vries@example.nl", "anna\tvries@example.nl"])
def test_an_address_that_could_carry_a_command_is_refused_unsent(
    smtp_server: SmtpEmulator, to: str
) -> None:
    provider = make(smtp_server)

    async def go() -> ProviderError:
        with pytest.raises(ProviderError) as info:
            await provider.send(message(1, to=to))
        await provider.send(message(2))
        await provider.aclose()
        return info.value

    error = asyncio.run(go())
    assert (error.retryable, error.code) == (False, "address")
    assert [r.rcpt_tos for r in smtp_server.received] == [["anna@example.nl"]]


def test_with_pipelining_the_envelope_goes_out_in_one_write() -> None:
    with PipeliningServer() as server:
        provider = make(server)
        run(provider, *(message(n) for n in range(3)))
    assert len(server.messages) == 3 and provider.sessions_opened == 1
    envelopes = [c for c in server.chunks if c.startswith(b"MAIL FROM:<hello@acme.example>")]
    assert len(envelopes) == 3
    assert all(c.endswith(b"\r\nRCPT TO:<anna@example.nl>\r\nDATA\r\n") for c in envelopes)
    assert b"SIZE=" in envelopes[0]
    assert b"Message-ID: <01JD0002@acme.example>" in server.messages[2]


@pytest.mark.parametrize(
    ("refuse", "reply", "retryable"),
    [
        ("rcpt_reply", "550 5.1.1 No such user here", False),
        ("mail_reply", "451 4.3.0 Try again later", True),
        ("data_end_reply", "554 5.7.1 Message rejected", False),
    ],
)
def test_a_pipelined_refusal_maps_to_its_code_and_the_session_carries_on(
    refuse: str, reply: str, retryable: bool
) -> None:
    with PipeliningServer() as server:
        provider = make(server)

        async def go() -> ProviderError:
            setattr(server, refuse, reply)
            with pytest.raises(ProviderError) as info:
                await provider.send(message(1))
            setattr(server, refuse, "250 OK")
            await provider.send(message(2))
            await provider.aclose()
            return info.value

        error = asyncio.run(go())
    assert (error.code, error.retryable, error.ambiguous) == (reply[:3], retryable, False)
    assert reply[4:] in str(error)
    assert provider.sessions_opened == 1
    assert b"Message-ID: <01JD0002@acme.example>" in server.messages[-1]


def test_a_server_that_waits_for_text_after_a_refused_recipient_gets_none() -> None:
    """RFC 2920: a server may answer DATA with 354 though it refused every recipient; the
    client then ends the text at once, so nothing is delivered, and says why."""
    with PipeliningServer() as server:
        server.data_despite_refusal = True
        server.rcpt_reply = "550 5.1.1 No such user here"
        provider = make(server)

        async def go() -> ProviderError:
            with pytest.raises(ProviderError) as info:
                await provider.send(message(1))
            server.rcpt_reply = "250 OK"
            await provider.send(message(2))
            await provider.aclose()
            return info.value

        error = asyncio.run(go())
    assert (error.code, error.retryable) == ("550", False)
    assert len(server.messages) == 1 and provider.sessions_opened == 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_messages_travel_over_tls_on_one_session(
    security: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session is secured before its first message and stays so for the next ones."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    server = (
        SmtpEmulator(starttls=tls) if security == "starttls" else SmtpEmulator(implicit_tls=tls)
    )
    server.start()
    try:
        provider = make(server, security=security)
        run(provider, message(1), message(2))
    finally:
        server.stop()
    assert [r.message["Message-ID"] for r in server.received] == [
        "<01JD0001@acme.example>",
        "<01JD0002@acme.example>",
    ]
    assert provider.sessions_opened == 1


def test_a_session_lost_before_the_text_is_retryable_not_ambiguous() -> None:
    """The server hung up on DATA, before its 354: no text went out, so nothing can be
    delivered and the message may be sent again (after one retry on a fresh session)."""
    with PipeliningServer() as server:
        provider = make(server)

        async def go() -> ProviderError:
            await provider.send(message(1))
            server.hang_up_at = "DATA"
            with pytest.raises(ProviderError) as info:
                await provider.send(message(2))
            await provider.aclose()
            return info.value

        error = asyncio.run(go())
    assert (error.retryable, error.ambiguous, error.code) == (True, False, "connection")
    assert len(server.messages) == 1 and provider.sessions_opened == 2


@pytest.mark.parametrize(
    ("mute_at", "ambiguous"), [("RCPT", False), ("DATA", False), ("TEXT", True)]
)
def test_a_reply_that_never_comes_times_out(mute_at: str, ambiguous: bool) -> None:
    """No answer within the timeout: before the text, retryable (nothing delivered);
    after it, ambiguous (the server may deliver it). The session is not reused."""
    with PipeliningServer() as server:
        provider = make(server, timeout=0.3)

        async def go() -> ProviderError:
            await provider.send(message(1))
            server.mute_at = mute_at
            with pytest.raises(ProviderError) as info:
                await provider.send(message(2))
            server.mute_at = None
            await provider.send(message(3))
            await provider.aclose()
            return info.value

        error = asyncio.run(go())
    assert (error.ambiguous, error.retryable) == (ambiguous, not ambiguous)
    assert error.code == ("no_answer" if ambiguous else "timeout")
    assert provider.sessions_opened == 2


def test_many_messages_travel_over_one_session(smtp_server: SmtpEmulator) -> None:
    provider = make(smtp_server)
    run(provider, *(message(n) for n in range(30)))
    assert len(smtp_server.received) == 30
    assert len(smtp_server.peers) == 1
    assert provider.sessions_opened == 1


def test_concurrent_sends_use_at_most_concurrency_sessions(smtp_server: SmtpEmulator) -> None:
    provider = make(smtp_server, concurrency=3)
    run(provider, *(message(n) for n in range(40)), together=True)
    assert len(smtp_server.received) == 40
    assert len(smtp_server.peers) <= 3
    assert provider.sessions_opened <= 3


def test_reconnects_after_the_server_dropped_an_idle_session(smtp_server: SmtpEmulator) -> None:
    provider = make(smtp_server)

    async def go() -> None:
        await provider.send(message(1))
        smtp_server.drop_sessions()
        await asyncio.sleep(0.05)
        await provider.send(message(2))
        await provider.aclose()

    asyncio.run(go())
    assert [r.message["Message-ID"] for r in smtp_server.received] == [
        "<01JD0001@acme.example>",
        "<01JD0002@acme.example>",
    ]
    assert provider.sessions_opened == 2


def test_login_with_credentials_from_the_environment(smtp_auth_server: SmtpEmulator) -> None:
    provider = make(smtp_auth_server, username_env="SMTP_USERNAME", password_env="SMTP_PASSWORD")
    run(provider, message(1), message(2))
    assert len(smtp_auth_server.received) == 2


def test_wrong_password_is_permanent_535_without_the_password(
    smtp_auth_server: SmtpEmulator,
) -> None:
    smtp_auth_server.secret = "something-else"
    provider = make(smtp_auth_server, username_env="SMTP_USERNAME", password_env="SMTP_PASSWORD")
    with pytest.raises(ProviderError) as info:
        run(provider, message())
    assert (info.value.retryable, info.value.code) == (False, "535")
    assert SMTP_PASSWORD not in str(info.value)
    assert_no_secret(str(info.value))


def test_server_requiring_auth_refuses_an_anonymous_sender(
    smtp_auth_server: SmtpEmulator,
) -> None:
    with pytest.raises(ProviderError) as info:
        run(make(smtp_auth_server), message())
    assert not info.value.retryable and info.value.code == "530"


def test_temporary_refusal_is_retryable_and_the_session_carries_on(
    smtp_server: SmtpEmulator,
) -> None:
    smtp_server.refuse_recipients("450 4.2.1 Mailbox busy, try later", times=1)
    provider = make(smtp_server)

    async def go() -> ProviderError:
        with pytest.raises(ProviderError) as info:
            await provider.send(message(1))
        await provider.send(message(2))
        await provider.aclose()
        return info.value

    error = asyncio.run(go())
    assert (error.retryable, error.code) == (True, "450")
    assert "Mailbox busy" in str(error)
    assert len(smtp_server.received) == 1 and provider.sessions_opened == 1


def test_permanent_refusal_carries_the_code(smtp_server: SmtpEmulator) -> None:
    smtp_server.refuse_recipients("550 5.1.1 No such user here")
    with pytest.raises(ProviderError) as info:
        run(make(smtp_server), message())
    assert (info.value.retryable, info.value.code) == (False, "550")


def test_421_on_a_reused_session_is_retried_on_a_new_one(smtp_server: SmtpEmulator) -> None:
    provider = make(smtp_server)

    async def go() -> None:
        await provider.send(message(1))
        smtp_server.refuse_recipients("421 4.7.0 closing transmission channel", times=1)
        await provider.send(message(2))
        await provider.aclose()

    asyncio.run(go())
    assert len(smtp_server.received) == 2
    assert provider.sessions_opened == 2


def test_no_answer_after_the_message_text_is_ambiguous_and_never_resent(
    smtp_server: SmtpEmulator,
) -> None:
    """The server took the text and hung up before its 250: it may deliver the message, so
    the provider says "ambiguous" (the run records the delivery unknown) and does not try
    again, not even on a fresh session."""
    provider = make(smtp_server)

    async def go() -> ProviderError:
        await provider.send(message(1))  # a reused session, the case that is retried otherwise
        smtp_server.handler_obj.hang_up_after_data = 1
        with pytest.raises(ProviderError) as info:
            await provider.send(message(2))
        await provider.aclose()
        return info.value

    error = asyncio.run(go())
    assert error.ambiguous and not error.retryable
    assert len(smtp_server.received) == 2


def test_unreachable_server_is_retryable(smtp_server: SmtpEmulator) -> None:
    provider = make(smtp_server)
    smtp_server.stop()
    with pytest.raises(ProviderError) as info:
        run(provider, message())
    assert info.value.retryable and info.value.code == "connection"


def test_starttls_required_but_not_offered_is_permanent(smtp_server: SmtpEmulator) -> None:
    with pytest.raises(ProviderError) as info:
        run(make(smtp_server, security="starttls"), message())
    assert (info.value.retryable, info.value.code) == (False, "tls")


def test_settings_are_checked_when_built(smtp_server: SmtpEmulator) -> None:
    with pytest.raises(ConfigError, match="security"):
        make(smtp_server, security="ssl")
    with pytest.raises(ConfigError, match="from"):
        make(smtp_server, **{"from": "not an address"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="MAIL FROM"):
        make(smtp_server, **{"from": "hello world@acme.example"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="username_env and password_env"):
        make(smtp_server, username_env="SMTP_USERNAME")


# -- 8BITMIME (RFC 6152) --------------------------------------------------------------

_BODY = "Beste Zoë,\n\nGeef ons een cijfer van 0 tot 10 — één vraag.\n\nGroet,\nAcme\n"
_HTML = (
    '<p style="margin:0;color:#18181b">Beste Zoë,</p>\n'
    '<table role="presentation" width="100%"><tr><td>Geef ons een cijfer: € 0 … 10</td>'
    "</tr></table>\n"
)


def _parts(received: Any) -> dict[str, tuple[str, str]]:
    """subtype -> (transfer encoding, text with the wire's CRLF line ends as LF)."""
    mail = received.message
    assert not mail.defects
    out = {}
    for part in mail.walk():
        if part.get_content_maintype() == "text":
            text = part.get_content().replace("\r\n", "\n")
            out[part.get_content_subtype()] = (part["Content-Transfer-Encoding"], text)
    return out


def test_an_8bitmime_server_gets_the_text_unencoded_with_body_8bitmime(
    smtp_server: SmtpEmulator,
) -> None:
    """aiosmtpd offers 8BITMIME: the parts go as UTF-8 as they are, MAIL FROM says so,
    and they parse back to exactly the text rendered, with none of quoted-printable's
    ``=3D`` or soft line breaks."""
    run(make(smtp_server), message(body=_BODY, html=_HTML))
    [received] = smtp_server.received
    assert "BODY=8BITMIME" in received.mail_options
    assert _parts(received) == {"plain": ("8bit", _BODY), "html": ("8bit", _HTML)}
    assert "één vraag".encode() in received.data
    assert b'width="100%"' in received.data and b"=3D" not in received.data


def test_a_server_without_8bitmime_gets_quoted_printable_and_no_body_parameter() -> None:
    """A 7-bit server (it announces no 8BITMIME, refuses a BODY parameter and 8-bit text):
    a non-ASCII part is quoted-printable, an ASCII one goes as it is (7bit), and MAIL FROM
    has no BODY. The provider rendered the message for 8BITMIME before it had a session,
    as a new channel does, and renders it again for this one."""
    server = SmtpEmulator(eight_bit_mime=False)
    server.start()
    try:
        ascii_body = "Dear Anna,\n\nRate us from 0 to 10.\n"
        run(make(server), message(body=ascii_body, html=_HTML))
        [received] = server.received
    finally:
        server.stop()
    assert not any(option.startswith("BODY") for option in received.mail_options)
    assert received.data.isascii()
    assert _parts(received) == {
        "plain": ("7bit", ascii_body),
        "html": ("quoted-printable", _HTML),
    }


def test_a_retry_on_a_session_without_8bitmime_is_rendered_again_for_it(
    smtp_server: SmtpEmulator,
) -> None:
    """The server stops offering 8BITMIME to new sessions; a message rendered for the
    reused (8BITMIME) session is refused there with 421 and retried on a new one, which
    gets it quoted-printable, without BODY: rendered for the session it went out on."""
    provider = make(smtp_server)

    async def go() -> None:
        await provider.send(message(1, body=_BODY, html=_HTML))
        smtp_server.eight_bit_mime = False
        smtp_server.refuse_recipients("421 4.7.0 closing transmission channel", times=1)
        await provider.send(message(2, body=_BODY, html=_HTML))
        await provider.aclose()

    asyncio.run(go())
    first, second = smtp_server.received
    assert provider.sessions_opened == 2
    assert "BODY=8BITMIME" in first.mail_options
    assert _parts(first) == {"plain": ("8bit", _BODY), "html": ("8bit", _HTML)}
    assert not any(option.startswith("BODY") for option in second.mail_options)
    assert _parts(second) == {
        "plain": ("quoted-printable", _BODY),
        "html": ("quoted-printable", _HTML),
    }


def test_a_line_over_998_octets_stays_quoted_printable_on_an_8bitmime_server(
    smtp_server: SmtpEmulator,
) -> None:
    """RFC 5322 caps a line at 998 octets: a part with a longer one is quoted-printable
    (which breaks it softly) even where 8-bit may travel, the other part unencoded. 500
    characters of "é" are 1,000 octets: the limit is counted in octets, not characters."""
    long_body = "Beste Zoë,\n" + "é" * 500 + "\n"
    long_ascii = "<p>" + "a" * 1200 + "</p>\n"
    run(make(smtp_server), message(1, body=long_body, html=_HTML), message(2, html=long_ascii))
    first, second = smtp_server.received
    assert "BODY=8BITMIME" in first.mail_options
    assert _parts(first) == {"plain": ("quoted-printable", long_body), "html": ("8bit", _HTML)}
    assert all(len(line) <= 998 for line in first.data.split(b"\r\n"))
    assert _parts(second)["html"] == ("quoted-printable", long_ascii)
    assert _parts(second)["plain"][0] == "7bit"
    assert not any(option.startswith("BODY") for option in second.mail_options)
