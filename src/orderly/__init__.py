"""orderly: an order-processing backend on PostgreSQL."""
