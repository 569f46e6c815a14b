"""ingestflow agents."""
