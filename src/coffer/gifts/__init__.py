"""Gifts between users, split between the host, the host's agency and the platform."""
