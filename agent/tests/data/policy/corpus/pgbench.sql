-- pgbench: the statements of its built-in scripts (tpcb-like, simple-update, select-only)
-- after variable substitution, in simple and extended (parameter) form, and of `pgbench -i`.
-- expect: transaction
BEGIN;
-- expect: write where=true tables=pgbench_accounts
UPDATE pgbench_accounts SET abalance = abalance + -4211 WHERE aid = 83421;
-- expect: read where=true tables=pgbench_accounts
SELECT abalance FROM pgbench_accounts WHERE aid = 83421;
-- expect: write where=true tables=pgbench_tellers
UPDATE pgbench_tellers SET tbalance = tbalance + -4211 WHERE tid = 7;
-- expect: write where=true tables=pgbench_branches
UPDATE pgbench_branches SET bbalance = bbalance + -4211 WHERE bid = 1;
-- expect: write tables=pgbench_history
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 83421, -4211, CURRENT_TIMESTAMP);
-- expect: transaction
END;
-- expect: write where=true tables=pgbench_accounts
UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;
-- expect: read where=true tables=pgbench_accounts
SELECT abalance FROM pgbench_accounts WHERE aid = $1;
-- expect: write where=true tables=pgbench_tellers
UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;
-- expect: write where=true tables=pgbench_branches
UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;
-- expect: write tables=pgbench_history
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);
-- expect: transaction
COMMIT;
-- expect: ddl tables=pgbench_accounts
drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers;
-- expect: ddl
create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22));
-- expect: ddl
create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100);
-- expect: ddl
create table pgbench_accounts(aid int not null,bid int,abalance int,filler char(84)) with (fillfactor=100);
-- expect: ddl
create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100);
-- expect: delete where=false
truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers;
-- expect: write tables=pgbench_branches functions=generate_series
insert into pgbench_branches(bid,bbalance) select bid, 0 from generate_series(1, 1) as bid;
-- expect: write tables=pgbench_tellers functions=generate_series
insert into pgbench_tellers(tid,bid,tbalance) select tid, (tid - 1) / 10 + 1, 0 from generate_series(1, 10) as tid;
-- expect: write tables=pgbench_accounts
copy pgbench_accounts from stdin with (freeze on);
-- expect: write tables=pgbench_accounts functions=generate_series
insert into pgbench_accounts(aid,bid,abalance,filler) select aid, (aid - 1) / 100000 + 1, 0, '' from generate_series(1, 100000) as aid;
-- expect: admin
vacuum analyze pgbench_branches;
-- expect: admin
vacuum analyze pgbench_tellers;
-- expect: admin
vacuum analyze pgbench_accounts;
-- expect: admin
vacuum analyze pgbench_history;
-- expect: ddl
alter table pgbench_branches add primary key (bid);
-- expect: ddl
alter table pgbench_tellers add primary key (tid);
-- expect: ddl
alter table pgbench_accounts add primary key (aid);
-- expect: ddl
alter table pgbench_tellers add constraint pgbench_tellers_bid_fkey foreign key (bid) references pgbench_branches;
-- expect: ddl
alter table pgbench_accounts add constraint pgbench_accounts_bid_fkey foreign key (bid) references pgbench_branches;
-- expect: read tables=pgbench_branches functions=count
select count(*) from pgbench_branches;
-- expect: read
select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral (select pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) as o(n) left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join pg_catalog.pg_inherits as i on (c.oid = i.inhparent) where c.relname = 'pgbench_accounts' and o.n is not null group by 1, 2 order by 1 asc limit 1;
-- expect: session
SET application_name = 'pgbench';
-- expect: read
SELECT 1;
