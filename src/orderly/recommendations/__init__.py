"""Recommendations: built-in co-purchase and best-sellers, an optional external model."""
