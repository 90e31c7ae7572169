"""The store interface: what the rest of outreach may ask of a database, whatever the engine.

A ``Store`` is grouped by concern, as the tables are: ``store.customers``, ``store.consent``,
``store.deliveries``, ``store.conversations``, ``store.reports``, ``store.meta``,
``store.workers``, ``store.limits``. Each implementation (``sqlite/``, ``postgresql/``)
provides every method with the same guarantees, and ``tests/store/`` holds the contract
each must pass. Nothing outside ``store/`` sees a
connection, a cursor or SQL.

Rows come back as plain dicts (or tuples where a stream is written straight to a file), so
that callers never depend on one driver's row type. Times are UTC ISO 8601 text
(``clock.iso``). A method documented "caller holds the transaction" must run inside
``with store.write():``, so that everything one piece of work changes commits or rolls back
together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# The columns of ``customers`` that outreach itself owns; anything else is an attribute.
CUSTOMER_COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "preferred_channel",
    "locale",
    "timezone",
    "verified",
    "created_at",
    "updated_at",
)

# A planned delivery as the planner hands it to ``Deliveries.insert_deliveries``.
DELIVERY_COLUMNS = (
    "id",
    "campaign",
    "occurrence",
    "customer_id",
    "channel",
    "purpose",
    "template",
    "counts_for_cap",
    "window",
    "status",
    "reason",
    "not_before",
    "context",
    "created_at",
    "updated_at",
)

# What an inbound batch hands ``Conversations.merge_conversations`` per conversation.
CONVERSATION_NEWS = (
    "id",
    "last_inbound_at",
    "last_inbound_channel",
    "auto_reply_until",
    "updated_at",
    "attention_reason",
    "attention_rank",
)

SENT_STATUSES = ("sent", "delivered", "read", "bounced")  # a bounce was sent first

# The tuples ``Reports.iter_replies`` and ``Reports.iter_conversation_messages`` yield;
# kind and details come last, so that a sheet or script reading the first columns by
# position is unchanged: kind is "text" or what arrived, details JSON (media URLs, ...)
REPLY_COLUMNS = (
    "received_at",
    "customer_id",
    "customer_name",
    "channel",
    "campaign",
    "question",
    "answer",
    "text",
    "conversation_id",
    "message_id",
    "provider_message_id",
    "kind",
    "details",
)
CONVERSATION_COLUMNS = (
    "conversation_id",
    "customer_id",
    "customer_name",
    "direction",
    "channel",
    "at",
    "subject",
    "text",
    "campaign",
    "delivery_id",
    "message_id",
    "provider_message_id",
    "kind",
    "details",
)

# (customer, channel, status, source, evidence, recorded_at): one consent ledger row.
ConsentRow = tuple[str, str, str, str, str | None, str]


class SendResult(Protocol):
    """What the sending engine records of one claimed delivery."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def at(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def provider_message_id(self) -> str | None: ...
    @property
    def sent_at(self) -> str | None: ...
    @property
    def not_before(self) -> str | None: ...
    @property
    def attempts_back(self) -> bool: ...


