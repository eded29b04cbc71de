"""Subscriptions: plans paid each period from the wallet or through a provider's billing."""
