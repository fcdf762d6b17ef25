-- The alert journal moved out of the database into its own append-only file
-- (`<data dir>/alert-journal/`, crate sluice-journal): appends no longer share the database's
-- writer. Positions continue: the file journal numbers its entries after `alerts.applied_seq`.
-- The table was only ever written by development builds of the unreleased incident engine.
DROP TABLE IF EXISTS alert_journal;
