"""ingestflow app."""
