-- 004_rollout.sql - the policy lifecycle after `tsl policy load`: dry-run
-- records, the rollout state (a base version plus staged per-site
-- versions), the activation history rollback walks back, and shadow mode's
-- version, counters and samples.
--
-- Versions are the policy layer's `policies` (002): text, hash, author,
-- comment, time.  The base of the rollout (what every site not staged
-- runs) is 002's `policy_active`; this file adds only the staged sites,
-- so the two never disagree: policy_active + rollout_sites is the rollout
-- in force, and rollout.c is the one writer of both.
-- Written by rollout.c (and the broker's writer through tsl_shadow_flush).

-- Each dry-run of a stored version: against what, what it found.  A clean
-- one (no condition occurred) is what `activate --require-dry-run` needs.
CREATE TABLE rollout_dryruns (
    id         INTEGER PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    against    TEXT NOT NULL,      -- the other side: a rollout state key, or "file:<hash>"
    population TEXT NOT NULL,      -- 'inventory' or 'recorded'
    fail_on    TEXT NOT NULL,      -- the conditions the run gated on ('none')
    conditions TEXT NOT NULL,      -- the conditions that occurred ('none')
    clean      INTEGER NOT NULL CHECK (clean IN (0, 1)),
    summary    TEXT NOT NULL,      -- the summary, JSON (tsl_dryrun_summary_json)
    author     TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX rollout_dryruns_by_version ON rollout_dryruns(version_id, against);

-- Sites staged on another version than the base (policy_active, 002):
-- `tsl policy activate V --sites London,Paris`.  Empty: every site runs
-- the base (or the default logic when policy_active names none).
CREATE TABLE rollout_sites (
    site       TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    version_id INTEGER NOT NULL REFERENCES policies(id)
) WITHOUT ROWID;

-- Every change of the state, newest last.  `prior` is the state it replaced
-- (JSON object site -> version id, "*" the base), so a rollback restores it
-- exactly.
CREATE TABLE rollout_history (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('activate', 'rollback', 'shadow', 'unshadow')),
    version_id INTEGER REFERENCES policies(id),
    sites      TEXT,               -- comma-separated; NULL: every site
    author     TEXT,
    comment    TEXT,
    prior      TEXT NOT NULL,
    undone_by  INTEGER REFERENCES rollout_history(id)
);

-- Shadow mode: at most one version evaluated beside the active one.
CREATE TABLE rollout_shadow (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version_id INTEGER NOT NULL REFERENCES policies(id),
    since      INTEGER NOT NULL,
    author     TEXT
);

-- What the broker observed for a shadow version (its short hash), added up
-- by each flush; restarted when the version is made the shadow again.
CREATE TABLE rollout_shadow_counts (
    hash       TEXT NOT NULL PRIMARY KEY,
    requests   INTEGER NOT NULL DEFAULT 0,
    differ     INTEGER NOT NULL DEFAULT 0,
    first      INTEGER NOT NULL DEFAULT 0,
    list       INTEGER NOT NULL DEFAULT 0,
    blocked    INTEGER NOT NULL DEFAULT 0,
    unblocked  INTEGER NOT NULL DEFAULT 0,
    cross_site INTEGER NOT NULL DEFAULT 0,
    errors     INTEGER NOT NULL DEFAULT 0,
    since      INTEGER NOT NULL,
    updated    INTEGER NOT NULL
) WITHOUT ROWID;

-- Requests where the shadow answered differently; the newest few hundred.
CREATE TABLE rollout_shadow_samples (
    id     INTEGER PRIMARY KEY,
    hash   TEXT NOT NULL,
    at     INTEGER NOT NULL,
    client TEXT,
    ip     TEXT,
    site   TEXT,
    kinds  TEXT NOT NULL,          -- "first,cross-site"
    active TEXT NOT NULL,          -- server names the client got
    shadow TEXT NOT NULL           -- what the shadow would have answered
);
CREATE INDEX rollout_shadow_samples_by_hash ON rollout_shadow_samples(hash, id);
