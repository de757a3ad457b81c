# Microsoft's mssql-python (its wheel bundles ODBC Driver 18 for SQL Server) against the
# stand-in. Settings come as JSON on stdin; each check prints one JSON line.
import json
import os
import sys

import mssql_python


def show(check, **fields):
    print(json.dumps(dict(check=check, **fields), default=str), flush=True)


s = json.load(sys.stdin)


def connect(trust):
    # Octopus's connection string with what Octopus adds when it does not say
    # (TrustServerCertificate=True); ODBC Driver 18 encrypts by default.
    conn = mssql_python.connect(
        f"Server={s['host']},{s['port']};Database={s['database']};UID={s['user']};"
        f"PWD={s['password']};Encrypt=yes;TrustServerCertificate={'yes' if trust else 'no'}")
    conn.autocommit = True
    return conn


try:
    connect(False).close()
    show("untrusted_certificate", refused=False)
except mssql_python.Error as e:
    show("untrusted_certificate", refused=True, message=str(e))

conn = connect(True)
cur = conn.cursor()
cur.execute("SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS v, DB_NAME() AS db")
show("query", rows=[list(r) for r in cur.fetchall()])
try:
    cur.execute("SELECT name, ? AS n, ? AS b FROM sys.databases WHERE name = ?", (42, True, s["database"]))
    show("parameters", rows=[list(r) for r in cur.fetchall()])
except mssql_python.Error as e:
    show("parameters", rows=[], error=str(e))

bak = os.path.join(s["backup_dir"], "mssql-python.bak").replace("'", "''")
cur.execute(
    f"BACKUP DATABASE [{s['database']}] TO DISK = N'{bak}' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, STATS = 10")
messages = list(cur.messages)
while cur.nextset():
    messages += list(cur.messages)
infos = []
for state, _ in messages:
    # ("[01000] (3211)", "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]11 percent processed.")
    number = state.split("(", 1)[1].split(")", 1)[0] if "(" in state else ""
    infos.append(int(number) if number.isdigit() else state)
show("backup", infos=infos, messages=[m[1] for m in messages])

try:
    cur.execute("SELECT * FROM dbo.NoSuchTable")
    show("error", message=None)
except mssql_python.Error as e:
    # the driver reports Msg 208 by its ODBC SQLSTATE (42S02, "Base table or view not found")
    show("error", message=str(e))

# A query timeout makes the driver send ATTENTION (ODBC's timeout runs until the first reply,
# so this BACKUP has no STATS); the connection stays usable.
conn.timeout = 1
cur = conn.cursor()
big = os.path.join(s["backup_dir"], "mssql-python-big.bak").replace("'", "''")
error = None
try:
    cur.execute(f"BACKUP DATABASE [{s['big_database']}] TO DISK = N'{big}' WITH COPY_ONLY, FORMAT, INIT")
    while cur.nextset():
        pass
except mssql_python.Error as e:
    error = str(e)
conn.timeout = 0
cur = conn.cursor()
cur.execute("SELECT 1 AS still_usable")
show("cancel", error=error, after=cur.fetchone()[0])
conn.close()
