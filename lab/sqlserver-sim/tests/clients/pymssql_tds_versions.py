# FreeTDS (through pymssql) logging in with each TDS version a down-level client may ask for,
# against the stand-in. Settings come as JSON on stdin; one JSON line per version.
import json
import sys

import pymssql

s = json.load(sys.stdin)
long_text = "x" * 5000
for version in ["7.0", "7.1", "7.2", "7.3", "7.4"]:
    line = dict(check="tds_version", version=version)
    try:
        conn = pymssql.connect(server=s["host"], port=s["port"], user=s["user"],
                               password=s["password"], database=s["database"],
                               tds_version=version, login_timeout=10)
    except pymssql.Error as e:
        line.update(connected=False, error=str(e))
        print(json.dumps(line), flush=True)
        continue
    try:
        cur = conn.cursor()
        cur.execute("SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS v, "
                    "SYSDATETIME() AS now, N'" + long_text + "' AS long_text, "
                    "CAST(7 AS bigint) AS big")
        row = cur.fetchone()
        cur.execute("SELECT name FROM sys.databases WHERE database_id <= 4 ORDER BY database_id")
        names = [r[0] for r in cur.fetchall()]
        line.update(connected=True, product_version=row[0],
                    now_type=type(row[1]).__name__, now=str(row[1]),
                    long_length=len(row[2]), big=row[3], rowcount=cur.rowcount, names=names)
    except pymssql.Error as e:
        line.update(connected=True, error=str(e))
    finally:
        conn.close()
    print(json.dumps(line), flush=True)
