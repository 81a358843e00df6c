"""Notifications: e-mail (SMTP or Maildir) and signed webhooks, each sent once per event."""
