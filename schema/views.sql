-- lp-services: reporting views (ops_*).
--
-- Views carry no data, so they are not patched: `db upgrade` runs this file
-- after the last patch, in one transaction, every time. It must therefore
-- be idempotent: drop each view before creating it.
--
-- The ops views themselves are added with the reports (see docs/).
SELECT 1;
