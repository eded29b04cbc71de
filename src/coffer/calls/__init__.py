"""Metered calls: a hold on the caller's wallet for the authorised time, captured at the end."""
