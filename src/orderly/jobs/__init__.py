"""The admin view of background jobs: list by status, retry dead ones."""
