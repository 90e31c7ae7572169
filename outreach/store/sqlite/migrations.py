"""The schema, as small named migrations that are never edited once shipped.

Add a change as the next ``mNNN_…`` function. Times are stored as UTC ISO 8601 text
(``clock.iso``), which sorts and compares as time.
"""

from __future__ import annotations

import re

from sqlite_utils import Database, Migrations

migrations = Migrations("outreach")


@migrations()
def m001_customers(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE customers (
            id TEXT PRIMARY KEY,
            name TEXT,
            email TEXT,
            phone TEXT,
            preferred_channel TEXT,
            locale TEXT,
            timezone TEXT,
            verified INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX customers_email ON customers(email);
        CREATE INDEX customers_phone ON customers(phone);
        -- extra addresses a customer is known by (messaging-platform user ids, WhatsApp ids)
        CREATE TABLE addresses (
            channel TEXT NOT NULL,
            address TEXT NOT NULL,
            customer_id TEXT NOT NULL REFERENCES customers(id),
            PRIMARY KEY (channel, address)
        );
        """
    )


@migrations()
def m002_consent(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE consent (
            id INTEGER PRIMARY KEY,
            customer_id TEXT NOT NULL REFERENCES customers(id),
            channel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('opted_in', 'opted_out')),
            source TEXT NOT NULL,
            evidence TEXT,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX consent_current ON consent(customer_id, channel, id);
        -- the ledger only grows
        CREATE TRIGGER consent_no_update BEFORE UPDATE ON consent
            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
        CREATE TRIGGER consent_no_delete BEFORE DELETE ON consent
            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
        """
    )


@migrations()
def m003_campaigns(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE occurrences (
            id INTEGER PRIMARY KEY,
            campaign TEXT NOT NULL,
            occurrence TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('planning', 'planned', 'missed')),
            audience INTEGER NOT NULL DEFAULT 0,
            planned_at TEXT NOT NULL,
            UNIQUE (campaign, occurrence)
        );
        CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            campaign TEXT,
            occurrence TEXT,
            customer_id TEXT NOT NULL REFERENCES customers(id),
            channel TEXT,
            purpose TEXT NOT NULL DEFAULT 'campaign',
            template TEXT NOT NULL,
            counts_for_cap INTEGER NOT NULL DEFAULT 1,
            window TEXT,
            status TEXT NOT NULL CHECK (status IN (
                'queued', 'deferred', 'sending', 'sent', 'delivered', 'read',
                'failed', 'skipped', 'unknown')),
            reason TEXT,
            error TEXT,
            not_before TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            provider_message_id TEXT,
            context TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT
        );
        -- exactly-once: one campaign delivery per (campaign, occurrence, customer)
        CREATE UNIQUE INDEX deliveries_once ON deliveries(campaign, occurrence, customer_id)
            WHERE purpose = 'campaign';
        CREATE INDEX deliveries_due ON deliveries(status, not_before);
        CREATE INDEX deliveries_customer ON deliveries(customer_id, sent_at);
        CREATE INDEX deliveries_provider_id ON deliveries(provider_message_id);
        """
    )


@migrations()
def m004_conversations(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            customer_id TEXT NOT NULL UNIQUE REFERENCES customers(id),
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
            needs_attention INTEGER NOT NULL DEFAULT 0,
            attention_reason TEXT,
            last_inbound_at TEXT,
            last_inbound_channel TEXT,
            auto_reply_until TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX conversations_attention ON conversations(needs_attention, updated_at);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            customer_id TEXT NOT NULL REFERENCES customers(id),
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            channel TEXT NOT NULL,
            address TEXT,
            subject TEXT,
            text TEXT NOT NULL,
            external_id TEXT,
            delivery_id TEXT REFERENCES deliveries(id),
            campaign TEXT,
            author TEXT,
            at TEXT NOT NULL
        );
        -- a provider's retry of the same inbound message is stored once
        CREATE UNIQUE INDEX messages_external ON messages(channel, external_id)
            WHERE direction = 'in' AND external_id IS NOT NULL;
        CREATE INDEX messages_conversation ON messages(conversation_id, at, id);
        CREATE INDEX messages_in_at ON messages(direction, at);
        CREATE TABLE survey_responses (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL UNIQUE REFERENCES messages(id),
            delivery_id TEXT NOT NULL REFERENCES deliveries(id),
            customer_id TEXT NOT NULL REFERENCES customers(id),
            campaign TEXT NOT NULL,
            occurrence TEXT,
            question TEXT,
            type TEXT NOT NULL,
            answer TEXT,
            score INTEGER,
            valid INTEGER NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX survey_responses_campaign ON survey_responses(campaign, occurrence);
        """
    )


