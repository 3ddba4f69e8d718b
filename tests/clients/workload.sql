-- psql workload run directly and through the shim; outputs must be equal.
\set ON_ERROR_STOP 0
CREATE TEMP TABLE items (id int PRIMARY KEY, name text, price numeric, data bytea);
INSERT INTO items SELECT g, 'item ' || g, g * 1.5, decode(md5(g::text), 'hex') FROM generate_series(1, 500) g;
SELECT count(*), sum(price) FROM items;
SELECT id, name, encode(data, 'hex') FROM items WHERE id % 97 = 0 ORDER BY id;
BEGIN;
UPDATE items SET price = price * 2 WHERE id <= 10;
SAVEPOINT s1;
SELECT 1/0;
ROLLBACK TO SAVEPOINT s1;
DELETE FROM items WHERE id > 490;
COMMIT;
BEGIN;
SELECT no_such_column FROM items;
SELECT 1;
ROLLBACK;
SELECT count(*), sum(price) FROM items;
COPY items (id, name) FROM STDIN;
1001	copied one
1002	copied two
\.
COPY (SELECT id, name FROM items WHERE id > 1000 ORDER BY id) TO STDOUT;
SELECT length(repeat('x', 8000000)), md5(repeat('x', 8000000));
SELECT repeat('y', 3000000) = repeat('y', 3000000) AS big_row, length(string_agg(repeat(name, 500), ',')) FROM items;
DO $$BEGIN RAISE NOTICE 'hello from a notice'; END$$;
LISTEN chan;
NOTIFY chan, 'payload';
PREPARE p(int) AS SELECT name FROM items WHERE id = $1;
EXECUTE p(42);
SELECT 'a' || NULL, now() IS NOT NULL;
SET application_name = 'changed';
SHOW application_name;
SELECT 1; SELECT 2;
