"""Offline audit of a whole anchorlog log.

* ``mirror``: copy the log into a local SQLite mirror, verifying every entry,
  every checkpoint and the consistency between checkpoints as it goes.
* ``verify``: re-check a mirror (or a server's own database file) from scratch:
  tree, hash chain, checkpoints, every signature against the replayed key state,
  statements, revocations and batch digests.
* ``report``: per vendor and per reviewer activity, and anomalies that suggest
  gaming, as JSON, Markdown and a self-contained HTML chart.

Every problem is a typed :class:`~anchorlog.client.audit.findings.Finding` that
names the log index (when there is one) and the check that failed.
"""
