"""Marketplace escrow: a payer's money held in an account of its own until it is released to
the payee (less the platform's fee), refunded through the provider, or disputed."""
