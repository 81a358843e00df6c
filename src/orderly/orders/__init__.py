"""Orders: placement with reserved stock, the order state machine, order notifications."""
