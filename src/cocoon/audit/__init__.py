"""Verified work (DESIGN §11): audits by prefill, their verdicts, reports, reputation."""
