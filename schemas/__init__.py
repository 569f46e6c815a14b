"""ingestflow schemas."""
