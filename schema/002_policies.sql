-- 002_policies.sql - PROVISIONAL stand-in for the policy branch's migration,
-- so the rollout work (004) builds and is tested before that branch lands.
-- When the policy branch is merged its 002_policies.sql replaces this file
-- and rollout.c's statements (store.h, "rollout" block) follow its columns.
--
-- Every stored policy version: its text, content hash, who stored it, when
-- and why.  Versions are never changed or deleted: activation refers to them.

CREATE TABLE policy_versions (
    id         INTEGER PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,   -- tsl_policy_version(): "sha256:" + 12 hex digits
    name       TEXT,                   -- file name it was loaded from
    content    TEXT NOT NULL,
    author     TEXT,
    comment    TEXT,
    created_at INTEGER NOT NULL        -- Unix seconds
);
