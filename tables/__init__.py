"""ingestflow tables."""
