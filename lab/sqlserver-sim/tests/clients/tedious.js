// Microsoft's Node.js TDS driver, tedious, against the stand-in. Settings come as JSON on stdin;
// each check prints one JSON line. tedious is looked up in target/test-tools (scripts/test.sh
// installs it there) or wherever Node finds it.
'use strict';
const path = require('path');

function loadTedious() {
  const local = path.resolve(__dirname, '../../../../target/test-tools/node_modules/tedious');
  try {
    return require(local);
  } catch (_) {
    return require('tedious');
  }
}
const { Connection, Request, TYPES } = loadTedious();

function print(check, fields) {
  console.log(JSON.stringify(Object.assign({ check }, fields)));
}

function readStdin() {
  return new Promise((resolve) => {
    let text = '';
    process.stdin.on('data', (d) => (text += d));
    process.stdin.on('end', () => resolve(JSON.parse(text)));
  });
}

// Octopus's connection string carries no TrustServerCertificate and Octopus adds
// TrustServerCertificate=True itself; Microsoft.Data.SqlClient encrypts by default.
function connect(s, trust) {
  const conn = new Connection({
    server: s.host,
    authentication: { type: 'default', options: { userName: s.user, password: s.password } },
    options: {
      port: s.port,
      database: s.database,
      encrypt: true,
      trustServerCertificate: trust,
      connectTimeout: 15000,
      cancelTimeout: 5000,
    },
  });
  const loginErrors = [];
  conn.on('errorMessage', (m) => loginErrors.push({ number: m.number, message: m.message }));
  return new Promise((resolve, reject) => {
    conn.on('connect', (err) => (err ? reject(err) : resolve({ conn, loginErrors })));
    conn.connect();
  });
}

// Runs one request; resolves with its rows, INFO messages, ERROR messages and callback error.
function run(conn, sql, params, execSql) {
  return new Promise((resolve) => {
    const rows = [];
    const infos = [];
    const errors = [];
    const onInfo = (m) => infos.push({ number: m.number, class: m.class, message: m.message });
    const onError = (m) => errors.push({ number: m.number, class: m.class, message: m.message });
    conn.on('infoMessage', onInfo);
    conn.on('errorMessage', onError);
    const request = new Request(sql, (err) => {
      conn.removeListener('infoMessage', onInfo);
      conn.removeListener('errorMessage', onError);
      resolve({
        rows,
        infos,
        errors,
        error: err ? { code: err.code, number: err.number, message: err.message } : null,
      });
    });
    for (const [name, type, value] of params || []) request.addParameter(name, type, value);
    request.on('row', (columns) => rows.push(columns.map((c) => c.value)));
    if (execSql === 'procedure') conn.callProcedure(request);
    else if (execSql) conn.execSql(request);
    else conn.execSqlBatch(request);
    run.last = request;
  });
}

async function main() {
  const s = await readStdin();

  // A strict client refuses the fallback certificate, as with a real server.
  try {
    const { conn } = await connect(s, false);
    conn.close();
    print('untrusted_certificate', { refused: false });
  } catch (e) {
    print('untrusted_certificate', { refused: true, message: String(e.message) });
  }

  const { conn, loginErrors } = await connect(s, true);
  // tedious sends SET DATEFIRST 7 and its other SET options in its login batch.
  print('login', { errors: loginErrors });

  let r = await run(conn, "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS v, DB_NAME() AS db");
  print('query', { rows: r.rows, error: r.error });

  // sp_executesql with NVARCHAR, INT and BIT parameters, as execSql and node-mssql send it.
  r = await run(
    conn,
    'SELECT name, @n AS n, @b AS b FROM sys.databases WHERE name = @db',
    [
      ['db', TYPES.NVarChar, s.database],
      ['n', TYPES.Int, 42],
      ['b', TYPES.Bit, true],
    ],
    true,
  );
  print('parameters', { rows: r.rows, error: r.error });
  // node-mssql's pool check: SELECT 1 through execSql.
  r = await run(conn, 'SELECT 1;', [], true);
  print('pool_check', { rows: r.rows, error: r.error });

  // sp_executesql called as a procedure with a VARCHAR statement: SQL Server wants Unicode.
  r = await run(conn, 'sp_executesql', [['stmt', TYPES.VarChar, 'SELECT 1 AS one']], 'procedure');
  print('varchar_statement', { rows: r.rows, errors: r.errors, error: r.error });
  r = await run(conn, 'sp_executesql', [['stmt', TYPES.NVarChar, 'SELECT 1 AS one']], 'procedure');
  print('nvarchar_statement', { rows: r.rows, errors: r.errors, error: r.error });

  // SET LANGUAGE answers as the login does: a language ENVCHANGE, then Msg 5703.
  const languages = [];
  const onLanguage = (l) => languages.push(l);
  conn.on('languageChange', onLanguage);
  r = await run(conn, 'SET LANGUAGE us_english');
  conn.removeListener('languageChange', onLanguage);
  print('set_language', { languages, infos: r.infos, error: r.error });

  // Savepoints through transaction-manager requests: Msg 628 outside a transaction; inside one
  // a ROLLBACK to the savepoint keeps the transaction open.
  const tm = (method, ...args) =>
    new Promise((resolve) => {
      const errors = [];
      const onError = (m) => errors.push(m.number);
      conn.on('errorMessage', onError);
      conn[method]((err) => {
        conn.removeListener('errorMessage', onError);
        resolve({ errors, error: err ? String(err.message) : null });
      }, ...args);
    });
  const outside = await tm('saveTransaction', 'sp1');
  await tm('beginTransaction', 'outer');
  const inside = await tm('saveTransaction', 'sp1');
  const back = await tm('rollbackTransaction', 'sp1');
  const open = await run(conn, 'SELECT @@TRANCOUNT AS n');
  const commit = await tm('commitTransaction');
  const closed = await run(conn, 'SELECT @@TRANCOUNT AS n');
  print('savepoint', {
    outside,
    inside,
    back,
    open: open.rows,
    commit,
    closed: closed.rows,
  });

  const bak = path.join(s.backup_dir, 'tedious.bak');
  r = await run(
    conn,
    `BACKUP DATABASE [${s.database}] TO DISK = N'${bak.replace(/'/g, "''")}' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, STATS = 10`,
  );
  print('backup', { infos: r.infos.map((m) => m.number), errors: r.errors, error: r.error });

  r = await run(conn, 'SELECT * FROM dbo.NoSuchTable');
  print('error', { errors: r.errors, error: r.error });

  // Cancel a BACKUP that is running: the request ends cancelled, the connection stays usable.
  const big = path.join(s.backup_dir, 'tedious-big.bak');
  const pending = run(
    conn,
    `BACKUP DATABASE [${s.big_database}] TO DISK = N'${big.replace(/'/g, "''")}' WITH COPY_ONLY, FORMAT, INIT, STATS = 1`,
  );
  const request = run.last;
  await new Promise((res) => {
    const once = () => {
      conn.removeListener('infoMessage', once);
      res();
    };
    conn.on('infoMessage', once); // the first progress message: the BACKUP is running
  });
  conn.cancel();
  r = await pending;
  void request;
  const after = await run(conn, 'SELECT 1 AS still_usable');
  print('cancel', {
    error: r.error,
    infos: r.infos.map((m) => m.number),
    after: after.rows,
    after_error: after.error,
  });
  conn.close();
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
