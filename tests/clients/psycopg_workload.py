"""psycopg 3 workload for the dbward shim tests: prints one JSON document of results.

Usage: python3 psycopg_workload.py HOST PORT
"""
import json
import sys

try:
    import psycopg
except ImportError:
    sys.exit("missing Python module 'psycopg': pip install -r tests/clients/requirements.txt")


def main():
    host, port = sys.argv[1], sys.argv[2]
    out = {}
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text, price numeric, data bytea)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items VALUES (%s, %s, %s, %s)",
                [(i, f"item {i}" if i % 9 else None, i * 1.25, bytes([i % 256]) * i) for i in range(1, 301)],
            )
        for i in range(8):
            conn.execute("SELECT name FROM items WHERE id = %s", (i + 1,), prepare=True).fetchone()
        rows = conn.execute("SELECT id, name, price::text, length(data) FROM items WHERE id % 50 = 0 ORDER BY id").fetchall()
        out["rows"] = [list(r) for r in rows]
        out["binary"] = conn.execute("SELECT %b::int8 + 1", (41,), binary=True).fetchone()[0]
        big = "q" * (4 * 1024 * 1024)
        out["big"] = conn.execute("SELECT length(%s), md5(%s)", (big, big)).fetchone()
        with conn.cursor() as cur:
            with cur.copy("COPY items (id, name) FROM STDIN") as copy:
                for i in range(1001, 1201):
                    copy.write_row((i, f"copied {i}"))
            out["copy_in"] = cur.rowcount
            lines = []
            with cur.copy("COPY (SELECT id, name FROM items WHERE id > 1190 ORDER BY id) TO STDOUT") as copy:
                for row in copy.rows():
                    lines.append(list(row))
            out["copy_out"] = lines
        try:
            with conn.transaction():
                conn.execute("DELETE FROM items WHERE id < 100")
                conn.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero as e:
            out["error"] = e.sqlstate
        out["count"] = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        conn.execute("LISTEN chan")
        conn.execute("NOTIFY chan, 'hello'")
        out["notifies"] = [n.payload for n in conn.notifies(timeout=2, stop_after=1)]
    print(json.dumps(out, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
