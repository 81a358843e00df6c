"""Card payments through Stripe: gateway, recorded payments, verified webhooks."""
