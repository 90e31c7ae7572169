"""Other ways the same mobile number is written, for matching an inbound sender.

Two countries changed their mobile numbers while WhatsApp kept the old form as the
account's id (``wa_id``):

- Mexico dropped the ``1`` after ``+52`` for mobiles in 2019; WhatsApp ids still carry it
  (``5215512345678`` is the customer stored as ``+525512345678``, and the other way round);
- Brazil added a ninth digit (a leading ``9``) to mobiles in 2012 to 2016; accounts made
  before that keep ids without it (``551187654321`` is ``+5511987654321``).

Only these two shapes get variants, so every other number is matched exactly as before,
without a second lookup.
"""

from __future__ import annotations

# the country codes that have variants: a cheap test before calling mobile_variants
VARIANT_PREFIXES = frozenset({"+52", "+55"})


def mobile_variants(e164: str) -> tuple[str, ...]:
    """The other E.164 forms of ``e164`` that may name the same mobile, or ``()``."""
    if e164.startswith("+52"):
        if len(e164) == 14 and e164[3] == "1":
            return ("+52" + e164[4:],)
        if len(e164) == 13:
            return ("+521" + e164[3:],)
    elif e164.startswith("+55"):
        # +55, a two-digit area code, then 9 + eight digits, or (before) the eight alone;
        # only the old mobiles (6-9) got the 9: eight digits starting 2-5 are landlines
        if len(e164) == 14 and e164[5] == "9" and e164[6] in "6789":
            return (e164[:5] + e164[6:],)
        if len(e164) == 13 and e164[5] in "6789":
            return (e164[:5] + "9" + e164[5:],)
    return ()
