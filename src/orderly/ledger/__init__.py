"""Credits wallet on a double-entry ledger: append-only entries, balances that never lie."""
