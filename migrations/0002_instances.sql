-- Ferrox instances that report in: each instance on the database upserts its own row every
-- `admin.heartbeat_interval` (default 5s) and sets `stopped_at` when it shuts down gracefully.
-- A row whose `last_seen` is older than 3 × its own interval is shown as down; rows not seen
-- for an hour are deleted by any live instance. Nothing on the datapath reads or writes here.

CREATE TABLE gateway_instances (
    -- Random (UUID v4 text) per process start; never reused.
    id text PRIMARY KEY,
    hostname text NOT NULL,
    pid bigint NOT NULL,
    -- The Ferrox version the instance runs (its CARGO_PKG_VERSION).
    version text NOT NULL,
    proxy_addr text NOT NULL,
    admin_addr text NOT NULL,
    started_at timestamptz NOT NULL,
    -- Set by PostgreSQL's clock at each heartbeat, so every reader compares on one clock.
    last_seen timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz,
    heartbeat_interval_ms bigint NOT NULL CHECK (heartbeat_interval_ms > 0),
    -- The config version (config_version.version) the instance runs.
    applied_version bigint NOT NULL,
    -- Counters as of the heartbeat: requests answered since start, requests per second over
    -- the last interval, 5xx answers since start, requests in flight.
    requests_total bigint NOT NULL DEFAULT 0,
    requests_per_second double precision NOT NULL DEFAULT 0,
    responses_5xx bigint NOT NULL DEFAULT 0,
    in_flight bigint NOT NULL DEFAULT 0
);
CREATE INDEX gateway_instances_last_seen ON gateway_instances (last_seen);
