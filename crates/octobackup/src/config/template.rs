//! The commented config `octobackup init` writes.

pub fn template(repository: &str) -> String {
    let repository = repository.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"# octobackup configuration. Secrets are never written here: each one names an environment
# variable or a file that holds it.

[repository]
# A local folder or network share, or a remote repository (restic's forms work too):
#   S3:    s3://HOST[:PORT]/BUCKET[/PATH]   (https; s3:http://HOST:PORT/BUCKET for plain http)
#          keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; region from AWS_REGION (default us-east-1)
#   Azure: azure://CONTAINER[/PATH]
#          account and key from AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY (or AZURE_STORAGE_SAS_TOKEN)
#   SFTP:  sftp://USER@HOST[:PORT]/PATH     (not in the Windows build; uses the system's ssh)
# Create the bucket or container first (aws s3 mb / az storage container create).
location = "{repository}"
# The repository password: OCTOBACKUP_PASSWORD, this file, or a prompt.
# password_file = "/etc/octobackup/repository-password"
# zstd level for new data (default 1: on Octopus's data as small as 3, and faster).
# compression = 1
# How long a run keeps retrying a storage server that does not answer, added up over the run
# (default 2m); past it the run stops with one line.
# retry_budget = "2m"

# Backend settings, when the location and the environment do not say enough. Credentials are
# best named, not written: access_key_id, secret_access_key, session_token, account_key and
# sas_token each take a _env (a variable's name) or _file (a file holding it) form.
# [repository.options]
# S3 server other than AWS, or another region:
# endpoint = "https://minio.example.com:9000"
# region = "eu-west-1"
# secret_access_key_file = '/etc/octobackup/s3-secret'
# Azure, another cloud or Azurite:
# endpoint = "https://ACCOUNT.blob.core.windows.net"
# account_key_env = "OCTOBACKUP_AZURE_KEY"
# SFTP: the key file, and the server's host key check (strict by default: connect once with
# ssh first, or "add" to trust on first use); at most 8 connections unless set.
# key = "/etc/octobackup/id_ed25519"
# known_hosts_strategy = "strict"
# connections = "8"

# Retention for `octobackup forget` (and `backup --forget`): restic's keep rules, applied to whole
# sets. The newest complete set is always kept; unfinished runs' sets go first.
# [instance.NAME.retention] replaces this for one instance; --keep-* flags replace both.
[retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
# keep_last = 3
# keep_yearly = 3
# keep_within = "30d"

# Also seal each set's master key and license to these age public keys (age-keygen -y), so their
# holders can recover them without the repository password: octobackup key recover --identity FILE
# [escrow]
# age_recipients = ["age1..."]

# A second copy, elsewhere (another backend, its own password): `octobackup init --copy offsite`
# once, then every backup copies its new set there (or `octobackup copy --to offsite`). Only
# complete sets are copied, each once; `check --copy offsite` and `drill --copy offsite` test it.
# Retention on the copy: `forget --copy offsite` (then `prune --copy offsite`) applies the copy's
# own [copy.retention], else the instance's policy; `backup --forget` also forgets on the copies
# that have their own [copy.retention] (a copy without one keeps every set until you forget there).
# [[copy]]
# name = "offsite"
# location = "s3://s3.eu-west-1.amazonaws.com/octopus-offsite/prod"
# password_file = "/etc/octobackup/offsite-password"
# after_backup = true
# retry_budget = "2m"
# [copy.options]
# secret_access_key_file = "/etc/octobackup/offsite-s3-secret"
# [copy.retention]
# keep_daily = 7
# keep_weekly = 8
# keep_monthly = 24

# One section per Octopus Server instance: octobackup backup --instance OctopusServer
[instance.OctopusServer]
url = "https://octopus.example.com"
# An API key of a user with the Administer System permission (maintenance mode needs it).
api_key_env = "OCTOPUS_API_KEY"
# api_key_file = 'C:\ProgramData\octobackup\octopus-api-key'

[instance.OctopusServer.sql]
# The connection string as Octopus stores it (Octopus.Server show-configuration prints it).
# Leave the password out and give it below, or read the whole string from a file or variable.
connection_string = "Server=sql01;Database=OctopusDeploy;User ID=octobackup;Encrypt=True"
password_env = "OCTOBACKUP_SQL_PASSWORD"
# connection_string_file = 'C:\ProgramData\octobackup\connection-string'
# Stripe the .bak over several files for speed (default 1).
# stripes = 2
# Longest silence allowed from SQL Server during BACKUP (default 10m).
# command_timeout = "10m"
# Who owns the database's backup chain. "copy_only" (default): every backup is a COPY_ONLY full
# inside the window and a DBA's own backups are untouched. "owned" (nobody else takes full
# backups of this database): a full backup before the window is the differential base, reused
# for base_every or until a differential passes base_max_share of it, and only a differential
# runs inside the window. `octobackup doctor` checks msdb's history for other full backups.
# chain = "owned"
# base_every = "7d"
# base_max_share = 0.5

[instance.OctopusServer.master_key]
# How to read the master key on the Octopus host (run octobackup as a local administrator):
command = ['C:\Program Files\Octopus Deploy\Octopus\Octopus.Server.exe', "show-master-key", "--instance", "OctopusServer", "--console", "--noconsolelogging"]
# Linux container: command = ["docker", "exec", "octopus", "/Octopus/Octopus.Server", "show-master-key", "--console", "--instance", "OctopusServer"]
# Or: env = "OCTOPUS_MASTER_KEY"  /  file = "/run/secrets/octopus-master-key"

# Or let the instance say: with this section, url, the SQL connection string, the folders and the
# master key may be left out; they come from `Octopus.Server show-configuration`/`show-master-key`.
# [instance.OctopusServer.discover]
# command = ['C:\Program Files\Octopus Deploy\Octopus\Octopus.Server.exe']   # default on Windows
# command = ["docker", "exec", "octopus", "/Octopus/Octopus.Server"]            # Linux container
# instance = "OctopusServer"

[instance.OctopusServer.staging]
# A folder SQL Server can write the .bak to and octobackup can read it from, as each sees it.
sql_path = 'D:\OctobackupStaging'
# local_path = '\\sql01\OctobackupStaging'

# The server folders are read from the Octopus API unless given here.
# [instance.OctopusServer.folders]
# Packages = 'C:\Octopus\Packages'
# Artifacts = 'C:\Octopus\Artifacts'
# TaskLogs = 'C:\Octopus\TaskLogs'
# EventExports = 'C:\Octopus\EventExports'

[instance.OctopusServer.wait]
# After maintenance mode is on, wait this long for running tasks to finish,
timeout = "30m"
# then "abort" (maintenance mode is put back, nothing is stored) or "continue".
on_timeout = "abort"
# Queued tasks still start in maintenance mode; set true to wait for them too.
include_queued = false
# The longest maintenance mode stays on (the task wait included): past it, octobackup puts it
# back as found and the run fails (exit 1). Default: timeout + 10m.
# max_window = "40m"

# Who is told (README: Notifications and metrics). on = "failure" (default), "always" or "recovery".
# [notify]
# on = "failure"
# [[notify.webhook]]
# format = "teams"                  # or "slack", or "json" (octobackup's own body)
# url_env = "OCTOBACKUP_TEAMS_URL"  # the URL holds a token: keep it out of this file
# [[notify.email]]
# server = "smtp.example.com"       # STARTTLS on 587 by default
# username = "octobackup@example.com"
# password_env = "OCTOBACKUP_SMTP_PASSWORD"
# from = "octobackup@example.com"
# to = ["ops@example.com"]

# Prometheus: a file for node_exporter's textfile collector and/or a Pushgateway.
# [metrics]
# textfile = 'C:\Program Files\windows_exporter\textfile_inputs\octobackup.prom'
# pushgateway = "http://pushgateway:9091"
"#
    )
}
