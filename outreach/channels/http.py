"""What every HTTP provider shares: one client, one error mapping, Retry-After.

Each provider instance owns one httpx transport (keep-alive connections up to the
channel's ``concurrency``, each in a pool of its own behind ``ShardedTransport``; timeouts
always set from the channel's ``timeout``; HTTP/2 where the server offers it over TLS).
Retries, backoff and rate limits belong to the sending engine, not here:
``HttpChannel.request`` and ``check`` turn every way a request can fail into a
``ProviderError`` the engine can act on:

- transport failures (timeouts, refused or reset connections, broken responses) and 5xx
  are retryable; 429 is retryable with the server's ``Retry-After`` (seconds or an HTTP
  date) as ``retry_after``;
- other 4xx are permanent and carry the provider's own error code and message;
- a 2xx whose body is not the JSON the provider promises (HTML from a proxy, malformed
  JSON, a 200 with an error body) is *permanent*, code ``bad_response``: the service may
  well have accepted the message, and a retry could send it twice to a customer.

Messages never contain secrets: they name the provider and the HTTP status, not URLs or
headers, and every text that came from the wire passes through ``redact`` with the
provider's secrets first (a service echoing a token back must not leak it into the store).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import httpx

from .. import clock
from ..config import ChannelConfig
from ..errors import ConfigError, PayloadError, ProviderError, SignatureError, UsageError
from .base import WebhookRequest

# (code, message) of a provider's error body, or None when the body is no error
ErrorReader = Callable[[Any], tuple[str | None, str | None] | None]

_MAX_WIRE_TEXT = 300


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - clock.now()).total_seconds())


def json_body(body: bytes) -> Any:
    """A webhook's JSON body, or None when it is not JSON at all.

    Besides malformed JSON and bad UTF-8, hostile bodies make ``json.loads`` raise
    ValueError (integers of thousands of digits) or RecursionError (deep nesting): all of
    them mean "nothing to parse", never a crash that loses the request.
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None


def json_payload(body: bytes, provider: str) -> Any:
    """A webhook's JSON body; PayloadError when it is not JSON at all (see ``json_body``)."""
    data = json_body(body)
    if data is None:
        raise PayloadError(f"{provider}: the body is not valid JSON")
    return data


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when a payload field is the object it should be, else an empty one."""
    return value if isinstance(value, dict) else {}


def event_time(text: Any, what: str) -> datetime:
    """A payload's ISO 8601 time, or now when it is missing or not a time."""
    if isinstance(text, str) and text:
        try:
            return clock.parse_time(text, what=what)
        except UsageError:
            pass
    return clock.now()


