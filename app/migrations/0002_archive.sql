-- The archive's shared state, visible to every worker and gateway of one app id (WORKER_APP_ID).
-- Cron: whether the scheduled flush runs, its expression, and the last tick a worker claimed.
CREATE TABLE IF NOT EXISTS archive_cron (
    app_id TEXT PRIMARY KEY,
    running BOOLEAN NOT NULL DEFAULT TRUE,
    schedule TEXT NOT NULL,
    last_tick TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Per-partition buffer figures the workers write every few seconds, for GET /buffer/stats.
CREATE TABLE IF NOT EXISTS archive_buffer_stats (
    app_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    worker TEXT NOT NULL,
    users INTEGER NOT NULL,
    records INTEGER NOT NULL,
    oldest_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (app_id, partition)
);

CREATE INDEX IF NOT EXISTS transfer_logs_batch_idx ON transfer_logs (batch_id);
