"""Incidents (timeline, post-mortem), the Alertmanager receiver and SLOs from request counts."""
