"""Audit trail: an append-only, hash-chained log of privileged and security-relevant actions."""
