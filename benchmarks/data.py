"""Deterministic benchmark data: customers and normalized replies, generated from a seed.

Every benchmark generates its own input so that anyone can reproduce a figure with nothing
but this folder. The data is shaped like a real customer base of a Dutch company with
customers in the Netherlands, Belgium, the United States and the United Kingdom:

- realistic names (accents included) and emails derived from them;
- phone numbers that ``phonenumbers.is_valid_number`` accepts, unique per customer because
  the customer's index is part of the number (NL mobiles ``+31 6 1xxxxxxx``, BE mobiles
  ``+32 47x xxx xxx``, UK mobiles ``+44 7400 xxxxxx``, US ``+1 NPA 5xx xxxx``);
- IANA time zones chosen so that at ``NOW`` (a Tuesday, 15:30 UTC) every customer's local
  time is inside the default 09:00-20:00 sending window, and the workspace (Amsterdam) is
  inside its business hours: no delivery is deferred and no out-of-hours reply is sent, so
  the benchmarks measure sending, not waiting;
- preferred channels, consent on the preferred channel (and email for most), a plan and a
  country column that audience filters can use.

Rows are produced by generators and written line by line, so a million rows need no memory.
"""

from __future__ import annotations

import csv
import json
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SEED = 20261201
# Every zone below is inside 09:00-20:00 local at this moment, Amsterdam inside Mon-Fri
# 09:00-17:30, and it is after the nps example campaign's 2026-12-01 occurrence.
NOW = "2026-12-01T15:30:00Z"

_FIRST = {
    "NL": [
        "Anna",
        "Sanne",
        "Fleur",
        "Lotte",
        "Emma",
        "Julia",
        "Daan",
        "Joost",
        "Pieter",
        "Sem",
        "Lucas",
        "Bram",
        "Thijs",
        "Noor",
        "Inge",
        "Maarten",
        "Eline",
        "Ruben",
    ],
    "BE": [
        "Lien",
        "Wout",
        "Elke",
        "Jens",
        "Louise",
        "Arne",
        "Hélène",
        "Céline",
        "Kobe",
        "Nathalie",
        "Seppe",
        "Marie",
        "Thibault",
        "Febe",
        "Lars",
        "Zoë",
    ],
    "US": [
        "James",
        "Mary",
        "Robert",
        "Patricia",
        "Michael",
        "Jennifer",
        "David",
        "Linda",
        "Ashley",
        "Christopher",
        "Jessica",
        "Daniel",
        "María",
        "José",
        "Aaliyah",
        "Tyler",
    ],
    "GB": [
        "Oliver",
        "Amelia",
        "George",
        "Isla",
        "Harry",
        "Ava",
        "Jack",
        "Sophie",
        "Charlie",
        "Freya",
        "Thomas",
        "Niamh",
        "Siobhan",
        "Rhys",
        "Eilidh",
        "Callum",
    ],
}
_LAST = {
    "NL": [
        "de Vries",
        "Jansen",
        "Bakker",
        "Visser",
        "Smit",
        "Meijer",
        "de Boer",
        "Mulder",
        "de Groot",
        "Bos",
        "van Dijk",
        "Hendriks",
        "van den Berg",
        "Dekker",
        "Brouwer",
    ],
    "BE": [
        "Peeters",
        "Janssens",
        "Maes",
        "Jacobs",
        "Mertens",
        "Willems",
        "Claes",
        "Goossens",
        "Wouters",
        "De Smet",
        "Dubois",
        "Lambert",
        "Vermeulen",
        "Michiels",
    ],
    "US": [
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "García",
        "Miller",
        "Davis",
        "Rodriguez",
        "Martinez",
        "Wilson",
        "Anderson",
        "Taylor",
        "Thomas",
        "O'Connor",
    ],
    "GB": [
        "Smith",
        "Jones",
        "Taylor",
        "Brown",
        "Williams",
        "Wilson",
        "Evans",
        "Thomas",
        "Roberts",
        "Walker",
        "Wright",
        "Hughes",
        "McDonald",
        "Ó Briain",
    ],
}
_ZONES = {
    "NL": ["Europe/Amsterdam"],
    "BE": ["Europe/Brussels"],
    "US": ["America/New_York", "America/Chicago", "America/Detroit", "America/Toronto"],
    "GB": ["Europe/London"],
}
_LOCALES = {"NL": "nl-NL", "BE": "nl-BE", "US": "en-US", "GB": "en-GB"}
_DOMAINS = {
    "NL": ["example.nl", "mail.example.nl"],
    "BE": ["example.be"],
    "US": ["example.com", "mail.example.com"],
    "GB": ["example.co.uk"],
}
_US_AREAS = ["212", "312", "617", "313", "646", "718", "773", "415", "202", "305"]
_COUNTRIES = ["NL"] * 45 + ["BE"] * 20 + ["US"] * 20 + ["GB"] * 15
CHANNELS = ("email", "sms", "whatsapp")
PLANS = ("basic", "pro", "enterprise")
CUSTOMER_COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "preferred_channel",
    "locale",
    "timezone",
    "opted_in",
    "plan",
    "country",
)


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    email: str
    phone: str
    preferred_channel: str
    locale: str
    timezone: str
    opted_in: str
    plan: str
    country: str

    def as_row(self) -> list[str]:
        return [getattr(self, c) for c in CUSTOMER_COLUMNS]

    def as_dict(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in CUSTOMER_COLUMNS}


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def phone_for(country: str, index: int) -> str:
    """A valid E.164 number for customer ``index`` (unique for index < 1,000,000)."""
    if country == "NL":
        return f"+3161{index:07d}"
    if country == "BE":
        return f"+3247{index % 10}{index // 10:06d}"
    if country == "GB":
        return f"+447400{index % 1_000_000:06d}"
    block = index // 10_000
    area = _US_AREAS[block % len(_US_AREAS)]
    exchange = 550 + block // len(_US_AREAS)  # 550-559 for a million customers
    return f"+1{area}{exchange}{index % 10_000:04d}"


