//! SQL Server's messages, worded as SQL Server words them, with their numbers,
//! severities and states. Messages the lab adds for what it does not do use
//! number 50000 and say so.

/// An error or informational message a statement raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub number: i32,
    pub class: u8,
    pub state: u8,
    pub text: String,
}

impl SqlError {
    pub fn new(number: i32, class: u8, state: u8, text: impl Into<String>) -> Self {
        Self {
            number,
            class,
            state,
            text: text.into(),
        }
    }

    /// A limitation of the lab, never a real SQL Server message.
    pub fn lab(text: impl Into<String>) -> Self {
        Self::new(50000, 16, 1, format!("[octobackup lab] {}", text.into()))
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, State {}: {}",
            self.number, self.class, self.state, self.text
        )
    }
}

impl std::error::Error for SqlError {}

pub fn login_failed(login: &str) -> SqlError {
    SqlError::new(18456, 14, 1, format!("Login failed for user '{login}'."))
}

pub fn integrated_login_refused() -> SqlError {
    SqlError::new(
        18452,
        14,
        1,
        "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication.",
    )
}

pub fn cannot_open_login_database(database: &str) -> SqlError {
    SqlError::new(
        4060,
        11,
        1,
        format!("Cannot open database \"{database}\" requested by the login. The login failed."),
    )
}

pub fn database_does_not_exist(name: &str) -> SqlError {
    SqlError::new(
        911,
        16,
        1,
        format!("Database '{name}' does not exist. Make sure that the name is entered correctly."),
    )
}

pub fn invalid_object(name: &str) -> SqlError {
    SqlError::new(208, 16, 1, format!("Invalid object name '{name}'."))
}

pub fn invalid_column(name: &str) -> SqlError {
    SqlError::new(207, 16, 1, format!("Invalid column name '{name}'."))
}

pub fn ambiguous_column(name: &str) -> SqlError {
    SqlError::new(209, 16, 1, format!("Ambiguous column name '{name}'."))
}

pub fn unbound_identifier(name: &str) -> SqlError {
    SqlError::new(
        4104,
        16,
        1,
        format!("The multi-part identifier \"{name}\" could not be bound."),
    )
}

pub fn not_in_group_by(column: &str) -> SqlError {
    SqlError::new(
        8120,
        16,
        1,
        format!(
            "Column '{column}' is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause."
        ),
    )
}

pub fn conversion_failed(value: &str, from: &str, to: &str) -> SqlError {
    SqlError::new(
        245,
        16,
        1,
        format!("Conversion failed when converting the {from} value '{value}' to data type {to}."),
    )
}

pub fn guid_conversion_failed() -> SqlError {
    SqlError::new(
        8169,
        16,
        2,
        "Conversion failed when converting from a character string to uniqueidentifier.",
    )
}

pub fn date_conversion_failed() -> SqlError {
    SqlError::new(
        241,
        16,
        1,
        "Conversion failed when converting date and/or time from character string.",
    )
}

pub fn undefined_type(name: &str) -> SqlError {
    SqlError::new(
        243,
        16,
        1,
        format!("Type {name} is not a defined system type."),
    )
}

pub fn permission_denied(permission: &str, database: &str) -> SqlError {
    SqlError::new(
        262,
        14,
        1,
        format!("{permission} permission denied in database '{database}'."),
    )
}

pub fn in_transaction() -> SqlError {
    SqlError::new(
        3021,
        16,
        1,
        "Cannot perform a backup or restore operation within a transaction.",
    )
}

/// Msg 3013: the operation (e.g. "BACKUP DATABASE", "VERIFY DATABASE") stopped.
pub fn terminating(operation: &str) -> SqlError {
    SqlError::new(
        3013,
        16,
        1,
        format!("{operation} is terminating abnormally."),
    )
}

/// Msg 3201 with an operating-system error such as "5(Access is denied.)".
pub fn cannot_open_device(path: &str, os_error: &str, state: u8) -> SqlError {
    SqlError::new(
        3201,
        16,
        state,
        format!("Cannot open backup device '{path}'. Operating system error {os_error}."),
    )
}

pub fn read_failed(path: &str, os_error: &str) -> SqlError {
    SqlError::new(
        3203,
        16,
        1,
        format!("Read on \"{path}\" failed: {os_error}"),
    )
}

pub fn write_failed(path: &str, os_error: &str) -> SqlError {
    SqlError::new(
        3202,
        16,
        1,
        format!("Write on \"{path}\" failed: {os_error}"),
    )
}

pub fn media_incorrectly_formed(path: &str) -> SqlError {
    SqlError::new(
        3241,
        16,
        0,
        format!(
            "The media family on device '{path}' is incorrectly formed. SQL Server cannot process this media family."
        ),
    )
}

pub fn missing_media_families(families: u32, provided: u32) -> SqlError {
    SqlError::new(
        3132,
        16,
        1,
        format!(
            "The media set has {families} media families but only {provided} are provided. All members must be provided."
        ),
    )
}

pub fn damaged_backup_set() -> SqlError {
    SqlError::new(3189, 16, 1, "Damage to the backup set was detected.")
}

