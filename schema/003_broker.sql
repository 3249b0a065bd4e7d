-- 003_broker.sql - what the broker (`tsl serve`) records: the registration
-- reports of Client Task Agents and a bounded log of the lists it sent.
-- Heartbeats need no table of their own: they update task_servers
-- (service, capacity, connections, response_ms, last_heartbeat).

-- POST /v1/clients/GUID/registration: one row per report.  site, tier and
-- outside_approved are judged by the broker when the report arrives,
-- against the list the client would receive at that moment (the plan in
-- force, policy `policy`).  Rows older than the broker's retention
-- (--keep-registrations, 90 days by default) are deleted.
CREATE TABLE registrations (
    id               INTEGER PRIMARY KEY,
    client           TEXT NOT NULL,     -- GUID as reported (may be unknown to the inventory)
    server           TEXT NOT NULL,     -- Task Server name
    at               INTEGER NOT NULL,  -- Unix seconds, the broker's clock
    ok               INTEGER NOT NULL CHECK (ok IN (0, 1)),
    error            TEXT,              -- the CTA's error text when ok = 0
    site             TEXT,              -- the client's site, NULL when it has none
    tier             INTEGER,           -- the server's tier in the client's list; NULL: not listed
    -- 1: not in tier 0 of the client's list (a fallback tier, or not listed
    -- at all); NULL: the broker could not judge (a client unknown to the
    -- inventory that sent no IP)
    outside_approved INTEGER CHECK (outside_approved IN (0, 1)),
    policy           TEXT               -- policy version in force; NULL: the default logic
);
CREATE INDEX registrations_by_at ON registrations(at);
CREATE INDEX registrations_by_client ON registrations(client, at);

-- GET /v1/task-servers: the lists the broker sent, a ring of at most
-- --decision-log rows (slot = seq % size), and at most --decision-log-rate
-- rows a second (the rest are counted in /metrics, not stored).  The
-- newest decisions are the highest seq.  ips and servers are JSON arrays
-- (json_each() reads them), servers in list order.
CREATE TABLE decision_log (
    slot       INTEGER PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    at         INTEGER NOT NULL,        -- Unix seconds
    client     TEXT,                    -- GUID, NULL when the request named none
    ips        TEXT NOT NULL,           -- JSON array of the adapter IPs, in order
    department TEXT,
    task       TEXT,
    site       TEXT,                    -- the resolved site, NULL when none
    policy     TEXT,                    -- policy version; NULL: the default logic
    servers    TEXT NOT NULL,           -- JSON array of server names, in order
    blocked    INTEGER NOT NULL CHECK (blocked IN (0, 1))
);
CREATE INDEX decision_log_by_client ON decision_log(client);
CREATE INDEX decision_log_by_at ON decision_log(at);

-- Policy activations through the broker (POST /v1/policy/VERSION/activate,
-- --policy FILE at start or on SIGHUP) and rollbacks, newest last.
-- POST /v1/policy/rollback undoes the newest activation not yet undone:
-- it makes `prior_id` active again and marks the row undone_by the
-- rollback's row, so repeated rollbacks walk back through the history.
-- A NULL policy_id or prior_id is the default logic.
CREATE TABLE policy_activations (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,                 -- Unix seconds, the broker's clock
    action    TEXT NOT NULL CHECK (action IN ('activate', 'rollback')),
    policy_id INTEGER REFERENCES policies(id),  -- what became active
    prior_id  INTEGER REFERENCES policies(id),  -- what was active before
    author    TEXT,
    undone_by INTEGER REFERENCES policy_activations(id)
);
