"""The providers' documented example payloads, one per message type, and what each must store.

Shapes follow the providers' own documentation: Meta's WhatsApp Cloud API "Webhooks
components / messages" examples (text, reaction, image, sticker, unsupported, location,
contacts, button, interactive list and button replies, system ``user_changed_number``,
statuses), the revoke and edit notifications as the issue saw them, Twilio's "Incoming
message webhook" parameters (SMS, MMS ``NumMedia``/``MediaUrlN``/``MediaContentTypeN``,
WhatsApp ``MessageType``, ``Latitude``/``Longitude``/``Address``/``Label``,
``ButtonText``/``ButtonPayload``, status callbacks), and Sunshine Conversations v2
``conversation:message`` content types (text, image, file, location) and delivery events.
Ids, numbers and URLs are the docs' placeholders made concrete.

Every case names a customer of its own (``phone``), so that each one's open survey tells
whether the message was read as an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TWILIO_MEDIA = "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages/MM{n}/Media/ME{m}"


@dataclass(frozen=True)
class Case:
    name: str
    fmt: str  # --format of replies ingest
    channel: str
    payload: dict[str, Any]
    kind: str | None  # the stored message kind; None: no message is stored (a status)
    text: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # a subset of what is stored
    answer: str | None = None  # the valid survey answer it gives, if any

    @property
    def customer(self) -> str:
        return f"p_{self.name}"


def _phone(n: int) -> str:
    return f"+316120000{n:02d}"


PHONES: dict[str, str] = {}


def _wa(name: str, n: int, message: dict[str, Any]) -> dict[str, Any]:
    PHONES[name] = _phone(n)
    wa_id = _phone(n).removeprefix("+")
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": f"wamid.{name}",
                                    "timestamp": "1796119200",
                                    **message,
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def _twilio(name: str, n: int, params: dict[str, str], *, whatsapp: bool = False) -> dict[str, Any]:
    PHONES[name] = _phone(n)
    sender = f"whatsapp:{_phone(n)}" if whatsapp else _phone(n)
    base = {
        "ToCountry": "NL",
        "SmsMessageSid": f"SM{name}",
        "NumMedia": "0",
        "SmsSid": f"SM{name}",
        "SmsStatus": "received",
        "Body": "",
        "To": "+3197010000000",
        "NumSegments": "1",
        "MessageSid": f"SM{name}",
        "AccountSid": "AC0123",
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    if whatsapp:
        base |= {
            "To": "whatsapp:+3197010000000",
            "ProfileName": "Kerry",
            "WaId": _phone(n).removeprefix("+"),
        }
    return base | params


def _sunshine(name: str, n: int, content: dict[str, Any]) -> dict[str, Any]:
    PHONES[name] = _phone(n)
    return {
        "app": {"id": "5963c0d619a30a2e00de36b8"},
        "webhook": {"id": "5f6b7d2c3a5d3f001a2b3c4d", "version": "v2"},
        "events": [
            {
                "id": f"ev_{name}",
                "createdAt": "2026-12-01T10:00:00.000Z",
                "type": "conversation:message",
                "payload": {
                    "conversation": {"id": "c0nv3rs4t10n", "type": "personal"},
                    "message": {
                        "id": f"msg_{name}",
                        "received": "2026-12-01T10:00:00.000Z",
                        "author": {
                            "type": "user",
                            "userId": f"u_{name}",
                            "displayName": "Kerry Fisher",
                            "user": {"externalId": _phone(n)},
                        },
                        "content": content,
                        "source": {"type": "whatsapp", "integrationId": "5e4af71a81966cfff3ef6550"},
                    },
                },
            }
        ],
    }


CASES = [
    # -- WhatsApp Cloud -------------------------------------------------------------------
    Case(
        "w_text",
        "whatsapp-cloud",
        "whatsapp",
        _wa("w_text", 1, {"type": "text", "text": {"body": "9"}}),
        kind="text",
        text="9",
        answer="9",
    ),
    Case(
        "w_image",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_image",
            2,
            {
                "type": "image",
                "image": {
                    "mime_type": "image/jpeg",
                    "sha256": "IMAGE_HASH",
                    "id": "1054294745684592",
                },
            },
        ),
        kind="image",
        details={
            "media": [{"type": "image", "id": "1054294745684592", "content_type": "image/jpeg"}]
        },
    ),
    Case(
        "w_image_caption",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_image_caption",
            3,
            {
                "type": "image",
                "image": {
                    "caption": "10",
                    "mime_type": "image/jpeg",
                    "sha256": "H",
                    "id": "2054294745",
                },
            },
        ),
        kind="image",
        text="10",
        details={"media": [{"type": "image", "id": "2054294745"}]},
    ),
    Case(
        "w_sticker",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_sticker",
            4,
            {
                "type": "sticker",
                "sticker": {
                    "mime_type": "image/webp",
                    "sha256": "H",
                    "id": "3054294745",
                    "animated": False,
                },
            },
        ),
        kind="sticker",
        details={"media": [{"type": "sticker", "id": "3054294745", "content_type": "image/webp"}]},
    ),
    Case(
        "w_document",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_document",
            5,
            {
                "type": "document",
                "document": {
                    "filename": "invoice.pdf",
                    "mime_type": "application/pdf",
                    "sha256": "H",
                    "id": "4054294745",
                },
            },
        ),
        kind="document",
        details={"media": [{"type": "document", "id": "4054294745", "filename": "invoice.pdf"}]},
    ),
    Case(
        "w_location",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_location",
            6,
            {
                "type": "location",
                "location": {
                    "latitude": 52.3676,
                    "longitude": 4.9041,
                    "name": "Acme HQ",
                    "address": "Dam 1, Amsterdam",
                },
            },
        ),
        kind="location",
        details={
            "location": {
                "latitude": 52.3676,
                "longitude": 4.9041,
                "name": "Acme HQ",
                "address": "Dam 1, Amsterdam",
            }
        },
    ),
    Case(
        "w_contacts",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_contacts",
            7,
            {
                "type": "contacts",
                "contacts": [
                    {
                        "name": {
                            "formatted_name": "Jan Jansen",
                            "first_name": "Jan",
                            "last_name": "Jansen",
                        },
                        "phones": [
                            {"phone": "+31 6 11122233", "wa_id": "31611122233", "type": "CELL"}
                        ],
                        "emails": [{"email": "jan@example.nl", "type": "WORK"}],
                    }
                ],
            },
        ),
        kind="contacts",
        details={
            "contacts": [
                {"name": "Jan Jansen", "phones": ["+31 6 11122233"], "emails": ["jan@example.nl"]}
            ]
        },
    ),
    Case(
        "w_reaction",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_reaction",
            8,
            {
                "type": "reaction",
                "reaction": {
                    "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
                    "emoji": "\U0001f44d",
                },
            },
        ),
        kind="reaction",
        details={
            "reaction": "\U0001f44d",
            "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
        },
    ),
    Case(
        "w_button",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_button",
            9,
            {
                "type": "button",
                "context": {"from": "15550783881", "id": "wamid.sent1"},
                "button": {"text": "7", "payload": "score-7"},
            },
        ),
        kind="button",
        text="7",
        details={"payload": "score-7"},
        answer="7",
    ),
    Case(
        "w_list_reply",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_list_reply",
            10,
            {
                "type": "interactive",
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {"id": "nps-8", "title": "8", "description": "Likely"},
                },
            },
        ),
        kind="interactive",
        text="8",
        details={"id": "nps-8"},
        answer="8",
    ),
    Case(
        "w_button_reply",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_button_reply",
            11,
            {
                "type": "interactive",
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "nps-10", "title": "10"},
                },
            },
        ),
        kind="interactive",
        text="10",
        details={"id": "nps-10"},
        answer="10",
    ),
    Case(
        "w_revoke",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_revoke", 12, {"type": "revoke", "revoke": {"original_message_id": "wamid.deleted1"}}
        ),
        kind="revoke",
        details={"message_id": "wamid.deleted1"},
    ),
    Case(
        "w_edit",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_edit",
            13,
            {
                "type": "edit",
                "edit": {
                    "original_message_id": "wamid.first1",
                    "message": {"type": "text", "text": {"body": "STOP"}},
                },
            },
        ),
        kind="edit",
        text="STOP",
        details={"message_id": "wamid.first1"},
    ),
    Case(
        "w_unsupported",
        "whatsapp-cloud",
        "whatsapp",
        _wa(
            "w_unsupported",
            14,
            {
                "type": "unsupported",
                "errors": [
                    {
                        "code": 131051,
                        "title": "Message type unknown",
                        "message": "Message type unknown",
                        "error_data": {"details": "Message type is currently not supported."},
                    }
                ],
            },
        ),
        kind="unsupported",
    ),
    Case(
        "w_status",
        "whatsapp-cloud",
        "whatsapp",
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "106540352242922",
                                },
                                "statuses": [
                                    {
                                        "id": "wamid.unknown-to-us",
                                        "status": "read",
                                        "timestamp": "1796119300",
                                        "recipient_id": "31612000015",
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        },
        kind=None,
    ),
    # -- Twilio: SMS/MMS and WhatsApp ----------------------------------------------------------
    Case(
        "t_sms",
        "twilio",
        "sms",
        _twilio("t_sms", 20, {"Body": "9"}),
        kind="text",
        text="9",
        answer="9",
    ),
    Case(
        "t_mms",
        "twilio",
        "sms",
        _twilio(
            "t_mms",
            21,
            {
                "NumMedia": "2",
                "MediaContentType0": "image/jpeg",
                "MediaUrl0": TWILIO_MEDIA.format(n=21, m=0),
                "MediaContentType1": "video/mp4",
                "MediaUrl1": TWILIO_MEDIA.format(n=21, m=1),
            },
        ),
        kind="image",
        details={
            "media": [
                {
                    "type": "image",
                    "url": TWILIO_MEDIA.format(n=21, m=0),
                    "content_type": "image/jpeg",
                },
                {
                    "type": "video",
                    "url": TWILIO_MEDIA.format(n=21, m=1),
                    "content_type": "video/mp4",
                },
            ]
        },
    ),
    Case(
        "t_status",
        "twilio",
        "sms",
        {
            "MessageSid": "SMunknown",
            "MessageStatus": "delivered",
            "SmsSid": "SMunknown",
            "SmsStatus": "delivered",
            "To": "+31612000022",
            "From": "+3197010000000",
            "AccountSid": "AC0123",
            "ApiVersion": "2010-04-01",
        },
        kind=None,
    ),
    Case(
        "tw_image",
        "twilio",
        "wa",
        _twilio(
            "tw_image",
            23,
            {
                "NumMedia": "1",
                "MessageType": "image",
                "MediaContentType0": "image/jpeg",
                "MediaUrl0": TWILIO_MEDIA.format(n=23, m=0),
            },
            whatsapp=True,
        ),
        kind="image",
        details={
            "media": [
                {
                    "type": "image",
                    "url": TWILIO_MEDIA.format(n=23, m=0),
                    "content_type": "image/jpeg",
                }
            ]
        },
    ),
    Case(
        "tw_location",
        "twilio",
        "wa",
        _twilio(
            "tw_location",
            24,
            {
                "MessageType": "location",
                "Latitude": "52.3676",
                "Longitude": "4.9041",
                "Address": "Dam 1, Amsterdam",
                "Label": "Acme HQ",
            },
            whatsapp=True,
        ),
        kind="location",
        details={
            "location": {
                "latitude": 52.3676,
                "longitude": 4.9041,
                "name": "Acme HQ",
                "address": "Dam 1, Amsterdam",
            }
        },
    ),
    Case(
        "tw_button",
        "twilio",
        "wa",
        _twilio(
            "tw_button",
            25,
            {"MessageType": "button", "Body": "6", "ButtonText": "6", "ButtonPayload": "score-6"},
            whatsapp=True,
        ),
        kind="button",
        text="6",
        details={"payload": "score-6"},
        answer="6",
    ),
    # -- Sunshine Conversations ---------------------------------------------------------------
    Case(
        "s_text",
        "sunshine",
        "messenger",
        _sunshine("s_text", 30, {"type": "text", "text": "5"}),
        kind="text",
        text="5",
        answer="5",
    ),
    Case(
        "s_image",
        "sunshine",
        "messenger",
        _sunshine(
            "s_image",
            31,
            {
                "type": "image",
                "mediaUrl": "https://media.smooch.io/apps/x/image.jpg",
                "mediaType": "image/jpeg",
                "mediaSize": 12345,
            },
        ),
        kind="image",
        details={
            "media": [
                {
                    "type": "image",
                    "url": "https://media.smooch.io/apps/x/image.jpg",
                    "content_type": "image/jpeg",
                }
            ]
        },
    ),
    Case(
        "s_file",
        "sunshine",
        "messenger",
        _sunshine(
            "s_file",
            32,
            {
                "type": "file",
                "mediaUrl": "https://media.smooch.io/f.pdf",
                "mediaType": "application/pdf",
                "altText": "invoice",
            },
        ),
        kind="document",
        details={
            "media": [
                {
                    "type": "document",
                    "url": "https://media.smooch.io/f.pdf",
                    "content_type": "application/pdf",
                }
            ]
        },
    ),
    Case(
        "s_location",
        "sunshine",
        "messenger",
        _sunshine(
            "s_location",
            33,
            {
                "type": "location",
                "coordinates": {"lat": 52.3676, "long": 4.9041},
                "location": {"address": "Dam 1, Amsterdam", "name": "Acme HQ"},
            },
        ),
        kind="location",
        details={
            "location": {
                "latitude": 52.3676,
                "longitude": 4.9041,
                "name": "Acme HQ",
                "address": "Dam 1, Amsterdam",
            }
        },
    ),
]
