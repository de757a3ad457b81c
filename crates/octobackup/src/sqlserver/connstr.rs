//! ADO.NET connection strings, as Octopus stores them
//! (`Server=sql01;Database=OctopusDeploy;User ID=octo;Password=...` or integrated security).
//!
//! Parsed by hand rather than through tiberius because octobackup needs more than a client config:
//! the database name for BACKUP, whether the password is present, and errors that never echo it.
//! Rules followed (SqlConnectionStringBuilder): `key=value` pairs separated by `;`, keys
//! case-insensitive with their synonyms, values optionally quoted with `'` or `"` (a doubled quote
//! inside is one quote), `;` allowed inside quotes, whitespace around keys and unquoted values ignored.

use crate::secret::Secret;

#[derive(Clone, Debug, PartialEq)]
pub enum Authentication {
    /// SQL Server login.
    SqlLogin { user: String },
    /// Windows integrated security (the service account's identity).
    Integrated,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encrypt {
    /// Encrypt=False/Optional: encrypt the login only, as .NET does.
    Optional,
    /// Encrypt=True/Mandatory (the default since Microsoft.Data.SqlClient 4).
    Mandatory,
    /// Encrypt=Strict: TDS 8.0.
    Strict,
}

#[derive(Clone, Debug)]
pub struct ConnectionString {
    pub host: String,
    /// Explicit port (`host,port`).
    pub port: Option<u16>,
    /// Named instance (`host\NAME`), resolved through SQL Browser when no port is given.
    pub instance: Option<String>,
    pub database: String,
    pub auth: Authentication,
    pub password: Option<Secret>,
    pub encrypt: Encrypt,
    /// `None` when the string does not say (Octopus then trusts: see [`Self::validates_certificate`]).
    pub trust_server_certificate: Option<bool>,
    pub application_name: Option<String>,
    pub connect_timeout_secs: Option<u64>,
    /// `HostNameInCertificate` (Microsoft.Data.SqlClient 5.0+): the name a validated certificate
    /// must carry when it is not the Server's (a DNS alias, a listener).
    pub host_name_in_certificate: Option<String>,
    /// `MultiSubnetFailover=True` (an Availability Group listener): connect to every address
    /// the name resolves to at once and keep the first that answers.
    pub multi_subnet_failover: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConnectionStringError {
    #[error("the connection string has no server (add Server=host or Data Source=host)")]
    NoServer,
    #[error(
        "the connection string has no database (add Database=OctopusDeploy or Initial Catalog=...)"
    )]
    NoDatabase,
    #[error("the connection string has neither User ID nor Integrated Security/Trusted_Connection")]
    NoAuthentication,
    #[error("the connection string is malformed near position {0}: {1}")]
    Syntax(usize, &'static str),
    #[error("the connection string's {key} has an invalid value '{value}'")]
    BadValue { key: String, value: String },
    #[error("the connection string's Server has an invalid port '{0}'")]
    BadPort(String),
    #[error(
        "the connection string's Authentication={0} (Microsoft Entra ID) is not supported by octobackup: use a SQL Server login (User ID and Password, optionally Authentication=SqlPassword) or Windows integrated security (Integrated Security=True, octobackup running as an account that has a login)"
    )]
    UnsupportedAuthentication(String),
}

/// Splits into (lower-cased canonical key, value) pairs.
fn pairs(s: &str) -> Result<Vec<(String, String, bool)>, ConnectionStringError> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ';') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let key_start = i;
        while i < chars.len() && chars[i] != '=' {
            if chars[i] == ';' {
                return Err(ConnectionStringError::Syntax(i, "a key without '='"));
            }
            i += 1;
        }
        if i >= chars.len() {
            return Err(ConnectionStringError::Syntax(
                key_start,
                "a key without '='",
            ));
        }
        let key: String = chars[key_start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            return Err(ConnectionStringError::Syntax(key_start, "an empty key"));
        }
        i += 1; // '='
        while i < chars.len() && chars[i].is_whitespace() && chars[i] != ';' {
            i += 1;
        }
        let mut value = String::new();
        let mut was_password_like = false;
        if i < chars.len() && (chars[i] == '\'' || chars[i] == '"') {
            let q = chars[i];
            i += 1;
            loop {
                if i >= chars.len() {
                    return Err(ConnectionStringError::Syntax(i, "an unclosed quote"));
                }
                if chars[i] == q {
                    if i + 1 < chars.len() && chars[i + 1] == q {
                        value.push(q);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                value.push(chars[i]);
                i += 1;
            }
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && chars[i] != ';' {
                return Err(ConnectionStringError::Syntax(
                    i,
                    "text after a quoted value",
                ));
            }
            was_password_like = true;
        } else {
            while i < chars.len() && chars[i] != ';' {
                value.push(chars[i]);
                i += 1;
            }
            value = value.trim().to_string();
        }
        out.push((key, value, was_password_like));
    }
    Ok(out)
}

