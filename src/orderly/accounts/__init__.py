"""Accounts: users, roles, authentication tokens and encrypted personal data."""
