-- 002_policies.sql - policy versions: the text of every policy ever loaded
-- (`tsl policy load`), keyed by its content hash, and which one is active.
-- A version is immutable; loading the same text again finds the same row.
-- Later migrations (the decision log, issue 5) refer to policies(id) and
-- may add columns here; nothing below depends on column order.

CREATE TABLE policies (
    id         INTEGER PRIMARY KEY,
    version    TEXT NOT NULL UNIQUE,   -- "sha256:" + 12 hex digits (tsl_policy_version)
    sha256     TEXT NOT NULL UNIQUE,   -- the full content hash, 64 hex digits
    name       TEXT NOT NULL,          -- the file it was loaded from ("london.lua")
    content    TEXT NOT NULL,          -- the policy text, exactly as loaded
    author     TEXT,
    comment    TEXT,
    created_at INTEGER NOT NULL,       -- Unix seconds
    sites      INTEGER NOT NULL DEFAULT 0, -- summary of the compiled policy
    groups     INTEGER NOT NULL DEFAULT 0,
    rules      INTEGER NOT NULL DEFAULT 0
);

-- The active policy: at most one row (id = 1).  No row, or a NULL
-- policy_id, means the default logic.
CREATE TABLE policy_active (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    policy_id    INTEGER REFERENCES policies(id) ON DELETE SET NULL,
    activated_at INTEGER NOT NULL,     -- Unix seconds
    activated_by TEXT
);
