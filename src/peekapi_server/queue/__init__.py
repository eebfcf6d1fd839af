"""The bounded hand-off between the ingest endpoint and the single writer thread."""
