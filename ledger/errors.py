"""Errors raised by the ledger core.

Every error says what failed. ``field`` names the offending input where there is
one, so the service can map it to an ``INVALID_ARGUMENT`` field violation.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every anchorlog ledger error."""


class InvalidInput(LedgerError, ValueError):
    """Input that is malformed or breaks a rule; nothing was changed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class VerificationError(LedgerError):
    """A signature, proof or hash that does not verify."""


class InconsistentLogError(VerificationError):
    """Two checkpoints that cannot both belong to one append-only log.

    This is evidence of a forked or rewritten log and must never be ignored.
    """


class NotFound(LedgerError, LookupError):
    """A requested entry, key or checkpoint does not exist."""


class StorageFull(LedgerError):
    """The database cannot grow; the write was rolled back."""


class StorageUnavailable(LedgerError):
    """The database cannot be written (read-only, locked, I/O error)."""


class TamperedStoreError(LedgerError):
    """The stored log no longer matches what was signed."""
