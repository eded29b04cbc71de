"""Webhooks in: a signed-event inbox, processed exactly once, retried with backoff."""