fn boolean(key: &str, v: &str) -> Result<bool, ConnectionStringError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(ConnectionStringError::BadValue {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

impl ConnectionString {
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let mut server = None;
        let mut database = None;
        let mut user = None;
        let mut password = None;
        let mut integrated = false;
        let mut encrypt = Encrypt::Mandatory;
        let mut trust = None;
        let mut app = None;
        let mut timeout = None;
        let mut host_name_in_certificate = None;
        let mut multi_subnet_failover = false;
        let mut entra = None;
        for (key, value, _) in pairs(s)? {
            match key.as_str() {
                "server" | "data source" | "address" | "addr" | "network address" => {
                    server = Some(value)
                }
                "database" | "initial catalog" => database = Some(value),
                "user id" | "uid" | "user" => user = Some(value),
                "password" | "pwd" => password = Some(Secret::new(value)),
                "integrated security" | "trusted_connection" => {
                    integrated = value.eq_ignore_ascii_case("sspi") || boolean(&key, &value)?;
                }
                "encrypt" => {
                    encrypt = match value.to_ascii_lowercase().as_str() {
                        "true" | "yes" | "mandatory" => Encrypt::Mandatory,
                        "false" | "no" | "optional" => Encrypt::Optional,
                        "strict" => Encrypt::Strict,
                        _ => return Err(ConnectionStringError::BadValue { key, value }),
                    }
                }
                "trustservercertificate" | "trust server certificate" => {
                    trust = Some(boolean(&key, &value)?)
                }
                "application name" | "app" => app = Some(value),
                "hostnameincertificate" | "host name in certificate" => {
                    host_name_in_certificate = Some(value).filter(|v| !v.is_empty())
                }
                "multisubnetfailover" | "multi subnet failover" => {
                    multi_subnet_failover = boolean(&key, &value)?
                }
                // SqlClient's Authentication values (SqlAuthenticationMethod): SqlPassword is a
                // SQL login; the Active Directory (Microsoft Entra ID) methods need tokens
                // tiberius cannot get, so they are refused here rather than failing as a login.
                "authentication" => {
                    let normal: String = value
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect::<String>()
                        .to_ascii_lowercase();
                    match normal.as_str() {
                        "sqlpassword" | "" | "notspecified" => entra = None,
                        n if n.starts_with("activedirectory") => entra = Some(value.clone()),
                        _ => return Err(ConnectionStringError::BadValue { key, value }),
                    }
                }
                "connect timeout" | "connection timeout" | "timeout" => {
                    timeout = Some(value.parse().map_err(|_| ConnectionStringError::BadValue {
                        key: key.clone(),
                        value: value.clone(),
                    })?)
                }
                // Accepted and irrelevant to a backup client.
                _ => {}
            }
        }
        let server = server
            .filter(|s| !s.is_empty())
            .ok_or(ConnectionStringError::NoServer)?;
        let database = database
            .filter(|d| !d.is_empty())
            .ok_or(ConnectionStringError::NoDatabase)?;
        let (host, port, instance) = parse_server(&server)?;
        if let Some(method) = entra {
            return Err(ConnectionStringError::UnsupportedAuthentication(method));
        }
        let auth = if integrated {
            Authentication::Integrated
        } else if let Some(user) = user.filter(|u| !u.is_empty()) {
            Authentication::SqlLogin { user }
        } else {
            return Err(ConnectionStringError::NoAuthentication);
        };
        Ok(ConnectionString {
            host,
            port,
            instance,
            database,
            auth,
            password,
            encrypt,
            trust_server_certificate: trust,
            application_name: app,
            connect_timeout_secs: timeout,
            host_name_in_certificate,
            multi_subnet_failover,
        })
    }

    /// Whether the server's certificate must be valid (chain and name), as Octopus connects:
    /// - `Encrypt=False/Optional` encrypts the login only and Microsoft.Data.SqlClient does not
    ///   validate then (sql-docs, connect/ado-net/encryption-and-certificate-validation.md);
    /// - with `Encrypt=True/Mandatory`, a string that does not set TrustServerCertificate gets
    ///   `TrustServerCertificate=True` from Octopus itself (OctopusDeploy/Issues#6899), so a real
    ///   server's self-signed fallback certificate works; only an explicit `False` validates;
    /// - `Encrypt=Strict` (TDS 8.0) always validates: SqlClient ignores TrustServerCertificate there.
    pub fn validates_certificate(&self) -> bool {
        match self.encrypt {
            Encrypt::Optional => false,
            Encrypt::Mandatory => self.trust_server_certificate == Some(false),
            Encrypt::Strict => true,
        }
    }

    /// Whether the server is this machine (`.`, `(local)`, `localhost`, a loopback address, or
    /// this host's name): where SQL Express's disabled TCP/IP is the likely cause of a refusal.
    pub fn is_local(&self) -> bool {
        let host = self.host.to_ascii_lowercase();
        if host == "localhost" || host == "127.0.0.1" || host == "::1" || host.starts_with("127.") {
            return true;
        }
        let me = std::env::var("COMPUTERNAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default()
            .to_ascii_lowercase();
        !me.is_empty() && (host == me || host.split('.').next() == Some(me.as_str()))
    }

    /// `host[\instance][,port]` for messages (never the password).
    pub fn server_display(&self) -> String {
        let mut s = self.host.clone();
        if let Some(i) = &self.instance {
            s.push('\\');
            s.push_str(i);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(",{p}"));
        }
        s
    }
}

/// `tcp:host\instance,port`, `(local)`, `.`: the forms SqlClient accepts.
fn parse_server(s: &str) -> Result<(String, Option<u16>, Option<String>), ConnectionStringError> {
    let s = s.trim();
    let s = s
        .strip_prefix("tcp:")
        .or_else(|| s.strip_prefix("TCP:"))
        .unwrap_or(s);
    let (hostpart, port) = match s.rsplit_once(',') {
        Some((h, p)) => (
            h.trim(),
            Some(
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| ConnectionStringError::BadPort(p.trim().to_string()))?,
            ),
        ),
        None => (s, None),
    };
    let (host, instance) = match hostpart.split_once('\\') {
        Some((h, i)) => (h.to_string(), Some(i.to_string())),
        None => (hostpart.to_string(), None),
    };
    let host = match host.to_ascii_lowercase().as_str() {
        "(local)" | "." | "(localdb)" => "localhost".to_string(),
        _ => host,
    };
    if host.is_empty() {
        return Err(ConnectionStringError::NoServer);
    }
    Ok((host, port, instance))
}

