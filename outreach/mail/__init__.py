"""Email replies: one email → an inbound event (``parse``, ``events``), read from files
(``files``) or an IMAP mailbox (``imap``), fed to the inbox in batches (``feed``).

The inbox's rules (keywords, survey answers, attention) stay where they are; this package
only turns mail into ``InboundMessage`` and bounce ``StatusEvent`` values, and remembers
where a mailbox sync stopped.
"""
