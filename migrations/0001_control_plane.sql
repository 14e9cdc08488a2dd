-- Ferrox control plane: the config document in normalised tables, admin users and tokens, the
-- audit log and request logs. Applied by `ferrox migrate` and on start (sqlx migrations).
--
-- The document (upstreams, routes, consumers, plugins) is replaced as a whole by each commit, in
-- one transaction guarded by the version in `config_version`. `position` columns keep the order
-- the document lists things in.

CREATE TABLE config_version (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_version (id, version) VALUES (true, 0);

CREATE TABLE upstreams (
    name text PRIMARY KEY,
    position integer NOT NULL,
    balance text NOT NULL,
    hash_header text,
    health_check jsonb,
    circuit_breaker jsonb NOT NULL,
    timeouts jsonb NOT NULL,
    retries bigint NOT NULL,
    retry_budget jsonb NOT NULL,
    protocol text NOT NULL,
    preserve_host boolean NOT NULL,
    tls jsonb
);

CREATE TABLE targets (
    upstream text NOT NULL REFERENCES upstreams (name) ON DELETE CASCADE,
    position integer NOT NULL,
    target text NOT NULL,
    PRIMARY KEY (upstream, position)
);

CREATE TABLE routes (
    name text PRIMARY KEY,
    position integer NOT NULL,
    path_prefix text,
    path text,
    hosts text[] NOT NULL DEFAULT '{}',
    host text,
    methods text[] NOT NULL DEFAULT '{}',
    headers jsonb NOT NULL DEFAULT '{}',
    upstream text NOT NULL REFERENCES upstreams (name),
    strip_prefix boolean NOT NULL,
    rewrite text,
    max_body bigint NOT NULL,
    websocket boolean NOT NULL,
    allow_encoded_slashes boolean NOT NULL
);

-- Uploaded components. `position` is set while the document declares the plugin (its place in
-- `plugins:`), NULL for a component uploaded but not (or no longer) declared.
CREATE TABLE plugins (
    name text PRIMARY KEY,
    position integer,
    sha256 text NOT NULL,
    bytes bytea NOT NULL,
    grants text[] NOT NULL DEFAULT '{}',
    uploaded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE route_filters (
    route text NOT NULL REFERENCES routes (name) ON DELETE CASCADE,
    position integer NOT NULL,
    plugin text NOT NULL,
    config jsonb NOT NULL,
    on_error text NOT NULL,
    isolation text NOT NULL,
    timeout text NOT NULL,
    memory bigint NOT NULL,
    PRIMARY KEY (route, position)
);

CREATE TABLE consumers (
    name text PRIMARY KEY,
    position integer NOT NULL
);

-- API keys: only their SHA-256 (hex), never the plaintext.
CREATE TABLE api_keys (
    consumer text NOT NULL REFERENCES consumers (name) ON DELETE CASCADE,
    position integer NOT NULL,
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (consumer, position)
);
CREATE INDEX api_keys_sha256 ON api_keys (sha256);

CREATE TABLE jwt_credentials (
    consumer text NOT NULL REFERENCES consumers (name) ON DELETE CASCADE,
    position integer NOT NULL,
    issuer text NOT NULL,
    algorithm text NOT NULL,
    credential jsonb NOT NULL,
    PRIMARY KEY (consumer, position)
);

CREATE TABLE admin_users (
    name text PRIMARY KEY,
    role text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Admin tokens: only their SHA-256 (hex).
CREATE TABLE admin_tokens (
    id bigserial PRIMARY KEY,
    user_name text NOT NULL REFERENCES admin_users (name) ON DELETE CASCADE,
    sha256 text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked boolean NOT NULL DEFAULT false
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    resource text NOT NULL,
    before jsonb,
    after jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);

CREATE TABLE request_logs (
    id bigserial PRIMARY KEY,
    request_id text NOT NULL,
    at timestamptz NOT NULL,
    route text,
    consumer text,
    method text NOT NULL,
    path text NOT NULL,
    status smallint NOT NULL,
    duration_us bigint NOT NULL,
    upstream_us bigint,
    request_bytes bigint,
    response_bytes bigint,
    filters jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX request_logs_at ON request_logs (at);
