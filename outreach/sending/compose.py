"""Composing a delivery's message: its template rendered for the customer (or an agent's
text), with unsubscribe link, reply token and provider extras, as an ``OutboundMessage``.

One ``Composer`` per send pass keeps what every message of a campaign shares: the
campaign file, the occurrence's survey, the signing key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..campaigns.files import Campaign, load_campaign, localized_question
from ..channels.base import OutboundMessage
from ..config import Config
from ..deliveries import Purpose
from ..errors import OutreachError
from ..phrases import phrase
from ..store import Store
from ..templates.render import Renderer
from ..tokens import make_reply_token, make_unsubscribe_token


class Composer:
    """Renders the messages of one send pass."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.renderer = Renderer(config)
        self.campaigns: dict[str, Campaign | None] = {}
        self.surveys: dict[tuple[str, str], dict[str, Any] | None] = {}
        # the survey with its question in one locale, shared by every message in that
        # locale (templates cannot change it: the sandbox is immutable)
        self.localized: dict[tuple[str, str, str | None], dict[str, Any] | None] = {}
        self._key: bytes | None = None

    def campaign(self, name: str | None) -> Campaign | None:
        """The campaign file, read once per pass (None: gone or broken since planning)."""
        if name is None:
            return None
        if name not in self.campaigns:
            try:
                self.campaigns[name] = load_campaign(self.config, name)
            except OutreachError:
                self.campaigns[name] = None
        return self.campaigns[name]

    def survey(self, campaign: str, occurrence: str) -> dict[str, Any] | None:
        key = (campaign, occurrence)
        if key not in self.surveys:
            self.surveys[key] = self.store.deliveries.occurrence_survey(campaign, occurrence)
        return self.surveys[key]

    def localized_survey(
        self, campaign: str, occurrence: str, locale: str | None
    ) -> dict[str, Any] | None:
        """The occurrence's survey with its question in ``locale``'s language."""
        key = (campaign, occurrence, locale)
        if key not in self.localized:
            survey = self.survey(campaign, occurrence)
            self.localized[key] = (
                {**survey, "question": localized_question(survey, locale)} if survey else survey
            )
        return self.localized[key]

    def _signing_key(self) -> bytes:
        if self._key is None:
            self._key = self.store.meta.signing_key()
        return self._key

    def message(
        self,
        row: Mapping[str, Any],
        customer: Mapping[str, Any],
        kind: str,
        address: str,
        now: datetime,
        tz: ZoneInfo,
        wrote_recently: bool,
    ) -> OutboundMessage:
        """The message for one delivery: rendered from its template, or an agent's text."""
        context = json.loads(row["context"]) if row.get("context") else {}
        channel = row["channel"]
        public = self.config.server.public_url
        unsubscribe_url = None
        if public:
            token = make_unsubscribe_token(self._signing_key(), row["customer_id"], channel)
            unsubscribe_url = f"{public}/unsubscribe/{token}"
        campaign = self.campaign(row.get("campaign"))
        thread: dict[str, Any] = {}
        reply_subject = None
        if kind == "email" and row["purpose"] != Purpose.CAMPAIGN:
            # a reply answers the customer's email: its subject, and headers that thread it
            thread = self.store.conversations.email_thread(row["customer_id"], channel)
            reply_subject = _re(
                thread.get("in_subject")
                or thread.get("out_subject")
                or phrase("reply_subject", customer.get("locale"), sender=self.config.sender_name)
            )
        if row["purpose"] == Purpose.AGENT:
            body, subject, html, preheader = context["text"], reply_subject, None, None
        else:
            survey = None
            if row["purpose"] == Purpose.CAMPAIGN and row.get("occurrence"):
                survey = self.localized_survey(
                    row["campaign"], row["occurrence"], customer.get("locale")
                )
            rendered = self.renderer.render(
                row["template"],
                channel,
                customer,
                campaign={"name": row.get("campaign"), "kind": campaign.kind if campaign else None},
                survey=survey,
                unsubscribe_url=unsubscribe_url,
                now=now.astimezone(tz),
                extra=_extra(context),
                reply_subject=reply_subject,
            )
            body, subject, html, preheader = (
                rendered.body,
                rendered.subject,
                rendered.html,
                rendered.preheader,
            )
        return OutboundMessage(
            delivery_id=row["id"],
            channel=channel,
            customer_id=row["customer_id"],
            to=address,
            body=body,
            subject=subject,
            html=html,
            preheader=preheader,
            campaign=row.get("campaign"),
            customer_name=customer.get("name"),
            unsubscribe_url=unsubscribe_url,
            reply_token=make_reply_token(self._signing_key(), row["customer_id"])
            if kind == "email"
            else None,
            in_service_window=wrote_recently,
            extra=_provider_extra(campaign, customer),
            status_callback=f"{public}/webhooks/{channel}" if public else None,
            customer=customer,
            in_reply_to=thread.get("in_id"),
            answers_delivery=thread.get("out_delivery"),
        )


def _re(subject: str) -> str:
    """``Re: subject``, once: a subject that already answers something keeps its ``Re:``."""
    subject = " ".join(subject.split())
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}"


def _extra(context: Mapping[str, Any]) -> dict[str, Any]:
    extra = dict(context.get("extra") or {})
    if "event" in context:
        extra["event"] = context["event"]
    return extra


def _provider_extra(campaign: Campaign | None, customer: Mapping[str, Any]) -> dict[str, Any]:
    """``OutboundMessage.extra``: the campaign's provider-only settings, filled in for this
    customer (a ``whatsapp_template``'s parameters name customer fields)."""
    spec = campaign.whatsapp_template if campaign else None
    if not spec:
        return {}
    params = [str(customer.get(str(p), p) or "") for p in spec.get("parameters", [])]
    template = {
        "name": spec.get("name"),
        "language": spec.get("language", "en"),
        "parameters": params,
    }
    return {"whatsapp_template": template}
