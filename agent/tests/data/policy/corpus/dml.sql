-- Reads and data changes in everyday shapes.
-- expect: read
SELECT now();
-- expect: read tables=users where=true
SELECT id, email FROM users WHERE id = 1;
-- expect: read tables=users
SELECT * FROM users ORDER BY created_at DESC LIMIT 10 OFFSET 20;
-- expect: read tables=orders,users
SELECT u.email, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.email HAVING count(o.id) > 3;
-- expect: read tables=events
SELECT DISTINCT ON (user_id) user_id, created_at FROM events ORDER BY user_id, created_at DESC;
-- expect: read tables=app.settings
SELECT value FROM app.settings WHERE key = 'theme';
-- expect: read tables=orders
SELECT id FROM orders WHERE status = ANY('{new,paid}'::text[]);
-- expect: read tables=items
SELECT jsonb_agg(x) FROM (SELECT id, name FROM items) x;
-- expect: read tables=orders
SELECT * FROM orders FOR UPDATE SKIP LOCKED LIMIT 1;
-- expect: read tables=a,b
SELECT 1 FROM a UNION ALL SELECT 2 FROM b;
-- expect: read tables=t
SELECT count(*) FILTER (WHERE x > 0) OVER (PARTITION BY y) FROM t;
-- expect: read tables=accounts
WITH RECURSIVE tree AS (SELECT id, parent_id FROM accounts WHERE parent_id IS NULL UNION ALL SELECT a.id, a.parent_id FROM accounts a JOIN tree t ON a.parent_id = t.id) SELECT * FROM tree;
-- expect: read
VALUES (1, 'a'), (2, 'b');
-- expect: read tables=t
TABLE t;
-- expect: read tables=users
SELECT * FROM users WHERE email ILIKE '%@example.com' AND deleted_at IS NULL;
-- expect: read functions=generate_series
SELECT g FROM generate_series(1, 10) AS g;
-- expect: read tables=pg_stat_activity
SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database();
-- expect: read
SELECT version();
-- expect: read
SELECT current_setting('work_mem');
-- expect: read functions=pg_sleep
SELECT pg_sleep(1);
-- expect: write tables=users
INSERT INTO users (email) VALUES ('a@example.com') RETURNING id;
-- expect: write tables=users
INSERT INTO users (email) VALUES ('a@example.com') ON CONFLICT (email) DO UPDATE SET updated_at = now();
-- expect: write tables=archive,orders
INSERT INTO archive SELECT * FROM orders WHERE created_at < now() - interval '1 year';
-- expect: write tables=users where=true
UPDATE users SET last_login = now() WHERE id = 42;
-- expect: write tables=users where=false
UPDATE users SET active = false;
-- expect: write tables=orders,customers where=true
UPDATE orders o SET customer_name = c.name FROM customers c WHERE c.id = o.customer_id;
-- expect: delete tables=sessions where=true
DELETE FROM sessions WHERE expires_at < now();
-- expect: delete tables=sessions where=false
DELETE FROM sessions;
-- expect: delete tables=orders,blocked where=true
DELETE FROM orders USING blocked WHERE orders.customer_id = blocked.id;
-- expect: delete tables=logs where=false
TRUNCATE logs RESTART IDENTITY CASCADE;
-- expect: delete tables=target,source
MERGE INTO target t USING source s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id);
-- expect: write tables=inventory
MERGE INTO inventory i USING (SELECT 1 AS id) s ON i.id = s.id WHEN MATCHED THEN UPDATE SET qty = i.qty + 1;
-- expect: write functions=nextval
SELECT nextval('orders_id_seq');
-- expect: write functions=setval
SELECT setval('orders_id_seq', 1000);
-- expect: write tables=jobs
LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE;
-- expect: write
CALL refresh_stats();
-- expect: read
DECLARE c CURSOR FOR SELECT * FROM big_table;
-- expect: read
FETCH 100 FROM c;
-- expect: read
CLOSE c;
-- expect: ddl tables=old_orders
SELECT * INTO old_orders FROM orders WHERE created_at < '2020-01-01';
-- expect: read tables=users
EXPLAIN SELECT * FROM users;
-- expect: read tables=users
EXPLAIN (FORMAT JSON) SELECT * FROM users WHERE id = 1;
-- expect: write tables=users where=true
EXPLAIN ANALYZE UPDATE users SET a = 1 WHERE id = 2;
-- expect: read tables=users
EXPLAIN UPDATE users SET a = 1;
-- expect: write tables=t
COPY t FROM STDIN;
-- expect: write tables=t
COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true);
