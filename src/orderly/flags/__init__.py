"""Feature flags in Unleash's client-API shape, evaluated in process; release plans and guard."""