def signed_header(
    request: WebhookRequest,
    *,
    provider: str,
    channel: str,
    header: str,
    secret: str | None,
    setting: str,
) -> tuple[str, str]:
    """A webhook's signature header and the secret to check it with.

    SignatureError 403 when the channel has no secret (nothing can be verified), 401 when
    the request carries no signature.
    """
    if secret is None:
        raise SignatureError(
            f"{provider}: [channels.{channel}] has no {setting}, so webhooks cannot be verified",
            403,
        )
    value = request.headers.get(header.lower(), "")
    if not value:
        raise SignatureError(f"{provider}: {header} header is missing", 401)
    return value, secret


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every (non-trivial) secret replaced by ``***``: in any case (a service
    may echo a token lower-cased) and URL-encoded (echoed inside a URL or a form)."""
    forms = {
        form
        for secret in secrets
        if secret and len(secret) >= 4
        for form in (secret, quote(secret, safe=""), quote_plus(secret, safe=""))
    }
    if not forms:
        return text
    # longest first, so that a secret inside a longer one does not leave the rest of it
    pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, "***", text, flags=re.IGNORECASE)


def _tls_failure(exc: BaseException) -> str | None:
    """What went wrong in a TLS handshake behind ``exc`` (httpx wraps httpcore, which wraps
    the ssl module's error), in the ssl module's own words; None when it was not TLS."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            reason = seen.reason or seen.strerror or type(seen).__name__
            return str(reason).replace("_", " ").lower()
        seen = seen.__cause__ or seen.__context__
    return None


def require_env(channel: ChannelConfig, env: Mapping[str, str], key: str) -> str:
    """The secret named by the ``key`` setting (``*_env``); ConfigError if unset or empty."""
    var = channel.settings.get(key)
    where = f"[channels.{channel.name}] {key}"
    if not var:
        raise ConfigError(f"{where} is required for provider {channel.provider}")
    value = env.get(str(var), "")
    if not value:
        raise ConfigError(
            f"{where}: environment variable {var} is not set (or empty); export {var}=… first"
        )
    return value


def optional_env(channel: ChannelConfig, env: Mapping[str, str], key: str) -> str | None:
    """The secret named by ``key`` when that setting is present, else None."""
    if not channel.settings.get(key):
        return None
    return require_env(channel, env, key)


def setting(channel: ChannelConfig, key: str, default: str | None = None) -> str:
    """A required (or defaulted) string setting; ConfigError naming the key if missing."""
    value = channel.settings.get(key, default)
    if value is None or value == "":
        raise ConfigError(
            f"[channels.{channel.name}] {key} is required for provider {channel.provider}"
        )
    return str(value)


class ShardedTransport(httpx.AsyncBaseTransport):
    """Keep-alive connections each in a pool of its own, the least busy one first.

    httpcore's pool scans every connection (and polls its socket) for every request it
    assigns, so one pool of 64 connections spends more time bookkeeping than sending:
    measured on loopback against the Twilio emulator, about 400 requests/s with one pool of
    64, 1,100 with pools of eight and 1,590 with pools of one. A list of busy counters keeps
    the ``concurrency`` a channel asks for; the pools share one TLS context (each would
    otherwise load the CA bundle again).
    """

    def __init__(self, connections: int) -> None:
        tls = httpx.create_ssl_context()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._pools = [
            httpx.AsyncHTTPTransport(verify=tls, limits=limits, http2=True, retries=0)
            for _ in range(max(1, connections))
        ]
        self._busy = [0] * len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
            # the body is read by the client after this returns; reading it here keeps the
            # busy count honest and is what every provider does anyway (small JSON bodies)
            await response.aread()
            return response
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # sent with Content-Length: 0 when empty


def _encode_body(
    json_body: Any, form: Mapping[str, str] | None, content: bytes | None
) -> tuple[bytes, bytes | None]:
    """A request's body and the Content-Type it implies, encoded as httpx encodes
    ``content=``, ``data=`` (a form of strings) and ``json=`` (compact, no NaN)."""
    if content is not None:
        return content, None
    if form is not None:
        return urlencode(list(form.items())).encode(), b"application/x-www-form-urlencoded"
    if json_body is not None:
        text = json.dumps(json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode(), b"application/json"
    return b"", None


def _basic(user: str, password: str) -> str:
    """The base64 ``user:password`` of HTTP Basic authentication."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class HttpChannel:
    """One provider's HTTP client and the mapping of its answers to ProviderError."""

    def __init__(
        self,
        provider: str,
        channel: ChannelConfig,
        *,
        base_url: str,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        retryable_codes: Iterable[str] = (),
    ) -> None:
        self.provider = provider
        # provider error codes that mean "later" even on a 4xx (Meta's rate limits)
        self.retryable_codes = frozenset(retryable_codes)
        hidden = [s for s in secrets if s]
        self.headers = {"User-Agent": "outreach", **(headers or {})}
        if auth is not None:
            basic = _basic(*auth)
            # a service that echoes the Authorization header echoes user:secret in base64
            hidden.append(basic)
            self.headers["Authorization"] = f"Basic {basic}"
        self.secrets = tuple(hidden)
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(channel.timeout).as_dict()
        self.transport = ShardedTransport(channel.concurrency)
        self._urls: dict[str, tuple[httpx.URL, str | None]] = {}

    def _url(self, path: str) -> tuple[httpx.URL, str | None]:
        """``path`` under ``base_url`` (or a whole URL), parsed once per provider, and the
        Basic ``Authorization`` its ``user:password@`` asks for (taken out of the URL)."""
        known = self._urls.get(path)
        if known is None:
            if len(self._urls) > 256:
                self._urls.clear()
            whole = (
                path
                if path.startswith(("http://", "https://"))
                else (f"{self.base_url}/{path.lstrip('/')}")
            )
            url, auth = httpx.URL(whole), None
            if url.userinfo:
                basic = _basic(url.username, url.password)
                self.secrets = (*self.secrets, basic)
                url, auth = url.copy_with(username=None, password=None), f"Basic {basic}"
            known = self._urls[path] = (url, auth)
        return known

    def _text(self, text: str) -> str:
        text = " ".join(str(text).split())
        if len(text) > _MAX_WIRE_TEXT:
            text = text[:_MAX_WIRE_TEXT] + "…"
        return redact(text, self.secrets)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; transport failures become retryable ProviderErrors.

        Straight to the transport (httpx's public transport API), not through
        ``AsyncClient``: a provider needs none of the client's redirects, cookies, auth
        flows or URL merging, which together cost a fifth of each request's CPU. The
        request is built as a transport gets one (``stream=``, its headers as bytes, Host
        and Content-Length included): httpx's own body encoding and header merging took
        four times as long, as much as the signing and the JSON of a webhook together.
        The timeout goes in the request's extensions, as the client would put it.
        """
        url, auth = self._url(path)
        merged = {**self.headers, **headers} if headers else self.headers
        if auth is not None:
            merged = {**merged, "Authorization": auth}
        body, kind = _encode_body(json_body, form, content)
        raw = [(b"Host", url.netloc)]
        if body or method in _BODY_METHODS:
            raw.append((b"Content-Length", str(len(body)).encode()))
        if kind is not None and not any(k.lower() == "content-type" for k in merged):
            raw.append((b"Content-Type", kind))
        raw.extend((k.encode("ascii"), v.encode("ascii")) for k, v in merged.items())
        request = httpx.Request(
            method,
            url,
            headers=raw,
            stream=httpx.ByteStream(body),
            extensions={"timeout": self.timeout},
        )
        try:
            return await self.transport.handle_async_request(request)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"{self.provider}: no answer in time ({type(exc).__name__})",
                retryable=True,
                code="timeout",
                ambiguous=isinstance(exc, httpx.ReadTimeout),
            ) from None
        except (httpx.TransportError, OSError) as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                # nothing was sent: the handshake failed before the request
                raise ProviderError(
                    f"{self.provider}: TLS failed ({tls}); check base_url, or behind a TLS "
                    "proxy point SSL_CERT_FILE at its CA bundle",
                    retryable=True,
                    code="tls",
                ) from None
            # str(exc) of httpx errors may hold the URL; the class name is enough
            raise ProviderError(
                f"{self.provider}: connection failed ({type(exc).__name__})",
                retryable=True,
                code="connection",
                # the whole request went out and the answer was lost
                ambiguous=isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError),
            ) from None

    def check(self, response: httpx.Response, read_error: ErrorReader) -> Any:
        """The JSON body of a successful answer; ProviderError for anything else."""
        status = response.status_code
        body: Any = None
        parsed = False
        try:
            body = response.json()
            parsed = True
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            pass
        error = read_error(body) if parsed else None
        code, detail = error if error else (None, None)
        where = f"{self.provider}: HTTP {status}"
        if status == 429:
            raise ProviderError(
                f"{where} too many requests{self._suffix(code, detail)}; will retry",
                retryable=True,
                code=code or "429",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500 or (status >= 400 and code in self.retryable_codes):
            raise ProviderError(
                f"{where} {'server error' if status >= 500 else 'temporary refusal'}"
                f"{self._suffix(code, detail)}; will retry",
                retryable=True,
                code=code or str(status),
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 300:
            if not parsed:
                kind = response.headers.get("content-type", "no content type").split(";")[0]
                detail = f"non-JSON answer ({kind})"
            raise ProviderError(
                f"{where}{self._suffix(code, detail)}",
                retryable=False,
                code=code or str(status),
            )
        if not parsed:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise ProviderError(
                f"{where} but the answer is not JSON ({kind}); the message may have been "
                "sent, so it is not retried: check the provider's console and base_url",
                retryable=False,
                code="bad_response",
            )
        if error:
            raise ProviderError(
                f"{where} with an error body{self._suffix(code, detail)}",
                retryable=False,
                code=code or "bad_response",
            )
        return body

    def bad_response(self, response: httpx.Response, what: str) -> ProviderError:
        """A permanent error for a 2xx JSON answer that lacks ``what``."""
        return ProviderError(
            f"{self.provider}: HTTP {response.status_code} but the answer has no {what}; the "
            "message may have been sent, so it is not retried",
            retryable=False,
            code="bad_response",
        )

    def _suffix(self, code: str | None, detail: str | None) -> str:
        parts = [p for p in (code and f"code {code}", detail and self._text(detail)) if p]
        return ": " + ", ".join(parts) if parts else ""

    async def aclose(self) -> None:
        await self.transport.aclose()
