//! Permissions as SQL Server checks them, for what the lab runs: logins and fixed server roles
//! (sysadmin, dbcreator), database users and fixed database roles (db_owner, db_backupoperator,
//! db_datareader, db_datawriter, public), database ownership, and the few GRANTs a DBA gives a
//! backup login (CREATE ANY DATABASE, VIEW SERVER STATE, SELECT on an object).
//!
//! The rules, from Microsoft Learn:
//! - BACKUP DATABASE: sysadmin, db_owner, db_backupoperator ("BACKUP (Transact-SQL)", Permissions).
//! - RESTORE of a new database, and RESTORE VERIFYONLY/HEADERONLY/FILELISTONLY: CREATE DATABASE
//!   permission "in SQL Server 2008 and later" ("RESTORE Statements", the Important note). RESTORE
//!   over an existing database: sysadmin, dbcreator, or its owner ("RESTORE (Transact-SQL)").
//! - DBCC CHECKDB: sysadmin or db_owner ("DBCC CHECKDB (Transact-SQL)", Permissions), Msg 7983.
//! - A table: SELECT through db_datareader, UPDATE through db_datawriter, or a GRANT; else Msg 229
//!   ("Permissions of fixed database roles"). A database without a user for the login: Msg 916,
//!   4060 at login. master, tempdb and msdb have guest enabled, as installed.
//! - sys.dm_exec_requests: VIEW SERVER STATE to see other sessions ("sys.dm_exec_requests").
//!
//! State lives in memory for the server's lifetime; SQL Server's own CREATE LOGIN passwords never
//! reach a file.

use std::collections::{BTreeSet, HashMap};

use super::errors::SqlError;
use super::{Engine, lock, system_database};
use crate::SqlLogin;
use crate::sql::ast::{ObjectName, SecurityStatement};

/// Fixed server roles SQL Server has.
const SERVER_ROLES: &[&str] = &[
    "sysadmin",
    "serveradmin",
    "dbcreator",
    "setupadmin",
    "bulkadmin",
    "securityadmin",
    "diskadmin",
    "processadmin",
    "public",
];

/// Fixed database roles SQL Server has.
const DATABASE_ROLES: &[&str] = &[
    "db_owner",
    "db_accessadmin",
    "db_securityadmin",
    "db_ddladmin",
    "db_backupoperator",
    "db_datareader",
    "db_datawriter",
    "db_denydatareader",
    "db_denydatawriter",
    "public",
];

/// Server-scope permissions the lab knows (GRANT ... TO login, in master).
const SERVER_PERMISSIONS: &[&str] = &[
    "CREATE ANY DATABASE",
    "ALTER ANY DATABASE",
    "VIEW SERVER STATE",
    "VIEW ANY DATABASE",
    "ALTER ANY CONNECTION",
];

#[derive(Debug, Clone, Default)]
struct DbUser {
    name: String,
    login: String,
    roles: BTreeSet<String>,
    /// (PERMISSION, object as `schema.table` lower-cased, or "" for the database).
    grants: BTreeSet<(String, String)>,
}

#[derive(Default)]
pub struct Security {
    /// Logins made with CREATE LOGIN (the configured ones live in `Engine::logins`).
    logins: Vec<SqlLogin>,
    /// login (lower case) -> fixed server roles.
    server_roles: HashMap<String, BTreeSet<String>>,
    /// login (lower case) -> server permissions granted.
    server_grants: HashMap<String, BTreeSet<String>>,
    /// database (lower case) -> its users.
    users: HashMap<String, Vec<DbUser>>,
    /// database (lower case) -> the login that owns it (dbo). Absent: sa owns it.
    owners: HashMap<String, String>,
}

/// Who a login is inside a database.
#[derive(Debug, Clone)]
enum Principal {
    /// sysadmin, or the database's owner.
    Dbo,
    User(DbUser),
    /// No user, but the database lets guest in (master, tempdb, msdb).
    Guest,
    /// No access: Msg 916.
    None,
}

/// Msg 916: a login without a user in a database that has no guest access.
pub fn cannot_access_database(login: &str, database: &str) -> SqlError {
    SqlError::new(
        916,
        14,
        1,
        format!(
            "The server principal \"{login}\" is not able to access the database \"{database}\" under the current security context."
        ),
    )
}

/// Msg 229 for SELECT, UPDATE, ... on a table.
pub fn object_denied(permission: &str, object: &str, database: &str, schema: &str) -> SqlError {
    SqlError::new(
        229,
        14,
        5,
        format!(
            "The {permission} permission was denied on the object '{object}', database '{database}', schema '{schema}'."
        ),
    )
}

