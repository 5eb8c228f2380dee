"""anchorlog client: the verifying library and the ``anchorlog`` command line.

``ledger.LedgerClient`` (verified answers), ``vendor`` (keys, hashing, statements),
``receipts`` (offline receipts and bundles), ``verify`` (pure verification),
``state`` (the trusted checkpoint file), ``cli`` (the command line).
"""
