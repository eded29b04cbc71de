"""Audit: the invariants report and the operators' read models."""
