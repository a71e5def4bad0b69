-- The role Caretrail connects as: a plain role, so row-level security applies to it.
CREATE ROLE caretrail_app LOGIN PASSWORD 'caretrail' NOSUPERUSER NOBYPASSRLS;
GRANT CREATE, CONNECT ON DATABASE caretrail TO caretrail_app;
