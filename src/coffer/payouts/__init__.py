"""Payees (where a user is paid) and payouts of their earnings through the providers."""
