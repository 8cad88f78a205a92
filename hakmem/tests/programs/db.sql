-- sqlite3 under LD_PRELOAD: a table of 200,000 rows built, indexed,
-- queried, a third deleted, vacuumed (page cache, B-tree nodes and the
-- statement machinery through malloc). Deterministic: no randomblob().
create table t(a integer primary key, b text, c real);
with recursive r(x) as (select 1 union all select x + 1 from r where x < 200000)
insert into t select x, hex(x * 2654435761 % 4294967291), x * 1.5 from r;
create index tb on t(b);
select count(*), sum(length(b)) from t where b like 'A%';
delete from t where a % 3 = 0;
vacuum;
select count(*), sum(c) from t;
select b from t order by b limit 5;
