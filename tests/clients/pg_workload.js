// node-postgres workload for the dbward shim tests: prints one JSON document of results.
// Usage: node pg_workload.js HOST PORT   (needs `npm ci --prefix tests/clients`)
let pg;
try {
  pg = require('pg');
} catch (e) {
  console.error("missing npm package 'pg': npm ci --prefix tests/clients");
  process.exit(1);
}

async function main() {
  const [host, port] = process.argv.slice(2);
  const client = new pg.Client({ host, port: Number(port), user: 'postgres', database: 'postgres' });
  await client.connect();
  const out = {};
  try {
    await client.query('CREATE TEMP TABLE items (id int PRIMARY KEY, name text, price numeric, meta jsonb)');
    for (let i = 1; i <= 200; i++) {
      await client.query('INSERT INTO items VALUES ($1, $2, $3, $4)', [i, i % 11 ? `item ${i}` : null, i * 0.75, { n: i }]);
    }
    const named = { name: 'by-id', text: 'SELECT name, meta FROM items WHERE id = $1', values: [7] };
    out.named = [(await client.query(named)).rows, (await client.query({ ...named, values: [11] })).rows];
    out.agg = (await client.query('SELECT count(*)::int AS n, sum(price)::text AS s FROM items')).rows;
    const big = 'n'.repeat(4 * 1024 * 1024);
    out.big = (await client.query('SELECT length($1::text) AS l, md5($1::text) AS m', [big])).rows;
    await client.query('BEGIN');
    await client.query('DELETE FROM items');
    try {
      await client.query('SELECT 1/0');
    } catch (e) {
      out.error = e.code;
    }
    await client.query('ROLLBACK');
    out.count = (await client.query('SELECT count(*)::int AS n FROM items')).rows;
    const multi = await client.query('SELECT 1 AS a; SELECT 2 AS b');
    out.multi = multi.map((r) => r.rows);
  } finally {
    await client.end();
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
