-- 001_inventory.sql - the inventory the snapshot is built from: sites and
-- their subnets, Task Servers and their manual site assignments, clients
-- (Client Task Agents) and the connection errors they reported.
-- Later migrations (002+) add policy versions, logs and heartbeats.
--
-- Names and GUIDs are compared without regard to (ASCII) case, as ITMS does
-- and as the snapshot's indexes do: 'London' and 'LONDON' are one site.

CREATE TABLE sites (
    id        INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    country   TEXT,                 -- ISO 3166 code, e.g. 'GB'
    latitude  REAL CHECK (latitude IS NULL OR latitude BETWEEN -90 AND 90),
    longitude REAL CHECK (longitude IS NULL OR longitude BETWEEN -180 AND 180)
);

-- A subnet belongs to exactly one site; cidr is kept in canonical form so
-- '10.1.0.0/16' and '010.1.0.0/16' cannot both exist.
CREATE TABLE site_subnets (
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    cidr    TEXT NOT NULL UNIQUE
);
CREATE INDEX site_subnets_by_site ON site_subnets(site_id);

CREATE TABLE task_servers (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE COLLATE NOCASE,
    host           TEXT,
    ip             TEXT,
    registered     INTEGER NOT NULL DEFAULT 1 CHECK (registered IN (0, 1)),
    service        TEXT NOT NULL DEFAULT 'running'
                   CHECK (service IN ('running', 'stopped')),
    capacity       INTEGER NOT NULL DEFAULT 5000 CHECK (capacity >= 0),
    connections    INTEGER NOT NULL DEFAULT 0 CHECK (connections >= 0),
    response_ms    INTEGER NOT NULL DEFAULT 0 CHECK (response_ms >= 0),
    last_heartbeat INTEGER            -- Unix seconds; NULL: none recorded
);

-- Manual site assignments of a server, in the order the admin gave them.
CREATE TABLE server_sites (
    server_id INTEGER NOT NULL REFERENCES task_servers(id) ON DELETE CASCADE,
    site_id   INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    PRIMARY KEY (server_id, site_id)
) WITHOUT ROWID;
CREATE INDEX server_sites_by_site ON server_sites(site_id);

CREATE TABLE clients (
    id              INTEGER PRIMARY KEY,
    guid            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name            TEXT,
    ip              TEXT,
    department      TEXT,
    site_id         INTEGER REFERENCES sites(id) ON DELETE SET NULL, -- explicit site
    assigned_server TEXT,             -- server of the last successful registration
    assigned_at     INTEGER           -- Unix seconds
);
CREATE INDEX clients_by_site ON clients(site_id);

CREATE TABLE connection_errors (
    id        INTEGER PRIMARY KEY,
    client_id INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    server_id INTEGER NOT NULL REFERENCES task_servers(id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,       -- Unix seconds
    error     TEXT,
    UNIQUE (client_id, server_id, at)
);
CREATE INDEX connection_errors_by_server ON connection_errors(server_id);
