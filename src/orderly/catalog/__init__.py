"""Catalog and inventory: products, stock and every stock movement."""
