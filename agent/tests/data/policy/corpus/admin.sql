-- Server administration and identity switches.
-- expect: admin
ALTER SYSTEM SET shared_preload_libraries = 'evil';
-- expect: admin
ALTER SYSTEM RESET ALL;
-- expect: admin
SET ROLE postgres;
-- expect: admin
SET ROLE NONE;
-- expect: admin
SET SESSION AUTHORIZATION postgres;
-- expect: admin
SET LOCAL ROLE admin;
-- expect: admin
SET role = 'postgres';
-- expect: admin
SET standard_conforming_strings = off;
-- expect: admin
SET session_replication_role = replica;
-- expect: admin functions=pg_terminate_backend
SELECT pg_terminate_backend(12345);
-- expect: admin functions=pg_terminate_backend
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app';
-- expect: admin functions=pg_cancel_backend
SELECT pg_cancel_backend(12345);
-- expect: admin functions=pg_reload_conf
SELECT pg_reload_conf();
-- expect: admin functions=pg_rotate_logfile
SELECT pg_rotate_logfile();
-- expect: admin functions=pg_promote
SELECT pg_promote();
-- expect: admin functions=pg_switch_wal
SELECT pg_switch_wal();
-- expect: admin functions=pg_create_logical_replication_slot
SELECT pg_create_logical_replication_slot('s', 'pgoutput');
-- expect: admin functions=set_config
SELECT set_config('role', 'postgres', false);
-- expect: admin functions=set_config
SELECT set_config('session_authorization', 'postgres', false);
-- expect: admin functions=set_config
SELECT set_config(current_setting('x.name'), 'postgres', false);
-- expect: admin
CREATE EXTENSION IF NOT EXISTS dblink;
-- expect: admin
CREATE EXTENSION plpython3u;
-- expect: admin
DROP EXTENSION pgcrypto;
-- expect: admin
CREATE SERVER evil FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'evil.example');
-- expect: admin
CREATE FOREIGN DATA WRAPPER fdw HANDLER h;
-- expect: admin
CREATE USER MAPPING FOR app SERVER evil OPTIONS (user 'x');
-- expect: admin
IMPORT FOREIGN SCHEMA public FROM SERVER evil INTO landing;
-- expect: admin
CHECKPOINT;
-- expect: admin
VACUUM FULL users;
-- expect: admin
VACUUM;
-- expect: admin
REINDEX TABLE users;
-- expect: admin
CLUSTER users USING users_pkey;
-- expect: admin
LOAD 'auto_explain';
-- expect: admin
ANALYZE;