fn no_permission() -> SqlError {
    SqlError::new(
        15247,
        16,
        1,
        "User does not have permission to perform this action.",
    )
}

impl Engine {
    /// A login by name: configured at start or made with CREATE LOGIN.
    pub(crate) fn find_login(&self, name: &str, password: &str) -> Option<SqlLogin> {
        self.logins
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name) && l.password == password)
            .cloned()
            .or_else(|| {
                lock(&self.security)
                    .logins
                    .iter()
                    .find(|l| l.name.eq_ignore_ascii_case(name) && l.password == password)
                    .cloned()
            })
    }

    fn login_exists(&self, name: &str) -> bool {
        self.logins
            .iter()
            .any(|l| l.name.eq_ignore_ascii_case(name))
            || lock(&self.security)
                .logins
                .iter()
                .any(|l| l.name.eq_ignore_ascii_case(name))
    }

    fn login_is_sysadmin(&self, name: &str) -> bool {
        self.logins
            .iter()
            .any(|l| l.name.eq_ignore_ascii_case(name) && l.sysadmin)
            || lock(&self.security)
                .server_roles
                .get(&name.to_lowercase())
                .is_some_and(|r| r.contains("sysadmin"))
    }

    /// Whether the login is in sysadmin (configured so, or added with ALTER SERVER ROLE).
    pub fn is_sysadmin(&self, login: &SqlLogin) -> bool {
        login.sysadmin || self.login_is_sysadmin(&login.name)
    }

    /// IS_SRVROLEMEMBER: a sysadmin is counted in every fixed server role, as the lab has always
    /// answered; `None` for a role SQL Server does not have.
    pub fn is_server_role_member(&self, login: &str, role: &str) -> Option<bool> {
        let role = role.to_lowercase();
        if !SERVER_ROLES.contains(&role.as_str()) {
            return None;
        }
        if !self.login_exists(login) {
            return None;
        }
        Some(
            role == "public"
                || self.login_is_sysadmin(login)
                || lock(&self.security)
                    .server_roles
                    .get(&login.to_lowercase())
                    .is_some_and(|r| r.contains(&role)),
        )
    }

    /// A server permission: held by sysadmin, through dbcreator (CREATE/ALTER ANY DATABASE) or
    /// granted. VIEW ANY DATABASE is public's by default.
    pub fn has_server_permission(&self, login: &str, permission: &str) -> bool {
        let permission = permission.to_uppercase();
        if self.login_is_sysadmin(login) || permission == "VIEW ANY DATABASE" {
            return true;
        }
        let security = lock(&self.security);
        let key = login.to_lowercase();
        let dbcreator = security
            .server_roles
            .get(&key)
            .is_some_and(|r| r.contains("dbcreator"));
        if dbcreator
            && matches!(
                permission.as_str(),
                "CREATE ANY DATABASE" | "ALTER ANY DATABASE"
            )
        {
            return true;
        }
        // processadmin holds ALTER ANY CONNECTION (Microsoft Learn, "Server-level roles").
        if permission == "ALTER ANY CONNECTION"
            && security
                .server_roles
                .get(&key)
                .is_some_and(|r| r.contains("processadmin"))
        {
            return true;
        }
        security
            .server_grants
            .get(&key)
            .is_some_and(|g| g.contains(&permission))
    }

    fn principal(&self, login: &str, database: &str) -> Principal {
        if self.login_is_sysadmin(login) {
            return Principal::Dbo;
        }
        let db = database.to_lowercase();
        let security = lock(&self.security);
        if security
            .owners
            .get(&db)
            .is_some_and(|o| o.eq_ignore_ascii_case(login))
        {
            return Principal::Dbo;
        }
        if let Some(user) = security
            .users
            .get(&db)
            .and_then(|users| users.iter().find(|u| u.login.eq_ignore_ascii_case(login)))
        {
            return Principal::User(user.clone());
        }
        match system_database(database) {
            Some((name, _)) if name != "model" => Principal::Guest,
            _ => Principal::None,
        }
    }

    /// Whether the login may enter the database (USE, a three-part name, the login's database).
    pub fn may_access_database(&self, login: &str, database: &str) -> bool {
        !matches!(self.principal(login, database), Principal::None)
    }

    /// Msg 916 unless the login may enter the database.
    pub fn check_database_access(&self, login: &str, database: &str) -> Result<(), SqlError> {
        if self.may_access_database(login, database) {
            Ok(())
        } else {
            Err(cannot_access_database(login, database))
        }
    }

    /// IS_ROLEMEMBER in a database; `None` for a role that does not exist.
    pub fn is_database_role_member(&self, login: &str, database: &str, role: &str) -> Option<bool> {
        let role = role.to_lowercase();
        if !DATABASE_ROLES.contains(&role.as_str()) {
            return None;
        }
        Some(match self.principal(login, database) {
            Principal::Dbo => !role.starts_with("db_deny"),
            Principal::User(u) => role == "public" || u.roles.contains(&role),
            Principal::Guest => role == "public",
            Principal::None => false,
        })
    }

    /// A database permission: through dbo, a fixed role, or a GRANT. CREATE DATABASE in master is
    /// the server's CREATE ANY DATABASE.
    pub fn has_database_permission(&self, login: &str, database: &str, permission: &str) -> bool {
        let permission = permission.to_uppercase();
        if permission == "CREATE DATABASE"
            && self.has_server_permission(login, "CREATE ANY DATABASE")
        {
            return true;
        }
        match self.principal(login, database) {
            Principal::Dbo => true,
            Principal::None => false,
            Principal::Guest => permission == "CONNECT",
            Principal::User(u) => {
                let role = |r: &str| u.roles.contains(r);
                role("db_owner")
                    || permission == "CONNECT"
                    || u.grants.contains(&(permission.clone(), String::new()))
                    || match permission.as_str() {
                        "BACKUP DATABASE" | "BACKUP LOG" => role("db_backupoperator"),
                        "SELECT" => role("db_datareader") && !role("db_denydatareader"),
                        "UPDATE" | "INSERT" | "DELETE" => {
                            role("db_datawriter") && !role("db_denydatawriter")
                        }
                        _ => false,
                    }
            }
        }
    }

    /// A permission on `schema.table` in a database: the database-wide one or a GRANT ON it.
    pub fn has_object_permission(
        &self,
        login: &str,
        database: &str,
        schema: &str,
        table: &str,
        permission: &str,
    ) -> bool {
        if self.has_database_permission(login, database, permission) {
            return true;
        }
        let object = format!("{schema}.{table}").to_lowercase();
        matches!(self.principal(login, database), Principal::User(u)
            if u.grants.contains(&(permission.to_uppercase(), object)))
    }

    /// Msg 229 unless the login holds `permission` on the table (916 when it cannot even enter).
    pub fn check_table(
        &self,
        login: &str,
        database: &str,
        schema: &str,
        table: &str,
        permission: &str,
    ) -> Result<(), SqlError> {
        self.check_database_access(login, database)?;
        if self.has_object_permission(login, database, schema, table, permission) {
            Ok(())
        } else {
            Err(object_denied(permission, table, database, schema))
        }
    }

    /// The login that owns a database, as RESTORE makes its restorer the owner of a new one.
    pub fn set_database_owner(&self, database: &str, login: Option<&str>) {
        let mut security = lock(&self.security);
        match login {
            Some(l) => security
                .owners
                .insert(database.to_lowercase(), l.to_string()),
            None => security.owners.remove(&database.to_lowercase()),
        };
    }

    /// ALTER DATABASE ... MODIFY NAME keeps the owner and the users.
    pub fn rename_database_principals(&self, from: &str, to: &str) {
        let mut security = lock(&self.security);
        if let Some(owner) = security.owners.remove(&from.to_lowercase()) {
            security.owners.insert(to.to_lowercase(), owner);
        }
        if let Some(users) = security.users.remove(&from.to_lowercase()) {
            security.users.insert(to.to_lowercase(), users);
        }
    }

    /// DROP DATABASE takes its users and owner with it.
    pub fn forget_database_principals(&self, database: &str) {
        let mut security = lock(&self.security);
        security.owners.remove(&database.to_lowercase());
        security.users.remove(&database.to_lowercase());
    }

    /// `CREATE USER [login] FOR LOGIN [login]` in a database, for the lab's own set-up.
    pub fn create_user(&self, database: &str, user: &str, login: &str) {
        let mut security = lock(&self.security);
        let users = security.users.entry(database.to_lowercase()).or_default();
        if !users.iter().any(|u| u.name.eq_ignore_ascii_case(user)) {
            users.push(DbUser {
                name: user.to_string(),
                login: login.to_string(),
                ..DbUser::default()
            });
        }
    }

    /// Runs CREATE LOGIN, CREATE USER, ALTER [SERVER] ROLE ... ADD MEMBER and GRANT for `login`
    /// in `database`. Only sysadmin may (securityadmin and ALTER ANY LOGIN are not modelled).
    pub fn run_security(
        &self,
        login: &SqlLogin,
        database: &str,
        statement: &SecurityStatement,
    ) -> Result<(), SqlError> {
        if !self.is_sysadmin(login) {
            return Err(no_permission());
        }
        match statement {
            SecurityStatement::CreateLogin { name, password } => {
                if self.login_exists(name) {
                    return Err(SqlError::new(
                        15025,
                        16,
                        2,
                        format!("The server principal '{name}' already exists."),
                    ));
                }
                lock(&self.security)
                    .logins
                    .push(SqlLogin::new(name, password, false));
                Ok(())
            }
            SecurityStatement::CreateUser {
                name,
                login: for_login,
            } => {
                let for_login = for_login.as_deref().unwrap_or(name);
                if !self.login_exists(for_login) {
                    return Err(SqlError::new(
                        15007,
                        16,
                        1,
                        format!(
                            "'{for_login}' is not a valid login or you do not have permission."
                        ),
                    ));
                }
                let mut security = lock(&self.security);
                let users = security.users.entry(database.to_lowercase()).or_default();
                if users.iter().any(|u| u.name.eq_ignore_ascii_case(name))
                    || DATABASE_ROLES.contains(&name.to_lowercase().as_str())
                {
                    return Err(SqlError::new(
                        15023,
                        16,
                        1,
                        format!(
                            "User, group, or role '{name}' already exists in the current database."
                        ),
                    ));
                }
                if users
                    .iter()
                    .any(|u| u.login.eq_ignore_ascii_case(for_login))
                {
                    return Err(SqlError::new(
                        15063,
                        16,
                        1,
                        "The login already has an account under a different user name.",
                    ));
                }
                users.push(DbUser {
                    name: name.clone(),
                    login: for_login.to_string(),
                    ..DbUser::default()
                });
                Ok(())
            }
            SecurityStatement::AlterRole {
                role,
                member,
                server: true,
            } => {
                let role_lc = role.to_lowercase();
                if !SERVER_ROLES.contains(&role_lc.as_str()) || role_lc == "public" {
                    return Err(SqlError::new(
                        15151,
                        16,
                        1,
                        format!(
                            "Cannot alter the server role '{role}', because it does not exist or you do not have permission."
                        ),
                    ));
                }
                if !self.login_exists(member) {
                    return Err(SqlError::new(
                        15151,
                        16,
                        1,
                        format!(
                            "Cannot add the principal '{member}', because it does not exist or you do not have permission."
                        ),
                    ));
                }
                lock(&self.security)
                    .server_roles
                    .entry(member.to_lowercase())
                    .or_default()
                    .insert(role_lc);
                Ok(())
            }
            SecurityStatement::AlterRole {
                role,
                member,
                server: false,
            } => {
                let role_lc = role.to_lowercase();
                if !DATABASE_ROLES.contains(&role_lc.as_str()) || role_lc == "public" {
                    return Err(SqlError::new(
                        15151,
                        16,
                        1,
                        format!(
                            "Cannot alter the role '{role}', because it does not exist or you do not have permission."
                        ),
                    ));
                }
                let mut security = lock(&self.security);
                let user = security
                    .users
                    .get_mut(&database.to_lowercase())
                    .and_then(|users| {
                        users
                            .iter_mut()
                            .find(|u| u.name.eq_ignore_ascii_case(member))
                    });
                match user {
                    Some(u) => {
                        u.roles.insert(role_lc);
                        Ok(())
                    }
                    None => Err(SqlError::new(
                        15151,
                        16,
                        1,
                        format!(
                            "Cannot add the principal '{member}', because it does not exist or you do not have permission."
                        ),
                    )),
                }
            }
            SecurityStatement::Grant {
                permissions,
                on,
                to,
            } => self.grant(database, permissions, on.as_ref(), to),
        }
    }

    fn grant(
        &self,
        database: &str,
        permissions: &[String],
        on: Option<&ObjectName>,
        to: &str,
    ) -> Result<(), SqlError> {
        let server_scope = on.is_none()
            && permissions
                .iter()
                .all(|p| SERVER_PERMISSIONS.contains(&p.as_str()));
        if server_scope {
            // Msg 4621: server permissions are granted from master (Microsoft Learn, GRANT Server
            // Permissions).
            if !database.eq_ignore_ascii_case("master") {
                return Err(SqlError::new(
                    4621,
                    16,
                    10,
                    "Permissions at the server scope can only be granted when the current database is master",
                ));
            }
            if !self.login_exists(to) {
                return Err(SqlError::new(
                    15151,
                    16,
                    1,
                    format!(
                        "Cannot find the login '{to}', because it does not exist or you do not have permission."
                    ),
                ));
            }
            lock(&self.security)
                .server_grants
                .entry(to.to_lowercase())
                .or_default()
                .extend(permissions.iter().cloned());
            return Ok(());
        }
        let object = match on {
            None => String::new(),
            Some(name) => match name.parts.as_slice() {
                [t] => format!("dbo.{t}").to_lowercase(),
                [s, t] => format!("{s}.{t}").to_lowercase(),
                _ => {
                    return Err(SqlError::lab(format!(
                        "GRANT ON {name}: name the object as schema.object in the current database"
                    )));
                }
            },
        };
        let mut security = lock(&self.security);
        let user = security
            .users
            .get_mut(&database.to_lowercase())
            .and_then(|users| users.iter_mut().find(|u| u.name.eq_ignore_ascii_case(to)));
        match user {
            Some(u) => {
                for p in permissions {
                    u.grants.insert((p.clone(), object.clone()));
                }
                Ok(())
            }
            None => Err(SqlError::new(
                15151,
                16,
                1,
                format!(
                    "Cannot find the user '{to}', because it does not exist or you do not have permission."
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Edition, ServerOptions, SqlServerConfig, TlsSupport};

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sim-security-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn engine(dir: &std::path::Path) -> Engine {
        Engine::new(&SqlServerConfig {
            data_dir: dir.to_path_buf(),
            logins: vec![
                SqlLogin::new("sa", "pw", true),
                SqlLogin::new("octobackup", "pw", false),
            ],
            edition: Edition::Developer,
            product_version: "16.0.4135.4".into(),
            tls: TlsSupport::NotSupported,
            events: None,
            options: ServerOptions::default(),
        })
        .unwrap()
    }

    #[test]
    fn a_user_with_public_only_reads_nothing_and_backs_up_nothing() {
        let dir = scratch();
        let e = engine(&dir);
        assert!(!e.may_access_database("octobackup", "Octopus"));
        e.create_user("Octopus", "octobackup", "octobackup");
        assert!(e.may_access_database("octobackup", "Octopus"));
        assert!(!e.has_database_permission("octobackup", "Octopus", "BACKUP DATABASE"));
        assert!(
            e.check_table("octobackup", "Octopus", "dbo", "Configuration", "SELECT")
                .is_err()
        );
        assert!(!e.has_server_permission("octobackup", "CREATE ANY DATABASE"));
        // msdb lets guest in, but its tables need a grant.
        assert!(e.may_access_database("octobackup", "msdb"));
        let denied = e.check_table("octobackup", "msdb", "dbo", "backupset", "SELECT");
        assert_eq!(denied.unwrap_err().number, 229);
    }

    #[test]
    fn grants_and_roles_give_exactly_their_permissions() {
        let dir = scratch();
        let e = engine(&dir);
        let sa = SqlLogin::new("sa", "pw", true);
        let run = |db: &str, s: SecurityStatement| e.run_security(&sa, db, &s);
        run(
            "Octopus",
            SecurityStatement::CreateUser {
                name: "octobackup".into(),
                login: None,
            },
        )
        .unwrap();
        run(
            "Octopus",
            SecurityStatement::AlterRole {
                role: "db_backupoperator".into(),
                member: "octobackup".into(),
                server: false,
            },
        )
        .unwrap();
        assert!(e.has_database_permission("octobackup", "Octopus", "BACKUP DATABASE"));
        assert!(!e.has_database_permission("octobackup", "Octopus", "SELECT"));
        let grant = |db: &str| {
            run(
                db,
                SecurityStatement::Grant {
                    permissions: vec!["CREATE ANY DATABASE".into()],
                    on: None,
                    to: "octobackup".into(),
                },
            )
        };
        assert_eq!(grant("Octopus").unwrap_err().number, 4621);
        grant("master").unwrap();
        assert!(e.has_database_permission("octobackup", "master", "CREATE DATABASE"));
        // A non-sysadmin cannot grant.
        let me = SqlLogin::new("octobackup", "pw", false);
        let refused = e.run_security(
            &me,
            "master",
            &SecurityStatement::CreateLogin {
                name: "x".into(),
                password: "y".into(),
            },
        );
        assert_eq!(refused.unwrap_err().number, 15247);
        // The restorer owns its copy: db_owner there.
        e.set_database_owner("Copy", Some("octobackup"));
        assert_eq!(
            e.is_database_role_member("octobackup", "Copy", "db_owner"),
            Some(true)
        );
    }
}
