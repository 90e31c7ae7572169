"""Message templates: the sandbox they run in (``sandbox``), their filters (``filters``),
rendering one message (``render``) and `templates check`/`render` (``checks``)."""
