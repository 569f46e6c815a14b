-- When the stored version of a crawl item was received, so an older version (a replay of the topic, a
-- worker that lost its partition while writing) never replaces a newer one. NULL for rows from before.
ALTER TABLE crawl_items ADD COLUMN IF NOT EXISTS received_at TIMESTAMPTZ;
