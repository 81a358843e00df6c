"""Plumbing with no business rules and no web framework."""
