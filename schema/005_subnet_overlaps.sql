-- 005_subnet_overlaps.sql - a subnet may belong to several sites, as ITMS
-- allows (Broadcom KB 426743: "the agent's subnet is assigned to multiple
-- sites").  The import warns, and the snapshot decides such a client's
-- site the documented way (docs/inventory.md): the longest prefix, then
-- the first site by name.  A site still holds a subnet at most once.

CREATE TABLE site_subnets_005 (
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    cidr    TEXT NOT NULL,
    UNIQUE (site_id, cidr)
);
INSERT INTO site_subnets_005(rowid, site_id, cidr)
    SELECT rowid, site_id, cidr FROM site_subnets;
DROP TABLE site_subnets;
ALTER TABLE site_subnets_005 RENAME TO site_subnets;
CREATE INDEX site_subnets_by_cidr ON site_subnets(cidr);