/// What in a connection string is accepted but probably not meant: a setting given twice (the
/// last one wins, as in SqlClient) and keywords SqlClient does not know (a typo, silently ignored
/// otherwise). Names only, never values: the string may hold a password.
pub fn questionable_keys(s: &str) -> Vec<String> {
    // SqlClient's keywords and synonyms (Microsoft.Data.SqlClient, SqlConnection.ConnectionString).
    const SYNONYMS: &[&[&str]] = &[
        &[
            "server",
            "data source",
            "address",
            "addr",
            "network address",
        ],
        &["database", "initial catalog"],
        &["user id", "uid", "user"],
        &["password", "pwd"],
        &["integrated security", "trusted_connection"],
        &["connect timeout", "connection timeout", "timeout"],
        &["application name", "app"],
        &["trustservercertificate", "trust server certificate"],
        &["hostnameincertificate", "host name in certificate"],
        &["servercertificate", "server certificate"],
        &["applicationintent", "application intent"],
        &["multisubnetfailover", "multi subnet failover"],
        &["multipleactiveresultsets", "multiple active result sets"],
        &["connectretrycount", "connect retry count"],
        &["connectretryinterval", "connect retry interval"],
        &["persist security info", "persistsecurityinfo"],
        &["ipaddresspreference", "ip address preference"],
        &["poolblockingperiod", "pool blocking period"],
        &["load balance timeout", "connection lifetime"],
        &["workstation id", "wsid"],
        &["current language", "language"],
        &["network library", "network", "net"],
        &[
            "attachdbfilename",
            "extended properties",
            "initial file name",
        ],
        &[
            "transparentnetworkipresolution",
            "transparent network ip resolution",
        ],
        &["encrypt"],
        &["authentication"],
        &["column encryption setting"],
        &["command timeout"],
        &["context connection"],
        &["enclave attestation url"],
        &["attestation protocol"],
        &["enlist"],
        &["failover partner"],
        &["failover partner spn"],
        &["server spn"],
        &["max pool size"],
        &["min pool size"],
        &["packet size"],
        &["pooling"],
        &["replication"],
        &["transaction binding"],
        &["type system version"],
        &["user instance"],
    ];
    let Ok(pairs) = pairs(s) else {
        return Vec::new();
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (key, _, _) in &pairs {
        match SYNONYMS.iter().find(|g| g.contains(&key.as_str())) {
            Some(group) if seen.contains(&group[0]) => out.push(format!(
                "'{key}' is given more than once (the last one counts)"
            )),
            Some(group) => seen.push(group[0]),
            None => out.push(format!(
                "'{key}' is not a SQL Server connection string keyword (ignored)"
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_octopus_documents() {
        let c = ConnectionString::parse(
            "Server=sql01;Database=OctopusDeploy;User ID=octo;Password=p@ss",
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.database.as_str()),
            ("sql01", None, "OctopusDeploy")
        );
        assert_eq!(
            c.auth,
            Authentication::SqlLogin {
                user: "octo".into()
            }
        );
        assert_eq!(c.password.unwrap().expose(), "p@ss");
        assert_eq!(c.encrypt, Encrypt::Mandatory);
    }

    #[test]
    fn synonyms_and_integrated_security() {
        let c = ConnectionString::parse(
            "Data Source=(local)\\SQLEXPRESS;Initial Catalog=Octopus;Integrated Security=SSPI",
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.instance.as_deref()),
            ("localhost", Some("SQLEXPRESS"))
        );
        assert_eq!(c.auth, Authentication::Integrated);
        let c =
            ConnectionString::parse("server=.;database=Octopus;Trusted_Connection=True;").unwrap();
        assert_eq!(c.auth, Authentication::Integrated);
        assert!(c.password.is_none());
    }

    #[test]
    fn ports_instances_and_tcp_prefix() {
        let c = ConnectionString::parse("Server=tcp:sql.example.com,1533;Database=D;UID=u;PWD=x")
            .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("sql.example.com", Some(1533)));
        let c = ConnectionString::parse("Server=db\\OCTO,14330;Database=D;User=u").unwrap();
        assert_eq!((c.instance.as_deref(), c.port), (Some("OCTO"), Some(14330)));
        assert_eq!(c.server_display(), "db\\OCTO,14330");
        assert_eq!(
            ConnectionString::parse("Server=db,http;Database=D;User=u").unwrap_err(),
            ConnectionStringError::BadPort("http".into())
        );
    }

    #[test]
    fn quoted_values_keep_semicolons_and_doubled_quotes() {
        let c = ConnectionString::parse(
            r#"Server=s;Database='Octo;pus';User ID=u;Password="a;b""c'd""#,
        )
        .unwrap();
        assert_eq!(c.database, "Octo;pus");
        assert_eq!(c.password.unwrap().expose(), "a;b\"c'd");
        let c = ConnectionString::parse("Server=s;Database=D;User ID=u;Password='it''s'").unwrap();
        assert_eq!(c.password.unwrap().expose(), "it's");
    }

    #[test]
    fn encryption_settings() {
        let c = ConnectionString::parse(
            "Server=s;Database=D;User ID=u;Encrypt=False;TrustServerCertificate=True",
        )
        .unwrap();
        assert_eq!(
            (c.encrypt, c.trust_server_certificate),
            (Encrypt::Optional, Some(true))
        );
        let c = ConnectionString::parse("Server=s;Database=D;User ID=u;Encrypt=Strict").unwrap();
        assert_eq!(c.encrypt, Encrypt::Strict);
        assert!(matches!(
            ConnectionString::parse("Server=s;Database=D;User ID=u;Encrypt=maybe"),
            Err(ConnectionStringError::BadValue { .. })
        ));
    }

    #[test]
    fn bad_strings_say_what_is_missing_without_the_password() {
        assert_eq!(
            ConnectionString::parse("Database=D;User ID=u").unwrap_err(),
            ConnectionStringError::NoServer
        );
        assert_eq!(
            ConnectionString::parse("Server=s;User ID=u").unwrap_err(),
            ConnectionStringError::NoDatabase
        );
        assert_eq!(
            ConnectionString::parse("Server=s;Database=D;Password=hunter2").unwrap_err(),
            ConnectionStringError::NoAuthentication
        );
        let e = ConnectionString::parse("Server=s;Database=D;Password='hunter2").unwrap_err();
        assert!(matches!(
            e,
            ConnectionStringError::Syntax(_, "an unclosed quote")
        ));
        assert!(!e.to_string().contains("hunter2"));
        assert!(matches!(
            ConnectionString::parse("Server=s;Database"),
            Err(ConnectionStringError::Syntax(..))
        ));
    }

    #[test]
    fn named_instances_and_forms_seen_in_octopus_configs() {
        // A named instance without a port (SQL Browser finds it), in the Windows installer's form.
        let c = ConnectionString::parse(
            r"Data Source=SQL01\OCTOPUS;Initial Catalog=Octopus Deploy;Integrated Security=True",
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.instance.as_deref(), c.port),
            ("SQL01", Some("OCTOPUS"), None)
        );
        assert_eq!(c.database, "Octopus Deploy");
        assert_eq!(c.server_display(), r"SQL01\OCTOPUS");
        // tcp: prefix with a named instance and a port; keys in any case and spacing.
        let c = ConnectionString::parse(
            r" SERVER = tcp:db.corp\SECOND , 14330 ; DATABASE = Octo ; USER ID = backup ; PASSWORD = x ;",
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.instance.as_deref(), c.port),
            ("db.corp", Some("SECOND"), Some(14330))
        );
        assert_eq!(c.database, "Octo");
        assert_eq!(c.password.unwrap().expose(), "x");
        // Double quotes keep ; and a doubled double quote; '.' with an instance is the local host.
        let c = ConnectionString::parse(
            r#"Server=.\SQLEXPRESS;Database=OctopusDeploy;User ID=octo;Password="p;w""d""#,
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.instance.as_deref()),
            ("localhost", Some("SQLEXPRESS"))
        );
        assert_eq!(c.password.unwrap().expose(), r#"p;w"d"#);
        // The lab's own form (what `lab octopus-server` prints): a quoted password with ; and '.
        let c = ConnectionString::parse(
            "Server=127.0.0.1,1433;Database=OctopusDeploy;User ID=octobackup;Password='Lab;P''w1!';TrustServerCertificate=True",
        )
        .unwrap();
        assert_eq!(c.password.unwrap().expose(), "Lab;P'w1!");
        assert_eq!(c.trust_server_certificate, Some(true));
    }

    #[test]
    fn certificate_validation_follows_octopus_and_sqlclient() {
        let validates = |tail: &str| {
            ConnectionString::parse(&format!("Server=s;Database=D;User ID=u;{tail}"))
                .unwrap()
                .validates_certificate()
        };
        // Octopus's own strings: no TrustServerCertificate, Octopus trusts (Issues#6899).
        assert!(!validates(""));
        assert!(!validates("Encrypt=True"));
        assert!(!validates("Encrypt=True;TrustServerCertificate=True"));
        // Login-only TLS is never validated.
        assert!(!validates("Encrypt=False"));
        assert!(!validates("Encrypt=False;TrustServerCertificate=False"));
        assert!(!validates("Encrypt=Optional;TrustServerCertificate=False"));
        // Asked for: validated.
        assert!(validates("Encrypt=True;TrustServerCertificate=False"));
        assert!(validates("TrustServerCertificate=False"));
        assert!(validates("Encrypt=Strict"));
        assert!(validates("Encrypt=Strict;TrustServerCertificate=True"));
        let c = ConnectionString::parse(
            "Server=octo-sql;Database=D;User ID=u;Encrypt=Strict;HostNameInCertificate=sql01.corp.example",
        )
        .unwrap();
        assert_eq!(
            c.host_name_in_certificate.as_deref(),
            Some("sql01.corp.example")
        );
    }

    #[test]
    fn entra_id_authentication_is_refused_naming_what_works() {
        for method in [
            "Active Directory Password",
            "ActiveDirectoryIntegrated",
            "Active Directory Interactive",
            "ActiveDirectoryManagedIdentity",
            "Active Directory Default",
            "ActiveDirectoryServicePrincipal",
        ] {
            let s = format!(
                "Server=sql01;Database=OctopusDeploy;User ID=octo@contoso.com;Password=Secret-Pa55;Authentication={method}"
            );
            let err = ConnectionString::parse(&s).unwrap_err();
            assert_eq!(
                err,
                ConnectionStringError::UnsupportedAuthentication(method.to_string())
            );
            let text = err.to_string();
            assert!(text.contains("not supported"), "{text}");
            assert!(
                text.contains("SQL Server login (User ID and Password"),
                "{text}"
            );
            assert!(text.contains("Integrated Security=True"), "{text}");
            assert!(!text.contains("Secret-Pa55"), "{text}");
        }
        // a SQL login said explicitly is a SQL login
        let c = ConnectionString::parse(
            "Server=sql01;Database=OctopusDeploy;User ID=octo;Password=x;Authentication=Sql Password",
        )
        .unwrap();
        assert_eq!(
            c.auth,
            Authentication::SqlLogin {
                user: "octo".into()
            }
        );
        assert_eq!(
            ConnectionString::parse("Server=s;Database=d;User ID=u;Authentication=Kerberos")
                .unwrap_err(),
            ConnectionStringError::BadValue {
                key: "authentication".into(),
                value: "Kerberos".into()
            }
        );
    }

    #[test]
    fn multi_subnet_failover() {
        let c = ConnectionString::parse(
            "Server=tcp:ag-listener,1433;Database=OctopusDeploy;Integrated Security=True;MultiSubnetFailover=True",
        )
        .unwrap();
        assert!(c.multi_subnet_failover);
        let c = ConnectionString::parse(
            "Server=ag;Database=d;Integrated Security=True;Multi Subnet Failover=no",
        )
        .unwrap();
        assert!(!c.multi_subnet_failover);
        let c = ConnectionString::parse("Server=ag;Database=d;Integrated Security=True").unwrap();
        assert!(!c.multi_subnet_failover);
        assert!(matches!(
            ConnectionString::parse(
                "Server=ag;Database=d;Integrated Security=True;MultiSubnetFailover=maybe"
            ),
            Err(ConnectionStringError::BadValue { .. })
        ));
    }

    #[test]
    fn local_servers() {
        let local = |server: &str| {
            ConnectionString::parse(&format!("Server={server};Database=D;User ID=u"))
                .unwrap()
                .is_local()
        };
        assert!(local("(local)\\SQLEXPRESS"));
        assert!(local(".\\SQLEXPRESS"));
        assert!(local("localhost"));
        assert!(local("127.4.5.6\\OCTOPUS"));
        assert!(!local("sql01.example.com"));
    }

    #[test]
    fn duplicates_and_unknown_keywords_are_named_without_values() {
        let q = questionable_keys(
            "Server=a;Database=One;Initial Catalog=Two;User ID=u;Password=s3cret;Encrpyt=True;Pooling=false",
        );
        assert_eq!(q.len(), 2, "{q:?}");
        assert!(
            q[0].contains("'initial catalog' is given more than once"),
            "{q:?}"
        );
        assert!(q[1].contains("'encrpyt' is not"), "{q:?}");
        assert!(q.iter().all(|w| !w.contains("s3cret")));
        assert!(questionable_keys("Server=a;Database=d;Integrated Security=SSPI").is_empty());
    }
}
