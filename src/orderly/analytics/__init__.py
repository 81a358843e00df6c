"""Sales analytics served from summary tables the worker keeps up to date."""
