"""Loopback emulators that speak each provider's wire format, failures included."""
