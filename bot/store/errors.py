"""The store's exceptions, below every implementation so that none imports another."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The store cannot be reached; the responder turns this into a short apology."""


class NotSubscribed(Exception):
    """`acquire(..., only_if_subscribed=True)` for a thread the bot does not answer."""
