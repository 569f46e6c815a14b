-- What `ingestflow dlq redrive` sent (app/ops/redrive.py): one row per dead letter (its source record) and
-- target topic, written before the record is sent and given its target offset once Kafka acknowledged it,
-- so no run sends a dead letter twice to one topic, even after a crash between the send and this row.
CREATE TABLE IF NOT EXISTS dlq_redrives (
    source_topic TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL,
    target_topic TEXT NOT NULL,
    target_partition INTEGER NOT NULL,
    -- The target partition's end offset before the send: where a later run looks for the record when
    -- target_offset is still NULL (a run that stopped between the send and its confirmation).
    target_from BIGINT NOT NULL,
    target_offset BIGINT,
    fingerprint TEXT NOT NULL,  -- SHA-256 of the record's key, value and headers
    error_type TEXT NOT NULL,
    redriven_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (source_topic, source_partition, source_offset, target_topic)
);