def customers(
    n: int,
    *,
    seed: int = SEED,
    channels: tuple[str, ...] = CHANNELS,
    channel_weights: tuple[int, ...] | None = None,
) -> Iterator[Customer]:
    """``n`` customers, the same ones for the same seed."""
    rng = random.Random(seed)
    weights = channel_weights or (50, 35, 15)[: len(channels)]
    for i in range(n):
        country = rng.choice(_COUNTRIES)
        first = rng.choice(_FIRST[country])
        last = rng.choice(_LAST[country])
        preferred = rng.choices(channels, weights)[0]
        consent = [preferred]
        if "email" in channels and preferred != "email" and rng.random() < 0.7:
            consent.append("email")
        email = f"{_ascii(first)}.{_ascii(last)}.{i}@{rng.choice(_DOMAINS[country])}"
        yield Customer(
            id=f"c{i:07d}",
            name=f"{first} {last}",
            email=email,
            phone=phone_for(country, i),
            preferred_channel=preferred,
            locale=_LOCALES[country],
            timezone=rng.choice(_ZONES[country]),
            opted_in=";".join(consent),
            plan=rng.choice(PLANS),
            country=country,
        )


def write_customers_csv(path: Path, n: int, **options: Any) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CUSTOMER_COLUMNS)
        for customer in customers(n, **options):
            writer.writerow(customer.as_row())
    return path


_ANSWERS = [
    "9",
    "10",
    "8/10",
    "a 7!",
    "negen",
    "tien",
    "6",
    "nine",
    "10 - great service",
    "5",
    "3/10",
    "8",
]
_FREE = [
    "Can someone call me about my invoice?",
    "Wanneer wordt mijn pakket bezorgd?",
    "Thanks! 👍",
    "The app keeps logging me out",
    "Graag een terugbelverzoek",
    "Is the store open on Sunday?",
]


def replies(
    n: int, customer_count: int, *, seed: int = SEED + 1, start: str = "2026-12-01T10:00:00Z"
) -> Iterator[dict[str, Any]]:
    """Normalized inbound JSONL records from the first ``customer_count`` customers.

    Mostly survey answers, some free text, a few STOPs and unknown senders; each from the
    customer's preferred channel address, with a unique id.
    """
    rng = random.Random(seed)
    people = list(customers(customer_count))
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    for i in range(n):
        roll = rng.random()
        if roll < 0.01:
            sender, channel = f"+3161{9_000_000 + i % 999_999:07d}", "sms"  # unknown number
        else:
            person = people[rng.randrange(len(people))]
            channel = person.preferred_channel
            sender = person.email if channel == "email" else person.phone
        if roll < 0.70:
            text = rng.choice(_ANSWERS)
        elif roll < 0.995:
            text = rng.choice(_FREE)
        else:
            text = rng.choice(["STOP", "stop ", "Afmelden"])
        at = t0 + timedelta(milliseconds=i * 37)
        yield {
            "channel": channel,
            "from": sender,
            "text": text,
            "received_at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "id": f"bench-{seed}-{i:08d}",
        }


def write_replies_jsonl(path: Path, n: int, customer_count: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for record in replies(n, customer_count):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