class Customers(Protocol):
    """Customers, their attribute columns, extra addresses and audience selection."""

    def attribute_columns(self) -> list[str]:
        """The customer columns that came from import files (everything not built in)."""
        ...

    def all_columns(self) -> list[str]:
        """Every customer column, built-in ones first."""
        ...

    def ensure_columns(self, names: Sequence[str]) -> None:
        """Add attribute columns that do not exist yet (names compare case-insensitively)."""
        ...

    def upsert_customers(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], at: str
    ) -> tuple[int, int]:
        """Insert or update customers; (created, updated). None keeps the stored value.
        Caller holds the transaction."""
        ...

    def get_customer(self, customer_id: str) -> dict[str, Any] | None: ...

    def require_customer(
        self, customer_id: str, *, see: str = "outreach customers list"
    ) -> dict[str, Any]:
        """``get_customer``, or NotFoundError naming the command that lists the known ones."""
        ...

    def get_customers(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def existing_customer_ids(self, ids: Sequence[str]) -> set[str]: ...

    def count_customers(self) -> dict[str, int]:
        """{"customers": verified, "unverified_contacts": unverified}."""
        ...

    def find_customer_by_address(self, channel: str, kind: str, address: str) -> str | None:
        """The id of the customer known by ``address`` on ``channel`` (``kind``: email,
        phone or user)."""
        ...

    def customers_by_address(
        self, channel: str, kind: str, addresses: Iterable[str]
    ) -> dict[str, str]:
        """address → customer id for many addresses, with ``find_customer_by_address``'s
        precedence (the channel's addresses, then the column, verified and oldest first)."""
        ...

    def user_addresses(self, channel: str, ids: Sequence[str]) -> dict[str, str]:
        """customer id → the platform user id that reaches them on ``channel``."""
        ...

    def add_address(self, channel: str, address: str, customer_id: str) -> None: ...

    def create_contact(self, customer_id: str, fields: dict[str, Any], at: str) -> None:
        """Insert an unverified contact (someone who wrote in from an unknown address)."""
        ...

    def change_phone(self, customer_id: str, phone: str, at: str) -> None:
        """Give a customer a new phone number (a WhatsApp number change). Caller holds the
        transaction."""
        ...

    # An import's memory of the ids it has seen, kept by the store rather than in Python.
    def begin_import_scratch(self) -> None: ...

    def import_ids_seen(self, ids: Sequence[str]) -> dict[str, int]: ...

    def remember_import_ids(self, rows: Sequence[tuple[str, int]]) -> None: ...

    def end_import_scratch(self) -> None: ...

    def validate_where(self, where: str | None) -> None:
        """UsageError unless ``where`` is a read-only condition over customer columns."""
        ...

    def select_customers(
        self,
        where: str | None,
        *,
        limit: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Customers matching ``where``, by id, streamed; the filter is checked by the call."""
        ...


class ConsentLedger(Protocol):
    """The consent ledger: append-only; the current consent is the latest row."""

    def append_consent(self, rows: Iterable[ConsentRow]) -> int:
        """Append ledger rows; returns how many. Caller holds the transaction."""
        ...

    def current_consent_for(self, customer_id: str, channel: str) -> str | None: ...

    def current_consent_many(self, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """customer id → {channel: current status}."""
        ...

    def customers_with_history(self, ids: Sequence[str], channel: str) -> set[str]: ...

    def consent_history(self, customer_id: str) -> list[dict[str, Any]]:
        """Every ledger row of a customer, oldest first."""
        ...

    def consent_summary(self) -> dict[str, dict[str, int]]:
        """channel → {status: customers} over current consent."""
        ...


class Deliveries(Protocol):
    """Occurrences and deliveries: planning, claiming, recording results, status events.

    Every state change of a delivery is guarded by its old state, so two processes can
    never both send the same delivery.
    """

    def occurrence_status(self, campaign: str, occurrence: str) -> str | None: ...

    def begin_occurrence(
        self, campaign: str, occurrence: str, kind: str, survey: dict[str, Any] | None, at: str
    ) -> None:
        """Record that planning of an occurrence started (idempotent)."""
        ...

    def finish_occurrence(self, campaign: str, occurrence: str, audience: int) -> None: ...

    def record_missed(self, campaign: str, occurrence: str, kind: str, at: str) -> None: ...

    def known_occurrences(self, campaign: str) -> dict[str, str]:
        """occurrence → status for one campaign."""
        ...

    def occurrence_survey(self, campaign: str, occurrence: str) -> dict[str, Any] | None: ...

    def insert_deliveries(self, rows: Sequence[Sequence[Any]]) -> int:
        """Insert planned deliveries (DELIVERY_COLUMNS order); one per (campaign,
        occurrence, customer): a key already there is kept. Caller holds the transaction."""
        ...

    def insert_reply(self, row: Sequence[Any]) -> None:
        """Insert one non-campaign delivery (follow-up, keyword or agent reply), in
        DELIVERY_COLUMNS order."""
        ...

    def count_due(self, now: str, channels: Sequence[str] | None = None) -> int: ...

    def cap_usage(
        self,
        ids: Sequence[str],
        since: str,
        campaign: str | None = None,
        *,
        states: Sequence[str],
    ) -> dict[str, int]:
        """customer → cap-counting campaign deliveries in ``states`` since ``since``."""
        ...

    def claim_due(
        self,
        now: str,
        limit: int,
        *,
        campaigns: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        from_states: Sequence[str],
        worker: int | None = None,
    ) -> list[dict[str, Any]]:
        """Move up to ``limit`` due deliveries in ``from_states`` to ``sending`` (the domain's
        table of moves says which) and return them, each with the
        customer's current ``consent`` on its channel and ``attempts`` as before this claim.
        No two claimers ever get the same delivery. ``worker``: the claimer's row in
        ``workers``, kept as ``claimed_by`` (None: no claimer, recovered by anyone)."""
        ...

    def record_results(
        self, updates: Sequence[SendResult], outbound: Sequence[dict[str, Any]]
    ) -> None:
        """Write send results, each guarded by the ``sending`` state, and append the sent
        messages to their conversations, in one transaction."""
        ...

    def in_flight_of(self, worker: int) -> dict[str, str]:
        """The ``sending`` deliveries claimed by ``worker`` (id → channel), read in the
        caller's write transaction; locked until it ends on PostgreSQL, so that two
        recoverers of one dead claimer never both act on a row."""
        ...

    def recover_in_flight(
        self,
        idempotent_channels: Iterable[str],
        at: str,
        *,
        lease: float,
        dead: Sequence[int] = (),
    ) -> dict[str, int]:
        """``sending`` rows left by a dead process become ``unknown`` (``queued`` on
        idempotent channels); {"requeued": n, "unknown": n}.

        A claimer is dead when its heartbeat is older than ``lease`` seconds (real time:
        the database server's clock where there is one), when its id is in ``dead`` (the
        caller found its pid gone on this host), or when it has no row in ``workers``; a
        row without a claimer is recovered too. The dead claimers' rows are deleted once
        they hold nothing."""
        ...

    def planning_lock(
        self, campaign: str, occurrence: str, *, caps: bool
    ) -> AbstractContextManager[bool]:
        """Hold the right to plan this occurrence: yields False at once when another
        process holds it (it plans; this one only sends). ``caps``: the occurrence counts
        for frequency caps, so its planning also waits for every other cap-counting plan.
        Released when the block ends, or when the process dies."""
        ...

    def planning_elsewhere(self, campaign: str, occurrence: str) -> bool:
        """Whether another process holds this occurrence's planning lock now."""
        ...

    def retry_unknown(self, at: str) -> int: ...

    def apply_status(
        self,
        provider_message_id: str,
        status: str,
        at: str,
        error: str | None = None,
        reason: str | None = None,
        *,
        from_states: Sequence[str],
    ) -> int:
        """Move the delivery with this provider id to ``status`` from one of ``from_states``
        (a late "sent" never undoes "delivered"); how many changed. Caller holds the
        transaction."""
        ...

    def customer_of_sent_message(self, provider_message_id: str) -> str | None: ...

    def delivery_outcome(self, delivery_id: str) -> dict[str, Any] | None: ...

    def delivery_outcomes(self, delivery_ids: Iterable[str]) -> list[dict[str, Any]]:
        """id, customer_id, channel, status, reason and error of these deliveries."""
        ...

    def delivery_status_counts(self, delivery_ids: Iterable[str]) -> dict[str, int]: ...

    def summarize(
        self, keys: Iterable[tuple[str, str]]
    ) -> Iterator[tuple[str, str, dict[str, int]]]:
        """Per (campaign, occurrence): campaign deliveries by status."""
        ...

    def queue_rows(self, limit: int | None) -> Iterator[dict[str, Any]]:
        """Deliveries still to be sent, or whose fate is unknown, soonest first."""
        ...

    def due_reply_ids(self, now: str, limit: int) -> list[str]:
        """Queued replies (confirmations, follow-ups, auto and agent replies) due by ``now``,
        oldest first: what ``serve``'s reply sender owns, sent again after a crash."""
        ...


class Conversations(Protocol):
    """Conversations (one per customer), their messages and survey responses.

    Writing methods expect the caller to hold the transaction, so that one inbound message
    with everything it causes commits or rolls back as a whole.
    """

    def get_conversation(self, customer_id: str) -> dict[str, Any] | None: ...

    def conversations_for(self, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def ensure_conversation(self, customer_id: str, at: str) -> int: ...

    def create_conversation(self, customer_id: str, at: str) -> int: ...

    def update_conversation(self, conversation_id: int, **fields: Any) -> None: ...

    def hold_customers(self, customer_ids: Iterable[str]) -> bool:
        """Until the transaction ends, no other process handles inbound messages of these
        customers: what one batch reads of them (conversation, open surveys, consent) stays
        true until it commits. Call before reading them. True when the transaction now
        holds every customer (so none needs holding later in it). Caller holds the
        transaction."""
        ...

    def merge_conversations(self, rows: Iterable[Sequence[Any]], ranks: Mapping[str, int]) -> None:
        """Merge what a batch of inbound messages learnt into conversations, in the database
        (never a row written back from memory, so that writers side by side lose nothing).

        Each row is in CONVERSATION_NEWS order: the later ``last_inbound_at`` wins, with
        its ``last_inbound_channel``; the later ``auto_reply_until`` and ``updated_at``
        win; an ``attention_reason`` (None: none) flags the conversation and replaces the
        stored reason unless that one ranks higher (``attention_rank`` is the new reason's,
        ``ranks`` the stored one's; unknown reasons rank 0). Every row also opens its
        conversation. Caller holds the transaction."""
        ...

    def insert_message(self, **fields: Any) -> int | None:
        """Append one message; its id, or None for an inbound duplicate (same channel and
        provider id), which is not stored."""
        ...

    def record_outbound(self, rows: list[dict[str, Any]]) -> None: ...

    def insert_survey_response(self, **fields: Any) -> None: ...

    def open_survey_candidates(self, customer_id: str) -> list[dict[str, Any]]: ...

    def survey_candidates_for(
        self, customer_ids: Iterable[str]
    ) -> dict[str, list[dict[str, Any]]]: ...

    def wrote_since(self, pairs: Iterable[tuple[str, str]], since: str) -> set[tuple[str, str]]:
        """Which (customer id, channel) pairs have an inbound message at or after ``since``."""
        ...

    def list_conversations(
        self, *, needs_attention: bool = False, since: str | None = None
    ) -> Iterator[dict[str, Any]]: ...

    def transcript(self, customer_id: str) -> list[dict[str, Any]]: ...

    def conversation_summary(self, customer_id: str) -> dict[str, Any] | None: ...

    def email_thread(self, customer_id: str, channel: str) -> dict[str, Any]:
        """What a reply on ``channel`` answers: the customer's latest message there
        (``in_subject``, ``in_id``: its Message-ID) and outreach's latest message there with
        a subject (``out_subject``, ``out_delivery``)."""
        ...


class Reports(Protocol):
    """Reads for exports, campaign reports and the workspace status; nothing writes."""

    def iter_replies(
        self, *, campaign: str | None, since: str | None, until: str | None
    ) -> Iterator[tuple[Any, ...]]:
        """One tuple per inbound message (REPLY_COLUMNS), oldest first, streamed."""
        ...

    def iter_conversation_messages(
        self, *, campaign: str | None, since: str | None, until: str | None
    ) -> Iterator[tuple[Any, ...]]:
        """One tuple per message (CONVERSATION_COLUMNS), streamed."""
        ...

    def campaign_in_store(self, campaign: str) -> bool: ...

    def stored_campaigns(self) -> list[str]: ...

    def occurrences(self, campaign: str) -> list[dict[str, Any]]: ...

    def delivery_figures(self, campaign: str, occurrence: str | None) -> dict[str, Any]: ...

    def opted_out_after(self, campaign: str, occurrence: str | None, first_sent: str) -> int: ...

    def replied_deliveries(self, campaign: str, occurrence: str | None, first_sent: str) -> int: ...

    def survey_answers(
        self, campaign: str, occurrence: str | None
    ) -> list[tuple[str | None, int | None, int]]: ...

    def planned_occurrences(self) -> dict[str, dict[str, Any]]: ...

    def queue_figures(self) -> dict[str, Any]: ...

    def attention_figures(self, limit: int = 10) -> dict[str, Any]: ...


class Mail(Protocol):
    """Email's own rows: what a stored reply was, where a mailbox sync stopped, bounces."""

    def save_email_parts(self, rows: Sequence[dict[str, Any]]) -> None:
        """One row per stored email (message_id, kind, full_text, raw, size, attachments,
        problem); a message already described is kept. Caller holds the transaction."""
        ...

    def raw_email(self, message_id: int) -> bytes | None: ...

    def mailbox_position(self, channel: str, mailbox: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID stored) of a channel's folder, or None before a sync."""
        ...

    def save_mailbox_position(
        self, channel: str, mailbox: str, uidvalidity: int, last_uid: int, at: str
    ) -> None: ...

    def bounce_delivery(
        self,
        message_id: str,
        reason: str,
        error: str | None,
        at: str,
        from_states: Sequence[str],
    ) -> dict[str, Any] | None:
        """Move the delivery sent as this Message-ID to ``bounced`` (from ``from_states``);
        {id, customer_id, channel, changed}, or None for a Message-ID never sent."""
        ...

    def email_parts_of_customer(self, customer_id: str) -> dict[str, dict[str, Any]]: ...

    def customers_by_reply_token(self, tokens: Sequence[str]) -> dict[str, str]:
        """token → customer for many Reply-To tokens at once."""
        ...

    def customers_by_sent_message(self, message_ids: Sequence[str]) -> dict[str, str]:
        """Message-ID (as quoted, without <>) → the customer it was sent to, for many at
        once; a provider id is looked for with and without brackets, and as a delivery id."""
        ...


class Workers(Protocol):
    """The processes that send (``run``, ``worker``, a run's helpers, ``serve``), each with
    a lease kept by heartbeats. Times are real time, never the clock a run may be given:
    on a server, the server's own clock, so hosts whose clocks differ agree."""

    def register(self, host: str, pid: int, kind: str) -> int:
        """Add this process; its worker id."""
        ...

    def heartbeat(self, worker_id: int, host: str, pid: int, kind: str) -> None:
        """Renew the lease (the row is made again if recovery removed it meanwhile)."""
        ...

    def unregister(self, worker_id: int) -> None: ...

    def on_host(self, host: str) -> list[tuple[int, int]]:
        """(worker id, pid) of every worker registered from ``host``."""
        ...

    def list_workers(self) -> list[dict[str, Any]]:
        """Every worker: id, host, pid, kind, and the age of its heartbeat in seconds."""
        ...


class Meta(Protocol):
    """Workspace-wide facts."""

    def signing_key(self) -> bytes:
        """The key that signs unsubscribe tokens, made on first use and kept."""
        ...


class Limits(Protocol):
    """Send rates shared by every process on this database (a channel's or campaign's
    ``rate``), kept as virtual scheduling (GCRA): one row per key holds the next free slot.

    Time is the database's own clock (the server's, on PostgreSQL: hosts' clocks differ),
    and only the wait it computes leaves the store, so no host's clock is compared with it.
    """

    def reserve(self, key: str, per_second: float, count: int) -> float:
        """Reserve the next ``count`` slots of ``key``, spaced ``1 / per_second`` apart for
        all processes together: the row's next slot moves by ``count / per_second`` from
        the later of itself and now. The seconds (>= 0) to wait before the first of them.
        One atomic statement; never inside a caller's transaction (it would hold the row
        for every other sender until that commits)."""
        ...


class Store(Protocol):
    """An open workspace database."""

    customers: Customers
    consent: ConsentLedger
    deliveries: Deliveries
    conversations: Conversations
    reports: Reports
    mail: Mail
    meta: Meta
    workers: Workers
    limits: Limits

    @property
    def name(self) -> str:
        """How messages name this database (a file name, or host/database; no password)."""
        ...

    def applied_migrations(self) -> list[str]:
        """Names of the schema migrations this database has, in the order applied."""
        ...

    def write(self) -> AbstractContextManager[object]:
        """One write transaction; nested uses join the outer one."""
        ...

    def when_unlocked(self, work: Callable[[], T]) -> T:
        """Run ``work`` (a whole write transaction), retrying while another process holds
        the lock; StoreBusy once the busy timeout has passed."""
        ...

    def retrying(self, work: Callable[[], T]) -> T:
        """Run ``work`` (a whole unit of work: its transaction and the Python state it
        builds) again after a fault that rolled it back: on PostgreSQL a lost connection
        (on a new one), a deadlock, a serialization failure. Inside a transaction it runs
        once (the outermost unit is re-run). SQLite has no such faults: ``work()``."""
        ...

    def poll_for_locks(self) -> None:
        """Tune for a process that retries with ``when_unlocked`` (``serve``)."""
        ...

    def check(self) -> None:
        """Raise StoreError unless the database answers (a health check)."""
        ...

    def use_large_cache(self) -> None:
        """More cache for writing a large plan with its indexes (the planner asks)."""
        ...

    def checkpoints_aside(self) -> AbstractContextManager[None]:
        """While the block runs, the housekeeping a commit would do (SQLite's WAL
        checkpoints) is done on a thread, so that a send pass's commits stay short."""
        ...

    def close(self) -> None: ...
