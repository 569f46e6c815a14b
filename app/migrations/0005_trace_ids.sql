-- Trace ids (app/core/tracing.py): the id of the HTTP request behind a stored row, so an operator can follow
-- one item from the gateway's log to its row or its archive object.
-- crawl_items: the trace id of the record whose version is stored (NULL for rows from before, or untraced).
ALTER TABLE crawl_items ADD COLUMN IF NOT EXISTS trace_id TEXT;
CREATE INDEX IF NOT EXISTS crawl_items_trace_idx ON crawl_items (trace_id) WHERE trace_id IS NOT NULL;
-- transfer_logs: a batch holds many records; the distinct trace ids of its records.
ALTER TABLE transfer_logs ADD COLUMN IF NOT EXISTS trace_ids TEXT[];
CREATE INDEX IF NOT EXISTS transfer_logs_trace_idx ON transfer_logs USING GIN (trace_ids);
