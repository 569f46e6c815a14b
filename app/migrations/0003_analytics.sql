-- Analytics. The rule -> author mapping the stream-table join resolved, so author totals can be
-- summed in PostgreSQL from the per-rule absolute totals (see agents/author_metrics.py for why).
CREATE TABLE IF NOT EXISTS rule_authors (
    rule_id TEXT PRIMARY KEY,
    author_id TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('catalog', 'event')),
    title TEXT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS rule_authors_author_idx ON rule_authors (author_id);

-- Trending: log2 of the decayed score referred to the epoch (agents/trending.py), so rows written at
-- different times compare directly and an author's value is the log-sum of its rules' values.
CREATE TABLE IF NOT EXISTS rule_trending (
    rule_id TEXT PRIMARY KEY,
    log_score DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS rule_trending_score_idx ON rule_trending (log_score DESC);

CREATE INDEX IF NOT EXISTS crawl_items_updated_idx ON crawl_items (updated_at);
