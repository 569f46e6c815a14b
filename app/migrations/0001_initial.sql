-- transfer_logs keeps the exact schema of the previous archive service: its users query it directly.
CREATE TABLE IF NOT EXISTS transfer_logs (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    lighthouse_hash TEXT,
    entries_transferred INTEGER NOT NULL DEFAULT 0,
    status VARCHAR(20) NOT NULL CHECK (status IN ('success', 'failed', 'pending')),
    transferred_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    error_message TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    -- ingestflow's addition: the deterministic batch id that makes an upload idempotent.
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS transfer_logs_user_id_idx ON transfer_logs (user_id, transferred_at DESC);
CREATE INDEX IF NOT EXISTS transfer_logs_status_idx ON transfer_logs (status);
CREATE UNIQUE INDEX IF NOT EXISTS transfer_logs_batch_success_idx ON transfer_logs (batch_id) WHERE status = 'success';

CREATE TABLE IF NOT EXISTS audit_log (
    id BIGSERIAL PRIMARY KEY,
    action TEXT NOT NULL,
    actor TEXT,
    subject TEXT,
    detail JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS audit_log_created_at_idx ON audit_log (created_at);
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_action_subject_idx ON audit_log (action, subject)
    WHERE action = 'stripe.webhook';

CREATE TABLE IF NOT EXISTS crawl_items (
    id BIGSERIAL PRIMARY KEY,
    source_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    url TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT,
    raw JSONB,
    content_hash TEXT NOT NULL,
    search_vector TSVECTOR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (source_id, external_id)
);
CREATE INDEX IF NOT EXISTS crawl_items_search_idx ON crawl_items USING GIN (search_vector);

CREATE TABLE IF NOT EXISTS donations (
    stripe_event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    payment_ref TEXT,
    author_id TEXT,
    amount_cents BIGINT NOT NULL DEFAULT 0,
    currency TEXT,
    status TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS donations_payment_ref_idx ON donations (payment_ref);
CREATE INDEX IF NOT EXISTS donations_author_idx ON donations (author_id, occurred_at);

CREATE TABLE IF NOT EXISTS rule_metric_daily (
    rule_id TEXT NOT NULL,
    day DATE NOT NULL,
    views BIGINT NOT NULL DEFAULT 0,
    copies BIGINT NOT NULL DEFAULT 0,
    saves BIGINT NOT NULL DEFAULT 0,
    forks BIGINT NOT NULL DEFAULT 0,
    votes BIGINT NOT NULL DEFAULT 0,
    score DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (rule_id, day)
);
CREATE INDEX IF NOT EXISTS rule_metric_daily_day_idx ON rule_metric_daily (day);

CREATE TABLE IF NOT EXISTS author_metric_daily (
    author_id TEXT NOT NULL,
    day DATE NOT NULL,
    views BIGINT NOT NULL DEFAULT 0,
    copies BIGINT NOT NULL DEFAULT 0,
    saves BIGINT NOT NULL DEFAULT 0,
    forks BIGINT NOT NULL DEFAULT 0,
    votes BIGINT NOT NULL DEFAULT 0,
    donation_count BIGINT NOT NULL DEFAULT 0,
    donation_amount_cents BIGINT NOT NULL DEFAULT 0,
    score DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (author_id, day)
);
CREATE INDEX IF NOT EXISTS author_metric_daily_day_idx ON author_metric_daily (day);

CREATE TABLE IF NOT EXISTS leaderboard_snapshot (
    period TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'all-time')),
    scope TEXT NOT NULL CHECK (scope IN ('rules', 'authors')),
    day DATE NOT NULL,
    rank INTEGER NOT NULL,
    subject_id TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (period, scope, day, rank)
);
