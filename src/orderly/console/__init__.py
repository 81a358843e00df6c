"""The ops console: server-rendered pages for staff at ``/console`` (templates/, static/)."""
