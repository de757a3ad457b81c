# FreeTDS, through pymssql (its wheel bundles FreeTDS), against the stand-in. Settings come as
# JSON on stdin; each check prints one JSON line.
import json
import os
import sys
import threading
import time

import pymssql
from pymssql import _mssql


def show(check, **fields):
    print(json.dumps(dict(check=check, **fields), default=str), flush=True)


def number_of(message):
    """pymssql's message handler gets (state, severity, server, procedure, line, text), no
    number: the number of BACKUP's INFO messages, told by their text."""
    text = message[5].decode() if isinstance(message[5], bytes) else message[5]
    if text.endswith(" percent processed."):
        return 3211
    if text.startswith("Processed ") and " pages for database " in text:
        return 4035
    if text.startswith("BACKUP DATABASE successfully processed "):
        return 3014
    return text


s = json.load(sys.stdin)
# Octopus's strings encrypt the login; FreeTDS does not check the server's certificate unless
# told to, as Octopus's added TrustServerCertificate=True does not.
args = dict(server=s["host"], port=s["port"], user=s["user"], password=s["password"],
            database=s["database"], encryption="require")

# pymssql raises for any message of severity 6 or more, and the INFO messages of BACKUP ... STATS
# have severity 10, as on a real server: raise from 11 (errors) only, and read the INFO
# messages through _mssql's message handler.
_mssql.min_error_severity = 11
conn = _mssql.connect(**args)
infos = []
conn.set_msghandler(lambda *m: infos.append(m))
show("login", tds_version=conn.tds_version, freetds=_mssql.get_dbversion() if hasattr(_mssql, "get_dbversion") else None)

dbapi = pymssql.connect(**args)
cur = dbapi.cursor()
cur.execute("SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS v, DB_NAME() AS db")
show("query", rows=[list(r) for r in cur.fetchall()])
# pymssql quotes parameters into the batch itself (no RPC).
cur.execute("SELECT name, %d AS n FROM sys.databases WHERE name = %s", (42, s["database"]))
show("parameters", rows=[list(r) for r in cur.fetchall()])
# an RPC procedure call
try:
    cur.callproc("sp_executesql", ("SELECT 7 AS seven",))
    show("callproc", rows=[list(r) for r in cur.fetchall()], error=None)
except pymssql.Error as e:
    show("callproc", rows=[], error=str(e))
dbapi.close()

bak = os.path.join(s["backup_dir"], "pymssql.bak").replace("'", "''")
infos.clear()
conn.execute_non_query(
    f"BACKUP DATABASE [{s['database']}] TO DISK = N'{bak}' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, STATS = 10")
show("backup", infos=[number_of(m) for m in infos])

try:
    conn.execute_query("SELECT * FROM dbo.NoSuchTable")
    show("error", number=None)
except _mssql.MSSQLDatabaseException as e:
    show("error", number=e.number, message=str(e.message))

# Cancel a running BACKUP from another thread; the connection stays usable.
big = os.path.join(s["backup_dir"], "pymssql-big.bak").replace("'", "''")
infos.clear()
started = threading.Event()
conn.set_msghandler(lambda *m: (infos.append(m), started.set()))


def cancel():
    started.wait(20)
    conn.cancel()


canceller = threading.Thread(target=cancel)
canceller.start()
error = None
try:
    conn.execute_non_query(
        f"BACKUP DATABASE [{s['big_database']}] TO DISK = N'{big}' WITH COPY_ONLY, FORMAT, INIT, STATS = 1")
except _mssql.MSSQLException as e:
    error = str(e)
canceller.join()
percents = [number_of(m) for m in infos]
after = conn.execute_scalar("SELECT 1 AS still_usable")
show("cancel", error=error, infos=percents, after=after)
conn.close()
