-- sluice schema, version 8 (SQLite): container images and vulnerability reports.
-- Keep in step with ../postgres/0008_images.sql.
-- A `build_image` step records the id of the image it built on its step row; a `scan` step
-- records its report (sluice-vuln's Report as JSON text) on its step row, so the run page shows
-- it whether the gate passed or not. The release of the service carries the image (id and the
-- tag sluice gave it) and the reports of its scan steps (a JSON object: step name -> report).
-- All are NULL for host-only pipelines and for rows written before this version.
ALTER TABLE steps ADD COLUMN image_id TEXT;
ALTER TABLE steps ADD COLUMN vuln_report TEXT;
ALTER TABLE releases ADD COLUMN image_id TEXT;
ALTER TABLE releases ADD COLUMN image_tag TEXT;
ALTER TABLE releases ADD COLUMN vuln_report TEXT;
