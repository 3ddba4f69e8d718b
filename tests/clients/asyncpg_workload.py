"""asyncpg workload (binary extended protocol) for the dbward shim tests: prints one JSON
document of results.

Usage: python3 asyncpg_workload.py HOST PORT
"""
import asyncio
import json
import sys

try:
    import asyncpg
except ImportError:
    sys.exit("missing Python module 'asyncpg': pip install -r tests/clients/requirements.txt")


async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    out = {}
    conn = await asyncpg.connect(host=host, port=port, user="postgres", database="postgres", ssl=False)
    try:
        await conn.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text, price float8, tags text[])")
        await conn.executemany(
            "INSERT INTO items VALUES ($1, $2, $3, $4)",
            [(i, f"item {i}", i / 4, [f"t{i % 3}", "x"]) for i in range(1, 301)],
        )
        stmt = await conn.prepare("SELECT id, name, price, tags FROM items WHERE id = $1")
        out["prepared"] = [list((await stmt.fetchrow(i)).values()) for i in (1, 150, 300)]
        out["agg"] = list((await conn.fetchrow("SELECT count(*), sum(price) FROM items")).values())
        big = "w" * (4 * 1024 * 1024)
        out["big"] = list((await conn.fetchrow("SELECT length($1::text), md5($1::text)", big)).values())
        out["copy_in"] = await conn.copy_records_to_table(
            "items", records=[(i, f"copied {i}", 0.5, []) for i in range(1001, 1101)], columns=["id", "name", "price", "tags"]
        )
        rows = await conn.fetch("SELECT id, name FROM items WHERE id > 1095 ORDER BY id")
        out["after_copy"] = [list(r.values()) for r in rows]
        try:
            async with conn.transaction():
                await conn.execute("DELETE FROM items")
                await conn.execute("SELECT 1/0")
        except asyncpg.exceptions.DivisionByZeroError as e:
            out["error"] = e.sqlstate
        out["count"] = await conn.fetchval("SELECT count(*) FROM items")
        cursor_rows = []
        async with conn.transaction():
            async for r in conn.cursor("SELECT id FROM items ORDER BY id", prefetch=50):
                cursor_rows.append(r["id"])
        out["cursor"] = [len(cursor_rows), cursor_rows[:3], cursor_rows[-3:]]
    finally:
        await conn.close()
    print(json.dumps(out, sort_keys=True, default=str))


asyncio.run(main())
