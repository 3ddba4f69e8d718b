-- Schema changes.
-- expect: ddl
CREATE TABLE IF NOT EXISTS audit_log (id bigserial PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz DEFAULT now());
-- expect: ddl
CREATE TEMPORARY TABLE tmp_ids (id int);
-- expect: ddl tables=orders
CREATE TABLE orders_copy AS SELECT * FROM orders;
-- expect: ddl
CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v bytea);
-- expect: ddl
CREATE TABLE measurements (ts timestamptz NOT NULL, v double precision) PARTITION BY RANGE (ts);
-- expect: ddl
ALTER TABLE users ADD COLUMN phone text;
-- expect: ddl
ALTER TABLE users DROP COLUMN phone;
-- expect: ddl
ALTER TABLE users RENAME TO customers;
-- expect: ddl
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
-- expect: ddl
ALTER TABLE users OWNER TO app_owner;
-- expect: ddl
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
-- expect: ddl
DROP TABLE users;
-- expect: ddl
DROP TABLE IF EXISTS users, orders CASCADE;
-- expect: ddl
CREATE INDEX CONCURRENTLY idx_users_email ON users (lower(email));
-- expect: ddl
CREATE UNIQUE INDEX idx_orders_ref ON orders (ref) WHERE ref IS NOT NULL;
-- expect: ddl
DROP INDEX idx_users_email;
-- expect: ddl
ALTER INDEX idx_orders_ref RENAME TO idx_orders_reference;
-- expect: ddl
CREATE VIEW active_users AS SELECT * FROM users WHERE active;
-- expect: ddl
CREATE OR REPLACE VIEW v AS SELECT 1 AS one;
-- expect: ddl
CREATE MATERIALIZED VIEW daily AS SELECT date_trunc('day', created_at) d, count(*) FROM orders GROUP BY 1;
-- expect: ddl
DROP VIEW active_users;
-- expect: ddl
DROP MATERIALIZED VIEW daily;
-- expect: ddl
CREATE SCHEMA reporting;
-- expect: ddl
CREATE SCHEMA IF NOT EXISTS staging AUTHORIZATION etl;
-- expect: ddl
DROP SCHEMA reporting CASCADE;
-- expect: ddl
ALTER SCHEMA staging RENAME TO landing;
-- expect: ddl
CREATE SEQUENCE invoice_seq START 1000;
-- expect: ddl
DROP SEQUENCE invoice_seq;
-- expect: ddl
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
-- expect: ddl
DROP TYPE mood;
-- expect: ddl
CREATE DOMAIN email AS text CHECK (VALUE ~ '@');
-- expect: ddl
CREATE FUNCTION add(a int, b int) RETURNS int AS $$ SELECT a + b $$ LANGUAGE sql IMMUTABLE;
-- expect: ddl
CREATE OR REPLACE FUNCTION wipe() RETURNS void AS $$ BEGIN DELETE FROM users; END $$ LANGUAGE plpgsql;
-- expect: ddl
DROP FUNCTION add(int, int);
-- expect: ddl
CREATE TRIGGER trg_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit_insert();
-- expect: ddl
DROP TRIGGER trg_audit ON orders;
-- expect: ddl
CREATE DATABASE analytics;
-- expect: ddl
DROP DATABASE analytics;
-- expect: ddl
COMMENT ON TABLE users IS 'registered users';
-- expect: ddl
CREATE PROCEDURE archive_old() LANGUAGE sql AS $$ DELETE FROM orders WHERE created_at < now() - interval '5 years' $$;
-- expect: ddl
ALTER TABLE orders ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id);
-- expect: ddl
ALTER TABLE orders DETACH PARTITION orders_2019;
-- expect: write
REFRESH MATERIALIZED VIEW daily;
-- expect: ddl functions=pg_read_file
CREATE FUNCTION leak() RETURNS text AS $$ SELECT pg_read_file('/etc/passwd') $$ LANGUAGE sql;
-- expect: ddl tables=users
CREATE OR REPLACE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$ BEGIN TRUNCATE users; END $$;
