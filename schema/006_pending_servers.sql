-- 006_pending_servers.sql - Task Servers waiting for an admin's approval.
--
-- A heartbeat from a name the inventory lacks is refused, unless the
-- broker runs with --heartbeat-registration: then the name is stored here
-- as a pending server (approved = 0) with the identity it claimed (host,
-- ip and its sites in server_sites), and it enters no list, no snapshot
-- and no report until an admin approves it (`tsl servers approve NAME`,
-- POST /v1/task-servers/NAME/approve).  Every server the inventory had
-- before this migration, and every server an import writes, is approved.

ALTER TABLE task_servers ADD COLUMN approved INTEGER NOT NULL DEFAULT 1
    CHECK (approved IN (0, 1));
ALTER TABLE task_servers ADD COLUMN requested_at INTEGER; -- Unix seconds: its first heartbeat
ALTER TABLE task_servers ADD COLUMN requested_by TEXT;    -- the peer address that heartbeat came from
CREATE INDEX task_servers_pending ON task_servers(approved) WHERE approved = 0;

-- Who approved or rejected which pending server, and when.  The broker
-- reads the newest id once a second to adopt an approval made beside it.
CREATE TABLE server_approvals (
    id     INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    at     INTEGER NOT NULL,                 -- Unix seconds
    author TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('approved', 'rejected'))
);
