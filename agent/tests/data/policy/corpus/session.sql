-- Transaction and session control.
-- expect: transaction
BEGIN ISOLATION LEVEL SERIALIZABLE;
-- expect: transaction
START TRANSACTION READ ONLY;
-- expect: transaction
COMMIT;
-- expect: transaction
ROLLBACK;
-- expect: transaction
SAVEPOINT sp1;
-- expect: transaction
ROLLBACK TO SAVEPOINT sp1;
-- expect: transaction
RELEASE SAVEPOINT sp1;
-- expect: transaction
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
-- expect: transaction
ABORT;
-- expect: session
SET search_path TO app, public;
-- expect: session
SET statement_timeout = '5s';
-- expect: session
SET TIME ZONE 'UTC';
-- expect: session
SET client_encoding TO 'UTF8';
-- expect: session
SET LOCAL work_mem = '64MB';
-- expect: session
RESET statement_timeout;
-- expect: session
RESET ALL;
-- expect: session
SHOW search_path;
-- expect: session
SHOW ALL;
-- expect: session
DISCARD ALL;
-- expect: session
LISTEN orders_changed;
-- expect: session
NOTIFY orders_changed, 'id=7';
-- expect: session
UNLISTEN *;
-- expect: session
DEALLOCATE ALL;
-- expect: session
DEALLOCATE p1;
-- expect: read functions=set_config
SELECT set_config('statement_timeout', '5s', true);
-- expect: session
SET application_name = 'dbward-test';
