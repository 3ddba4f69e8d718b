-- Privilege changes.
-- expect: privilege tables=orders
GRANT SELECT ON orders TO analyst;
-- expect: privilege
GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO app;
-- expect: privilege
GRANT INSERT, UPDATE ON TABLE orders TO app WITH GRANT OPTION;
-- expect: privilege
GRANT USAGE ON SCHEMA reporting TO analyst;
-- expect: privilege
GRANT EXECUTE ON FUNCTION add(int, int) TO PUBLIC;
-- expect: privilege
GRANT admin TO mallory;
-- expect: privilege
GRANT pg_read_server_files TO app;
-- expect: privilege
GRANT pg_execute_server_program TO app;
-- expect: privilege
REVOKE SELECT ON orders FROM analyst;
-- expect: privilege
REVOKE ALL ON SCHEMA public FROM PUBLIC;
-- expect: privilege
REVOKE admin FROM mallory;
-- expect: privilege
CREATE ROLE analyst LOGIN PASSWORD 'secret';
-- expect: privilege
CREATE ROLE backdoor SUPERUSER LOGIN;
-- expect: privilege
CREATE USER bob WITH PASSWORD 'x';
-- expect: privilege
ALTER ROLE analyst SUPERUSER;
-- expect: privilege
ALTER ROLE app SET search_path = app, public;
-- expect: privilege
ALTER ROLE app WITH PASSWORD 'new';
-- expect: privilege
ALTER USER bob CREATEROLE;
-- expect: privilege
DROP ROLE analyst;
-- expect: privilege
DROP ROLE IF EXISTS a, b;
-- expect: privilege
DROP USER bob;
-- expect: privilege
CREATE POLICY tenant_isolation ON orders USING (tenant_id = current_setting('app.tenant')::int);
-- expect: privilege
DROP POLICY tenant_isolation ON orders;
-- expect: privilege
ALTER POLICY tenant_isolation ON orders USING (true);
-- expect: privilege
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO analyst;
-- expect: privilege
REASSIGN OWNED BY old_owner TO new_owner;
-- expect: privilege
DROP OWNED BY old_owner;
-- expect: privilege
SECURITY LABEL FOR selinux ON TABLE orders IS 'system_u:object_r:sepgsql_table_t:s0';
-- expect: privilege
ALTER GROUP admins ADD USER mallory;