@migrations()
def m005_meta(db: Database) -> None:
    db.executescript(
        """
        -- workspace-wide facts such as the key that signs unsubscribe tokens (never shown)
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )


@migrations()
def m006_occurrence_survey(db: Database) -> None:
    # The survey as it was when the occurrence was planned (question, type, choices,
    # expires_seconds, follow_up), so a later edit of the campaign file cannot change how
    # replies to an earlier send are read.
    db.execute("ALTER TABLE occurrences ADD COLUMN survey TEXT")


@migrations()
def m400_report_indexes(db: Database) -> None:
    # `report` counts a campaign's deliveries by status and reason, and finds its first
    # send, from deliveries_report alone. deliveries_sent answers "which campaign delivery
    # did this customer get last before this reply" from the index alone, for `replied`
    # and for the campaign column of `export replies`. Revocations are found by time.
    db.executescript(
        """
        CREATE INDEX deliveries_report
            ON deliveries(campaign, occurrence, status, reason, sent_at)
            WHERE purpose = 'campaign';
        CREATE INDEX deliveries_sent
            ON deliveries(customer_id, sent_at, campaign, status)
            WHERE purpose = 'campaign';
        CREATE INDEX consent_revocations ON consent(status, recorded_at);
        """
    )


@migrations()
def m300_inbound_email_lookup(db: Database) -> None:
    # Inbound email is matched case-insensitively (lower(email)); without this index every
    # batch of replies would scan the whole customers table.
    db.execute("CREATE INDEX customers_email_lower ON customers(lower(email))")


@migrations()
def m007_claim_index(db: Database) -> None:
    # A send pass claims the next due deliveries of one channel in not_before order; with
    # this index each status is one ordered range scan that stops at the LIMIT, instead of
    # sorting every due delivery on each claim.
    db.execute("CREATE INDEX deliveries_claim ON deliveries(channel, status, not_before, id)")


@migrations()
def m008_cap_index(db: Database) -> None:
    # Frequency caps count each audience member's recent campaign deliveries while a plan
    # is written; a covering index answers that from the index alone (10x faster than
    # reading each row). It also serves every other per-customer lookup of campaign
    # deliveries, so deliveries_customer is no longer needed: one index less per insert.
    db.executescript(
        """
        CREATE INDEX deliveries_cap
            ON deliveries(customer_id, status, sent_at, not_before, campaign)
            WHERE counts_for_cap = 1;
        DROP INDEX deliveries_customer;
        """
    )


@migrations()
def m009_inbound_by_customer(db: Database) -> None:
    # Before each send the engine asks whether the customer wrote on that channel in the
    # last 24 hours (WhatsApp's service window, replies without consent); without this
    # index every such question read every inbound message.
    db.execute("CREATE INDEX messages_customer_in ON messages(customer_id, channel, direction, at)")


@migrations()
def m010_inbound_indexes_partial(db: Database) -> None:
    # Both indexes serve only questions about inbound messages (direction = 'in'), yet
    # every outbound message of a campaign was written into them too: partial indexes
    # leave a campaign's messages out (two index writes less per delivery).
    db.executescript(
        """
        DROP INDEX messages_in_at;
        CREATE INDEX messages_in_at ON messages(at) WHERE direction = 'in';
        DROP INDEX messages_customer_in;
        CREATE INDEX messages_customer_in ON messages(customer_id, channel, at)
            WHERE direction = 'in';
        """
    )


@migrations()
def m011_addresses_by_customer(db: Database) -> None:
    # Platform user ids are looked up per customer (WHERE channel = ? AND customer_id IN
    # ...) by the planner and the engine; the key (channel, address) made each lookup read
    # every address on the channel.
    db.execute("CREATE INDEX addresses_customer ON addresses(customer_id, channel)")


@migrations()
def m190_email_replies(db: Database) -> None:
    # What an email reply was besides its new text: the full body (quotes included), the
    # message as received, attachments' metadata, and why a person should look at it.
    # mailbox_sync remembers where each channel's IMAP folder was read up to (UIDVALIDITY
    # + the last UID stored), so a sync from cron reads every message once.
    db.executescript(
        """
        CREATE TABLE email_messages (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id),
            kind TEXT NOT NULL CHECK (kind IN ('reply', 'auto_reply')),
            full_text TEXT,
            raw BLOB,
            size INTEGER NOT NULL,
            attachments TEXT,
            problem TEXT
        );
        CREATE TABLE mailbox_sync (
            channel TEXT NOT NULL,
            mailbox TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (channel, mailbox)
        );
        """
    )
    # A bounce marks its delivery 'bounced'. Widening a CHECK list changes nothing stored,
    # so the table definition is edited in place (the procedure SQLite's ALTER TABLE page
    # gives for CHECK constraints) instead of copying every delivery into a new table.
    row = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'"
    ).fetchone()
    old = "'failed', 'skipped', 'unknown')"
    if row and "'bounced'" not in row[0] and old in row[0]:
        new = row[0].replace(old, "'failed', 'skipped', 'unknown', 'bounced')")
        version = db.execute("PRAGMA schema_version").fetchone()[0]
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'deliveries'",
            [new],
        )
        db.execute(f"PRAGMA schema_version = {int(version) + 1}")
        db.execute("PRAGMA writable_schema = OFF")


@migrations()
def m160_message_kinds(db: Database) -> None:
    # What an inbound message was besides its text: its kind (NULL for plain text, else
    # image, location, contacts, reaction, revoke, edit, number_change, ...) and, as JSON,
    # what that kind carries (media URLs and types, coordinates, contact cards, the message
    # a reaction or deletion refers to, the old and new number).
    db.executescript(
        """
        ALTER TABLE messages ADD COLUMN kind TEXT;
        ALTER TABLE messages ADD COLUMN details TEXT;
        """
    )


@migrations()
def m200_workers(db: Database) -> None:
    # Leases: every sending process has a row here, kept fresh by a heartbeat, and each
    # claimed delivery names the process that claimed it (claimed_by). Recovery then turns
    # only a dead process's ``sending`` rows into ``unknown``, never a live one's (serve's
    # replies in flight while a run starts). Times are the real time (SQLite's own 'now'),
    # never the --now a run may be given. No foreign key: a worker's row goes when it ends;
    # AUTOINCREMENT, so that an id is never given again (a live worker declared dead
    # renews its own row, which must not be another's).
    db.executescript(
        """
        CREATE TABLE workers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('run', 'worker', 'helper', 'serve')),
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL
        );
        ALTER TABLE deliveries ADD COLUMN claimed_by INTEGER;
        """
    )


@migrations()
def m210_rate_limits(db: Database) -> None:
    # A send rate shared by every process on the workspace: per key (a channel's or a
    # campaign's), the next free send slot, in seconds since the epoch.
    db.executescript(
        """
        CREATE TABLE rate_limits (
            key TEXT PRIMARY KEY,
            next_at REAL NOT NULL
        );
        """
    )


@migrations()
def m211_rate_limits_monotonic(db: Database) -> None:
    # The next free slot on the machine's monotonic clock instead of the wall clock (which
    # an NTP step or a manual change can move back, stalling every send by as much), with
    # the time of the last reservation: a clock found behind it (a reboot restarts the
    # monotonic clock) moves the schedule back with it. The rows written on the wall
    # clock are a few ms of schedule, given up.
    db.executescript(
        """
        DELETE FROM rate_limits;
        ALTER TABLE rate_limits ADD COLUMN reserved_at REAL NOT NULL DEFAULT 0;
        """
    )


@migrations()
def m212_claim_indexes_partial(db: Database) -> None:
    # A send pass rewrote every index holding the status twice per delivery (claimed, then
    # sent). deliveries_claim now holds only the due states, in (not_before, id) order per
    # channel: a claim is one range that stops at its LIMIT, removes the row from the
    # index, and recording the send touches it no more (the status at the end: counting
    # the due by state reads the index alone). A delivery gets its provider id
    # when it is sent: the entries of those not sent yet were NULLs no lookup asks for.
    db.executescript(
        """
        DROP INDEX deliveries_claim;
        CREATE INDEX deliveries_claim ON deliveries(channel, not_before, id, status)
            WHERE status IN ('queued', 'deferred');
        DROP INDEX deliveries_provider_id;
        CREATE INDEX deliveries_provider_id ON deliveries(provider_message_id)
            WHERE provider_message_id IS NOT NULL;
        """
    )


@migrations()
def m213_status_check_compared(db: Database) -> None:
    # CHECK (status IN (ten states)) built a temporary b-tree of the ten names for every
    # row written with a status (SQLite compares in place only for up to two values): two
    # per delivery sent, a million for a plan of a million. The same rule as equalities
    # is checked by comparisons alone. Edited in place as in m190: nothing stored changes.
    row = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'"
    ).fetchone()
    found = re.search(r"CHECK \(status IN \(([^)]*)\)\)", row[0]) if row else None
    if row is None or found is None:
        return
    states = [s.strip() for s in found.group(1).split(",")]
    rule = " OR ".join(f"status = {s}" for s in states)
    new = row[0].replace(found.group(0), f"CHECK ({rule})")
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    db.execute(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'deliveries'", [new]
    )
    db.execute(f"PRAGMA schema_version = {int(version) + 1}")
    db.execute("PRAGMA writable_schema = OFF")
