"""Payments: orders, crediting exactly once, refunds, and the flows that call providers."""