pub fn no_such_backup_set(position: u32, path: &str) -> SqlError {
    SqlError::new(
        4038,
        16,
        1,
        format!("Cannot find file ID {position} on device '{path}'."),
    )
}

pub fn backup_of_other_database(existing: &str) -> SqlError {
    SqlError::new(
        3154,
        16,
        4,
        format!(
            "The backup set holds a backup of a database other than the existing '{existing}' database."
        ),
    )
}

pub fn tail_of_log_not_backed_up(database: &str) -> SqlError {
    SqlError::new(
        3159,
        16,
        1,
        format!(
            "The tail of the log for the database \"{database}\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to backup the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log."
        ),
    )
}

pub fn file_in_use_by_database(path: &str, database: &str) -> SqlError {
    SqlError::new(
        1834,
        16,
        1,
        format!(
            "The file '{path}' cannot be overwritten.  It is being used by database '{database}'."
        ),
    )
}

pub fn cannot_restore_file_to(logical: &str, path: &str) -> SqlError {
    SqlError::new(
        3156,
        16,
        4,
        format!(
            "File '{logical}' cannot be restored to '{path}'. Use WITH MOVE to identify a valid location for the file."
        ),
    )
}

pub fn file_exists_without_replace(logical: &str, path: &str) -> SqlError {
    SqlError::new(
        3142,
        16,
        1,
        format!(
            "File \"{logical}\" cannot be restored over the existing \"{path}\". Reissue the RESTORE statement using WITH REPLACE to overwrite pre-existing files, or WITH MOVE to identify an alternate location."
        ),
    )
}

pub fn directory_lookup_failed(path: &str, os_error: &str) -> SqlError {
    SqlError::new(
        5133,
        16,
        1,
        format!(
            "Directory lookup for the file \"{path}\" failed with the operating system error {os_error}."
        ),
    )
}

pub fn restore_planning_failed() -> SqlError {
    SqlError::new(
        3119,
        16,
        1,
        "Problems were identified while planning for the RESTORE statement. Previous messages provide details.",
    )
}

pub fn logical_file_not_in_backup(logical: &str, database: &str) -> SqlError {
    SqlError::new(
        3234,
        16,
        2,
        format!(
            "Logical file '{logical}' is not part of database '{database}'. Use RESTORE FILELISTONLY to list the logical file names."
        ),
    )
}

pub fn exclusive_access_failed() -> SqlError {
    SqlError::new(
        3101,
        16,
        1,
        "Exclusive access could not be obtained because the database is in use.",
    )
}

pub fn in_use_by_this_session(operation: &str, database: &str) -> SqlError {
    SqlError::new(
        3102,
        16,
        1,
        format!(
            "{operation} cannot process database '{database}' because it is in use by this session. It is recommended that the master database be used when performing this operation."
        ),
    )
}

pub fn cannot_drop_missing(name: &str) -> SqlError {
    SqlError::new(
        3701,
        11,
        1,
        format!(
            "Cannot drop the database '{name}', because it does not exist or you do not have permission."
        ),
    )
}

pub fn cannot_drop_in_use(name: &str) -> SqlError {
    SqlError::new(
        3702,
        16,
        4,
        format!("Cannot drop database \"{name}\" because it is currently in use."),
    )
}

pub fn cannot_drop_system(name: &str) -> SqlError {
    SqlError::new(
        3708,
        16,
        1,
        format!("Cannot drop the database '{name}' because it is a system database."),
    )
}

pub fn compression_not_supported(edition: &str) -> SqlError {
    SqlError::new(
        1844,
        16,
        1,
        format!("BACKUP DATABASE WITH COMPRESSION is not supported on {edition}."),
    )
}

pub fn azure_not_supported(statement: &str) -> SqlError {
    SqlError::new(
        40510,
        16,
        1,
        format!("Statement '{statement}' is not supported in this version of SQL Server."),
    )
}

pub fn azure_use_not_supported() -> SqlError {
    SqlError::new(
        40508,
        16,
        1,
        "USE statement is not supported to switch between databases. Use a new connection to connect to a different database.",
    )
}

pub fn commit_without_begin() -> SqlError {
    SqlError::new(
        3902,
        16,
        1,
        "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
    )
}

pub fn rollback_without_begin() -> SqlError {
    SqlError::new(
        3903,
        16,
        1,
        "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
    )
}

pub fn dbcc_database_missing(name: &str) -> SqlError {
    SqlError::new(
        2520,
        16,
        1,
        format!(
            "Could not find database '{name}'. The database either does not exist, or was dropped before a statement tried to use it. Verify if the database exists by querying the sys.databases catalog view."
        ),
    )
}

pub fn dbcc_permission(login: &str, database: &str) -> SqlError {
    SqlError::new(
        7983,
        14,
        36,
        format!(
            "User '{login}' does not have permission to run DBCC checkdb for database '{database}'."
        ),
    )
}

/// Msg 0 informational: "Changed database context to 'x'."
pub fn changed_database(name: &str) -> SqlError {
    SqlError::new(5701, 0, 2, format!("Changed database context to '{name}'."))
}

