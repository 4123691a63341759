"""Services the processors use: SMTP pool and dev sink, records store, AI providers,
circuit breaker, shared rate limits and the per-campaign send ledger."""