pub fn changed_language(name: &str) -> SqlError {
    SqlError::new(5703, 0, 1, format!("Changed language setting to {name}."))
}

pub fn percent_processed(percent: u32) -> SqlError {
    SqlError::new(3211, 10, 1, format!("{percent} percent processed."))
}

pub fn processed_pages(pages: u64, database: &str, logical: &str, position: u32) -> SqlError {
    SqlError::new(
        4035,
        10,
        1,
        format!(
            "Processed {pages} pages for database '{database}', file '{logical}' on file {position}."
        ),
    )
}

/// Msg 3014: "BACKUP DATABASE successfully processed N pages in 0.123 seconds (4.567 MB/sec)."
pub fn successfully_processed(operation: &str, pages: u64, bytes: u64, seconds: f64) -> SqlError {
    let seconds = seconds.max(0.001);
    let mb_per_sec = bytes as f64 / 1_048_576.0 / seconds;
    SqlError::new(
        3014,
        10,
        1,
        format!(
            "{operation} successfully processed {pages} pages in {seconds:.3} seconds ({mb_per_sec:.3} MB/sec)."
        ),
    )
}

pub fn backup_set_valid(position: u32) -> SqlError {
    SqlError::new(
        3262,
        10,
        1,
        format!("The backup set on file {position} is valid."),
    )
}

pub fn rpc_not_supported(procedure: &str) -> SqlError {
    SqlError::lab(format!(
        "RPC requests ({procedure}) are not supported: the lab SQL Server takes SQL batches only. Send a plain batch with quoted literals (tiberius: simple_query)."
    ))
}

/// Msg 229: a SELECT on an object the login has no permission on.
pub fn select_denied(object: &str, database: &str, schema: &str) -> SqlError {
    SqlError::new(
        229,
        14,
        5,
        format!(
            "The SELECT permission was denied on the object '{object}', database '{database}', schema '{schema}'."
        ),
    )
}

/// Msg 15123: sp_configure with an option name it does not know.
pub fn no_such_configuration_option(name: &str) -> SqlError {
    SqlError::new(
        15123,
        16,
        1,
        format!(
            "The configuration option '{name}' does not exist, or it may be an advanced option."
        ),
    )
}

/// Msg 15247: sp_configure/RECONFIGURE without ALTER SETTINGS.
pub fn no_permission_for_action() -> SqlError {
    SqlError::new(
        15247,
        16,
        1,
        "User does not have permission to perform this action.",
    )
}

/// Msg 15457 (informational): sp_configure changed a value that RECONFIGURE installs.
pub fn configuration_changed(name: &str, from: i64, to: i64) -> SqlError {
    SqlError::new(
        15457,
        0,
        1,
        format!(
            "Configuration option '{name}' changed from {from} to {to}. Run the RECONFIGURE statement to install."
        ),
    )
}

/// Msg 8144: more arguments than the procedure has parameters.
pub fn too_many_arguments(procedure: &str) -> SqlError {
    SqlError::new(
        8144,
        16,
        2,
        format!("Procedure or function {procedure} has too many arguments specified."),
    )
}

/// Msg 8145: a named argument the procedure does not have.
pub fn not_a_parameter(name: &str, procedure: &str) -> SqlError {
    SqlError::new(
        8145,
        16,
        2,
        format!("{name} is not a parameter for procedure {procedure}."),
    )
}

/// Msg 201: a parameter without default left out.
pub fn missing_parameter(procedure: &str, name: &str) -> SqlError {
    SqlError::new(
        201,
        16,
        4,
        format!(
            "Procedure or function '{procedure}' expects parameter '{name}', which was not supplied."
        ),
    )
}

/// Msg 214: sp_executesql's statement is not text (Microsoft Learn, sp_executesql: @stmt is
/// a Unicode string).
pub fn executesql_statement_type() -> SqlError {
    SqlError::new(
        214,
        16,
        2,
        "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.",
    )
}

/// Msg 214 for sp_executesql's @params when it is not Unicode text.
pub fn executesql_parameters_type() -> SqlError {
    SqlError::new(
        214,
        16,
        2,
        "Procedure expects parameter '@parameters' of type 'ntext/nchar/nvarchar'.",
    )
}

/// Msg 8178: a parameter @params declares was not passed.
pub fn parameter_not_supplied(declaration: &str, parameter: &str) -> SqlError {
    SqlError::new(
        8178,
        16,
        1,
        format!(
            "The parameterized query '({declaration})' expects the parameter '{parameter}', which was not supplied."
        ),
    )
}

/// Msg 927: a database left RESTORING (`RESTORE ... WITH NORECOVERY`) cannot be opened, backed
/// up or checked until a restore WITH RECOVERY (Microsoft Learn, "Database engine events and
/// errors 0 to 999").
pub fn database_restoring(name: &str) -> SqlError {
    SqlError::new(
        927,
        14,
        2,
        format!("Database '{name}' cannot be opened. It is in the middle of a restore."),
    )
}
