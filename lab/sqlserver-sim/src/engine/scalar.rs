//! Scalar expressions: literals, column references, built-in functions,
//! globals, CAST/CONVERT, and comparisons with SQL Server's conversion rules
//! (case-insensitive strings, trailing blanks ignored, strings converted to
//! the other side's type).

use std::cmp::Ordering;

use chrono::{NaiveDate, NaiveDateTime};
use uuid::Uuid;

use super::errors::{self, SqlError};
use super::{Engine, SERVER_NAME};
use crate::sql::ast::{CompareOp, Condition, Expr, Literal, TypeName};
use crate::tds::token::Column;
use crate::tds::types::{SqlType, Value};
use crate::{Edition, SqlLogin};

/// What an expression can see of the session.
pub struct EvalContext<'a> {
    pub engine: &'a Engine,
    pub spid: u16,
    pub login: &'a SqlLogin,
    pub database: &'a str,
    pub tran_count: u32,
    /// The batch's local variables (lower-cased names) with their values and types.
    pub variables: &'a std::collections::HashMap<String, (Value, SqlType)>,
}

/// A column of a FROM source with the names it can be qualified by.
#[derive(Debug, Clone)]
pub struct ScopedColumn {
    /// The table alias (or the table name when there is no alias).
    pub qualifier: String,
    pub column: Column,
}

/// The current row while evaluating over a FROM source.
pub struct RowScope<'a> {
    pub columns: &'a [ScopedColumn],
    pub values: &'a [Value],
}

/// Finds the column `parts` names: `col` or `qualifier.col`.
pub fn resolve_column(parts: &[String], columns: &[ScopedColumn]) -> Result<usize, SqlError> {
    let (qualifier, name) = match parts {
        [name] => (None, name),
        [.., q, name] => (Some(q), name),
        [] => return Err(errors::invalid_column("")),
    };
    let full = parts.join(".");
    if let Some(q) = qualifier
        && !columns.iter().any(|c| c.qualifier.eq_ignore_ascii_case(q))
    {
        return Err(errors::unbound_identifier(&full));
    }
    let matches: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.column.name.eq_ignore_ascii_case(name)
                && qualifier.is_none_or(|q| c.qualifier.eq_ignore_ascii_case(q))
        })
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(errors::invalid_column(name)),
        _ => Err(errors::ambiguous_column(name)),
    }
}

fn literal(lit: &Literal) -> Result<(Value, SqlType), SqlError> {
    Ok(match lit {
        Literal::Null => (Value::Null, SqlType::Int),
        Literal::Integer(n) => {
            if let Ok(v) = i32::try_from(*n) {
                (Value::Int(v), SqlType::Int)
            } else if let Ok(v) = i64::try_from(*n) {
                (Value::BigInt(v), SqlType::BigInt)
            } else {
                let digits = n.unsigned_abs().to_string().len() as u8;
                if digits > 38 {
                    return Err(SqlError::new(
                        1007,
                        15,
                        1,
                        format!(
                            "The number '{n}' is out of the range for numeric representation (maximum precision 38)."
                        ),
                    ));
                }
                (
                    Value::Numeric(*n),
                    SqlType::Numeric {
                        precision: digits,
                        scale: 0,
                    },
                )
            }
        }
        Literal::Decimal(text) => {
            let (value, precision, scale) = parse_decimal(text)
                .ok_or_else(|| errors::conversion_failed(text, "varchar", "numeric"))?;
            (Value::Numeric(value), SqlType::Numeric { precision, scale })
        }
        Literal::Str { value, national } => {
            // A literal longer than nvarchar(4000) / varchar(8000) is typed (n)varchar(max)
            // (Microsoft Learn, "Constants": character strings over 8000 bytes are max types).
            let len = value.chars().count().max(1);
            let ty = match (*national, len) {
                (true, 1..=4000) => SqlType::NVarChar(Some(len as u16)),
                (true, _) => SqlType::NVarChar(None),
                (false, 1..=8000) => SqlType::VarChar(Some(len as u16)),
                (false, _) => SqlType::VarChar(None),
            };
            (Value::Str(value.clone()), ty)
        }
        Literal::Binary(bytes) => (
            Value::Bytes(bytes.clone()),
            SqlType::VarBinary(Some(bytes.len().clamp(1, 8000) as u16)),
        ),
    })
}

/// "12.50" -> (1250, precision 4, scale 2).
fn parse_decimal(text: &str) -> Option<(i128, u8, u8)> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .chars()
        .chain(frac_part.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let all: String = format!("{int_part}{frac_part}");
    let value: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
    let scale = frac_part.len() as u8;
    let precision = (int_part.trim_start_matches('0').len() as u8 + scale).max(1);
    if precision > 38 {
        return None;
    }
    Some((if negative { -value } else { value }, precision, scale))
}

/// Evaluates an expression; `scope` is the current row (None outside a FROM).
pub fn eval(
    expr: &Expr,
    ctx: &EvalContext,
    scope: Option<&RowScope>,
) -> Result<(Value, SqlType), SqlError> {
    match expr {
        Expr::Literal(lit) => literal(lit),
        Expr::Column(parts) => {
            let Some(scope) = scope else {
                return Err(errors::invalid_column(
                    parts.last().map(String::as_str).unwrap_or(""),
                ));
            };
            let index = resolve_column(parts, scope.columns)?;
            Ok((
                scope.values[index].clone(),
                scope.columns[index].column.ty.clone(),
            ))
        }
        Expr::Global(name) => global(name, ctx),
        // The parser lets only DECLAREd variables through; one not yet run is NULL.
        Expr::Variable(name) => Ok(ctx
            .variables
            .get(name)
            .cloned()
            .unwrap_or((Value::Null, SqlType::Int))),
        Expr::Negate(inner) => {
            let (value, ty) = eval(inner, ctx, scope)?;
            let negated = match value {
                Value::Null => Value::Null,
                Value::Int(v) => Value::Int(-v),
                Value::BigInt(v) => Value::BigInt(-v),
                Value::SmallInt(v) => Value::SmallInt(-v),
                Value::TinyInt(v) => Value::Int(-(v as i32)),
                Value::Numeric(v) => Value::Numeric(-v),
                Value::Float(v) => Value::Float(-v),
                Value::Real(v) => Value::Real(-v),
                _ => {
                    return Err(SqlError::new(
                        8117,
                        16,
                        1,
                        format!(
                            "Operand data type {} is invalid for minus operator.",
                            type_name(&ty)
                        ),
                    ));
                }
            };
            Ok((
                negated,
                if ty == SqlType::TinyInt {
                    SqlType::Int
                } else {
                    ty
                },
            ))
        }
        Expr::Cast { expr, ty } => {
            let target = cast_target(ty)?;
            let (value, from) = eval(expr, ctx, scope)?;
            Ok((convert(&value, &from, &target)?, target))
        }
        Expr::Function { name, args } => function(name, args, ctx, scope),
    }
}

fn must_declare(name: &str) -> SqlError {
    SqlError::new(
        137,
        15,
        2,
        format!("Must declare the scalar variable \"{name}\"."),
    )
}

fn global(name: &str, ctx: &EvalContext) -> Result<(Value, SqlType), SqlError> {
    Ok(match name {
        "@@SPID" => (Value::SmallInt(ctx.spid as i16), SqlType::SmallInt),
        "@@VERSION" => (
            Value::Str(ctx.engine.version_string()),
            SqlType::NVarChar(Some(300)),
        ),
        "@@SERVERNAME" => (
            Value::Str(SERVER_NAME.to_string()),
            SqlType::NVarChar(Some(128)),
        ),
        "@@SERVICENAME" => (
            Value::Str("MSSQLSERVER".to_string()),
            SqlType::NVarChar(Some(128)),
        ),
        "@@TRANCOUNT" => (Value::Int(ctx.tran_count as i32), SqlType::Int),
        "@@LANGUAGE" => (
            Value::Str("us_english".to_string()),
            SqlType::NVarChar(Some(128)),
        ),
        _ => return Err(must_declare(name)),
    })
}

fn arity(name: &str, args: &[Expr], min: usize, max: usize) -> Result<(), SqlError> {
    if args.len() < min || args.len() > max {
        return Err(if min == max {
            SqlError::new(
                174,
                15,
                1,
                format!(
                    "The {} function requires {min} argument(s).",
                    name.to_lowercase()
                ),
            )
        } else {
            SqlError::new(
                189,
                15,
                1,
                format!(
                    "The {} function requires {min} to {max} arguments.",
                    name.to_lowercase()
                ),
            )
        });
    }
    Ok(())
}

fn string_arg(
    expr: &Expr,
    ctx: &EvalContext,
    scope: Option<&RowScope>,
) -> Result<Option<String>, SqlError> {
    let (value, ty) = eval(expr, ctx, scope)?;
    match convert(&value, &ty, &SqlType::NVarChar(None))? {
        Value::Str(s) => Ok(Some(s)),
        _ => Ok(None),
    }
}

fn server_property(name: &str, ctx: &EvalContext) -> Value {
    let engine = ctx.engine;
    let text = |s: &str| {
        Value::Variant(
            Box::new(Value::Str(s.to_string())),
            SqlType::NVarChar(Some(128)),
        )
    };
    let int = |n: i32| Value::Variant(Box::new(Value::Int(n)), SqlType::Int);
    match name.to_ascii_lowercase().as_str() {
        "productversion" => text(&engine.version.text),
        "productmajorversion" => text(&engine.version.major.to_string()),
        "productminorversion" => text(&engine.version.minor.to_string()),
        "productbuild" => text(&engine.version.build.to_string()),
        // the release of known builds (platform.rs): CU14 of 2022, SP3 of 2014, RTMs
        "productlevel" => text(super::platform::build(&engine.version).map_or("RTM", |b| b.level)),
        "productupdatelevel" => super::platform::build(&engine.version)
            .and_then(|b| b.update_level)
            .map_or(
                Value::Variant(Box::new(Value::Null), SqlType::NVarChar(Some(128))),
                text,
            ),
        "productupdatereference" => super::platform::build(&engine.version)
            .and_then(|b| b.update_reference)
            .map_or(
                Value::Variant(Box::new(Value::Null), SqlType::NVarChar(Some(128))),
                text,
            ),
        "edition" => text(engine.edition.edition_name()),
        "engineedition" => int(engine.edition.engine_edition()),
        "machinename" | "servername" | "computernamephysicalnetbios" => text(SERVER_NAME),
        "instancename" => Value::Variant(Box::new(Value::Null), SqlType::NVarChar(Some(128))),
        // Where new databases' files go (SQL Server 2012 and later): the instance's data folder,
        // with the trailing separator SQL Server writes (`...\MSSQL\DATA\`, `/var/opt/mssql/data/`).
        // Logs default to the same folder, as after a default install.
        "instancedefaultdatapath" | "instancedefaultlogpath" => Value::Variant(
            Box::new(Value::Str(engine.default_data_path())),
            SqlType::NVarChar(Some(4000)),
        ),
        "isclustered" | "ishadrenabled" | "isintegratedsecurityonly" | "issingleuser" => int(0),
        "collation" => text("SQL_Latin1_General_CP1_CI_AS"),
        "editionid" => Value::Variant(
            Box::new(Value::Int(match engine.edition {
                Edition::Express => -1_592_396_055,
                Edition::Standard => -1_534_726_760,
                Edition::Developer => -2_117_995_310,
                Edition::Enterprise => 1_804_890_536,
                Edition::AzureSqlDatabase | Edition::AzureSqlManagedInstance => 1_674_378_470,
            })),
            SqlType::Int,
        ),
        _ => Value::Variant(Box::new(Value::Null), SqlType::Int),
    }
}

fn function(
    name: &str,
    args: &[Expr],
    ctx: &EvalContext,
    scope: Option<&RowScope>,
) -> Result<(Value, SqlType), SqlError> {
    let now = chrono::Local::now().naive_local();
    match name {
        "SERVERPROPERTY" => {
            arity(name, args, 1, 1)?;
            let property = string_arg(&args[0], ctx, scope)?;
            let value = match property {
                Some(p) => server_property(&p, ctx),
                None => Value::Variant(Box::new(Value::Null), SqlType::Int),
            };
            Ok((value, SqlType::Variant))
        }
        "DB_ID" => {
            arity(name, args, 0, 1)?;
            let db = match args.first() {
                None => Some(ctx.database.to_string()),
                Some(arg) => string_arg(arg, ctx, scope)?,
            };
            let id = db.and_then(|d| ctx.engine.database_id(&d));
            Ok((id.map_or(Value::Null, Value::Int), SqlType::Int))
        }
        "DB_NAME" => {
            arity(name, args, 0, 1)?;
            let value = match args.first() {
                None => Some(ctx.database.to_string()),
                Some(arg) => {
                    let (value, ty) = eval(arg, ctx, scope)?;
                    match convert(&value, &ty, &SqlType::Int)? {
                        Value::Int(id) => ctx.engine.database_name(id),
                        _ => None,
                    }
                }
            };
            Ok((
                value.map_or(Value::Null, Value::Str),
                SqlType::NVarChar(Some(128)),
            ))
        }
        "SUSER_SNAME" | "SUSER_NAME" => {
            arity(name, args, 0, 0)?;
            Ok((
                Value::Str(ctx.login.name.clone()),
                SqlType::NVarChar(Some(128)),
            ))
        }
        // Database roles of the current login in the current database. The lab's logins have no
        // database users of their own: a sysadmin is dbo everywhere (so a member of every fixed
        // role), anyone else is only in `public`. NULL for a role that does not exist, as SQL
        // Server answers.
        "IS_ROLEMEMBER" => {
            arity(name, args, 1, 2)?;
            let role = string_arg(&args[0], ctx, scope)?.unwrap_or_default();
            // The principal named, else the caller (a user is named after its login in the lab).
            let who = match args.get(1) {
                None => ctx.login.name.clone(),
                Some(arg) => string_arg(arg, ctx, scope)?.unwrap_or_default(),
            };
            let value = match ctx
                .engine
                .is_database_role_member(&who, ctx.database, &role)
            {
                None => Value::Null,
                Some(member) => Value::Int(member as i32),
            };
            Ok((value, SqlType::Int))
        }
        "IS_SRVROLEMEMBER" => {
            arity(name, args, 1, 2)?;
            let role = string_arg(&args[0], ctx, scope)?.unwrap_or_default();
            let who = match args.get(1) {
                None => ctx.login.name.clone(),
                Some(arg) => string_arg(arg, ctx, scope)?.unwrap_or_default(),
            };
            let member = if who.eq_ignore_ascii_case(&ctx.login.name) && ctx.login.sysadmin {
                Some(true)
            } else {
                ctx.engine.is_server_role_member(&who, &role)
            };
            let value = match member {
                None => Value::Null,
                Some(m) => Value::Int(m as i32),
            };
            Ok((value, SqlType::Int))
        }
        // HAS_PERMS_BY_NAME(securable, class, permission): the caller's effective permission
        // (Microsoft Learn, HAS_PERMS_BY_NAME). Classes: NULL/SERVER, DATABASE, OBJECT.
        "HAS_PERMS_BY_NAME" => {
            arity(name, args, 3, 5)?;
            let securable = string_arg(&args[0], ctx, scope)?;
            let class = string_arg(&args[1], ctx, scope)?
                .unwrap_or_else(|| "SERVER".into())
                .to_ascii_uppercase();
            let Some(permission) = string_arg(&args[2], ctx, scope)? else {
                return Ok((Value::Null, SqlType::Int));
            };
            let engine = ctx.engine;
            let login = &ctx.login.name;
            let answer = match class.as_str() {
                "SERVER" => Some(engine.has_server_permission(login, &permission)),
                "DATABASE" => {
                    let db = securable.unwrap_or_else(|| ctx.database.to_string());
                    engine
                        .canonical_database_name(&db)
                        .map(|db| engine.has_database_permission(login, &db, &permission))
                }
                "OBJECT" => {
                    let text = securable.unwrap_or_default();
                    let parts: Vec<String> = text
                        .split('.')
                        .map(|p| {
                            p.trim()
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_string()
                        })
                        .collect();
                    let (db, schema, object) = match parts.as_slice() {
                        [o] => (ctx.database.to_string(), "dbo".to_string(), o.clone()),
                        [s, o] => (ctx.database.to_string(), s.clone(), o.clone()),
                        [d, s, o] => (
                            d.clone(),
                            if s.is_empty() {
                                "dbo".into()
                            } else {
                                s.clone()
                            },
                            o.clone(),
                        ),
                        _ => (String::new(), String::new(), String::new()),
                    };
                    engine.canonical_database_name(&db).map(|db| {
                        engine.may_access_database(login, &db)
                            && engine.has_object_permission(
                                login,
                                &db,
                                &schema,
                                &object,
                                &permission,
                            )
                    })
                }
                _ => None,
            };
            Ok((
                answer.map_or(Value::Null, |a| Value::Int(a as i32)),
                SqlType::Int,
            ))
        }
        "GETDATE" => {
            arity(name, args, 0, 0)?;
            Ok((Value::DateTime(now), SqlType::DateTime))
        }
        "GETUTCDATE" => {
            arity(name, args, 0, 0)?;
            Ok((
                Value::DateTime(chrono::Utc::now().naive_utc()),
                SqlType::DateTime,
            ))
        }
        "SYSDATETIME" => {
            arity(name, args, 0, 0)?;
            Ok((Value::DateTime(now), SqlType::DateTime2(7)))
        }
        "SYSUTCDATETIME" => {
            arity(name, args, 0, 0)?;
            Ok((
                Value::DateTime(chrono::Utc::now().naive_utc()),
                SqlType::DateTime2(7),
            ))
        }
        "ISNULL" => {
            arity(name, args, 2, 2)?;
            let (value, ty) = eval(&args[0], ctx, scope)?;
            if !value.is_null() {
                return Ok((value, ty));
            }
            let (other, other_ty) = eval(&args[1], ctx, scope)?;
            Ok((convert(&other, &other_ty, &ty)?, ty))
        }
        "COUNT" => Err(SqlError::new(
            147,
            15,
            1,
            "An aggregate may not appear in the WHERE clause unless it is in a subquery contained in a HAVING clause or a select list, and the column being aggregated is an outer reference.",
        )),
        _ => Err(SqlError::new(
            195,
            15,
            10,
            format!("'{name}' is not a recognized built-in function name."),
        )),
    }
}

/// The SqlType a CAST target names; Msg 243 for unknown types.
pub fn cast_target(ty: &TypeName) -> Result<SqlType, SqlError> {
    let n = |default: u16| -> Option<u16> {
        match ty.args.first() {
            None => Some(default),
            Some(None) => None,
            Some(Some(n)) => Some((*n).min(8000) as u16),
        }
    };
    Ok(match ty.name.as_str() {
        "nvarchar" | "nchar" => SqlType::NVarChar(n(30).map(|v| v.min(4000))),
        "sysname" => SqlType::NVarChar(Some(128)),
        "varchar" => SqlType::VarChar(n(30)),
        "char" => SqlType::Char(n(30).unwrap_or(30)),
        "varbinary" | "binary" => SqlType::VarBinary(n(30)),
        "int" => SqlType::Int,
        "bigint" => SqlType::BigInt,
        "smallint" => SqlType::SmallInt,
        "tinyint" => SqlType::TinyInt,
        "bit" => SqlType::Bit,
        "real" => SqlType::Real,
        "float" => SqlType::Float,
        "uniqueidentifier" => SqlType::UniqueIdentifier,
        "datetime" => SqlType::DateTime,
        "sql_variant" => SqlType::Variant,
        "datetime2" => SqlType::DateTime2(
            ty.args
                .first()
                .copied()
                .flatten()
                .map_or(7, |s| s.min(7) as u8),
        ),
        "numeric" | "decimal" => {
            let precision = ty
                .args
                .first()
                .copied()
                .flatten()
                .unwrap_or(18)
                .clamp(1, 38) as u8;
            let scale = ty
                .args
                .get(1)
                .copied()
                .flatten()
                .unwrap_or(0)
                .min(precision as u32) as u8;
            SqlType::Numeric { precision, scale }
        }
        // System types the lab has no values for (Microsoft Learn, "Data types"): a lab limit.
        "date" | "time" | "datetimeoffset" | "smalldatetime" | "money" | "smallmoney" | "xml"
        | "text" | "ntext" | "image" | "geography" | "geometry" | "hierarchyid" | "rowversion"
        | "timestamp" => {
            return Err(SqlError::lab(format!(
                "the type {other} is valid T-SQL that the lab SQL Server does not convert to",
                other = ty.name
            )));
        }
        other => return Err(errors::undefined_type(other)),
    })
}

/// The type's name as SQL Server's messages spell it.
pub fn type_name(ty: &SqlType) -> &'static str {
    match ty {
        SqlType::TinyInt => "tinyint",
        SqlType::SmallInt => "smallint",
        SqlType::Int => "int",
        SqlType::BigInt => "bigint",
        SqlType::Bit => "bit",
        SqlType::Real => "real",
        SqlType::Float => "float",
        SqlType::Numeric { .. } => "numeric",
        SqlType::NVarChar(_) => "nvarchar",
        SqlType::VarChar(_) => "varchar",
        SqlType::Char(_) => "char",
        SqlType::VarBinary(_) => "varbinary",
        SqlType::UniqueIdentifier => "uniqueidentifier",
        SqlType::DateTime => "datetime",
        SqlType::DateTime2(_) => "datetime2",
        SqlType::Variant => "sql_variant",
    }
}

fn is_string(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::NVarChar(_) | SqlType::VarChar(_) | SqlType::Char(_)
    )
}

/// A number as (unscaled integer, scale).
fn as_decimal(value: &Value, ty: &SqlType) -> Option<(i128, u8)> {
    match value {
        Value::TinyInt(v) => Some((*v as i128, 0)),
        Value::SmallInt(v) => Some((*v as i128, 0)),
        Value::Int(v) => Some((*v as i128, 0)),
        Value::BigInt(v) => Some((*v as i128, 0)),
        Value::Bit(b) => Some((*b as i128, 0)),
        Value::Numeric(v) => match ty {
            SqlType::Numeric { scale, .. } => Some((*v, *scale)),
            _ => Some((*v, 0)),
        },
        _ => None,
    }
}

fn rescale(value: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        value.checked_mul(10i128.checked_pow((to - from) as u32)?)
    } else {
        let div = 10i128.checked_pow((from - to) as u32)?;
        let q = value / div;
        let r = value % div;
        // round half away from zero, as SQL Server does
        Some(if r.abs() * 2 >= div {
            q + value.signum()
        } else {
            q
        })
    }
}

fn format_decimal(value: i128, scale: u8) -> String {
    if scale == 0 {
        return value.to_string();
    }
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale - digits.len() + 1), digits)
    } else {
        digits
    };
    let (int_part, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int_part}.{frac}", if value < 0 { "-" } else { "" })
}

/// Parses the date/time literals SQL Server accepts in its unambiguous forms.
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    const FORMATS: &[&str] = &[
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y%m%d %H:%M:%S%.f",
    ];
    for format in FORMATS {
        if let Ok(dt) = NaiveDateTime::parse_from_str(text, format) {
            return Some(dt);
        }
    }
    for format in ["%Y-%m-%d", "%Y%m%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(text, format) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

pub fn parse_guid(text: &str) -> Option<Uuid> {
    let t = text.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(t);
    if t.len() != 36 {
        return None;
    }
    Uuid::parse_str(t).ok()
}

fn overflow(to: &SqlType) -> SqlError {
    SqlError::new(
        8115,
        16,
        2,
        format!(
            "Arithmetic overflow error converting expression to data type {}.",
            type_name(to)
        ),
    )
}

/// Converts a value to another type as CAST does.
pub fn convert(value: &Value, from: &SqlType, to: &SqlType) -> Result<Value, SqlError> {
    if let Value::Variant(inner, base) = value {
        return convert(inner, base, to);
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    if to == &SqlType::Variant {
        return Ok(Value::Variant(Box::new(value.clone()), from.clone()));
    }
    let from_name = type_name(from);
    match to {
        SqlType::NVarChar(len) | SqlType::VarChar(len) => {
            let text = match value {
                Value::Str(s) => s.clone(),
                Value::Bit(b) => if *b { "1" } else { "0" }.to_string(),
                Value::Guid(g) => g.hyphenated().to_string().to_uppercase(),
                Value::DateTime(dt) => match from {
                    SqlType::DateTime2(_) => dt.format("%Y-%m-%d %H:%M:%S%.7f").to_string(),
                    _ => dt.format("%b %e %Y %l:%M%p").to_string(),
                },
                Value::Real(f) => f.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bytes(b) => b.iter().map(|c| *c as char).collect(),
                other => {
                    let (v, scale) = as_decimal(other, from).expect("numeric value");
                    format_decimal(v, scale)
                }
            };
            // explicit conversion to a shorter string truncates silently
            Ok(Value::Str(match len {
                Some(n) => text.chars().take(*n as usize).collect(),
                None => text,
            }))
        }
        SqlType::Char(n) => {
            let Value::Str(s) = convert(value, from, &SqlType::VarChar(Some(*n)))? else {
                unreachable!("string")
            };
            Ok(Value::Str(format!("{s:<width$}", width = *n as usize)))
        }
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt | SqlType::Bit => {
            let n: i128 = match value {
                Value::Str(s) => {
                    let t = s.trim();
                    if matches!(to, SqlType::Bit)
                        && (t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false"))
                    {
                        t.eq_ignore_ascii_case("true") as i128
                    } else {
                        t.parse::<i128>()
                            .map_err(|_| errors::conversion_failed(s, from_name, type_name(to)))?
                    }
                }
                Value::Real(f) => f.trunc() as i128,
                Value::Float(f) => f.trunc() as i128,
                other => {
                    let (v, scale) = as_decimal(other, from).ok_or_else(|| clash(from, to))?;
                    rescale(v, scale, 0).ok_or_else(|| overflow(to))?
                }
            };
            match to {
                SqlType::Bit => Ok(Value::Bit(n != 0)),
                SqlType::TinyInt => u8::try_from(n).map(Value::TinyInt).map_err(|_| {
                    SqlError::new(
                        220,
                        16,
                        2,
                        format!("Arithmetic overflow error for data type tinyint, value = {n}."),
                    )
                }),
                SqlType::SmallInt => i16::try_from(n)
                    .map(Value::SmallInt)
                    .map_err(|_| overflow(to)),
                SqlType::Int => i32::try_from(n).map(Value::Int).map_err(|_| overflow(to)),
                _ => i64::try_from(n)
                    .map(Value::BigInt)
                    .map_err(|_| overflow(to)),
            }
        }
        SqlType::Numeric { precision, scale } => {
            let (v, from_scale) = match value {
                Value::Str(s) => {
                    let (v, _, sc) = parse_decimal(s).ok_or_else(|| {
                        SqlError::new(
                            8114,
                            16,
                            5,
                            format!("Error converting data type {from_name} to numeric."),
                        )
                    })?;
                    (v, sc)
                }
                Value::Float(f) => ((f * 10f64.powi(*scale as i32)).round() as i128, *scale),
                Value::Real(f) => (
                    ((*f as f64) * 10f64.powi(*scale as i32)).round() as i128,
                    *scale,
                ),
                other => as_decimal(other, from).ok_or_else(|| clash(from, to))?,
            };
            let scaled = rescale(v, from_scale, *scale).ok_or_else(|| overflow(to))?;
            if scaled.unsigned_abs() >= 10u128.pow(*precision as u32) {
                return Err(overflow(to));
            }
            Ok(Value::Numeric(scaled))
        }
        SqlType::Real | SqlType::Float => {
            let f = match value {
                Value::Str(s) => s.trim().parse::<f64>().map_err(|_| {
                    SqlError::new(
                        8114,
                        16,
                        5,
                        format!("Error converting data type {from_name} to float."),
                    )
                })?,
                Value::Real(f) => *f as f64,
                Value::Float(f) => *f,
                other => {
                    let (v, scale) = as_decimal(other, from).ok_or_else(|| clash(from, to))?;
                    v as f64 / 10f64.powi(scale as i32)
                }
            };
            Ok(if *to == SqlType::Real {
                Value::Real(f as f32)
            } else {
                Value::Float(f)
            })
        }
        SqlType::UniqueIdentifier => match value {
            Value::Guid(g) => Ok(Value::Guid(*g)),
            Value::Str(s) => parse_guid(s)
                .map(Value::Guid)
                .ok_or_else(errors::guid_conversion_failed),
            Value::Bytes(b) if b.len() == 16 => Ok(Value::Guid(Uuid::from_bytes_le(
                b[..].try_into().expect("16 bytes"),
            ))),
            _ => Err(clash(from, to)),
        },
        SqlType::DateTime | SqlType::DateTime2(_) => match value {
            Value::DateTime(dt) => Ok(Value::DateTime(*dt)),
            Value::Str(s) => parse_datetime(s)
                .map(Value::DateTime)
                .ok_or_else(errors::date_conversion_failed),
            _ => Err(clash(from, to)),
        },
        SqlType::VarBinary(len) => {
            let bytes = match value {
                Value::Bytes(b) => b.clone(),
                Value::Str(s) if matches!(from, SqlType::NVarChar(_)) => {
                    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
                }
                Value::Str(s) => crate::tds::types::encode_cp1252(s),
                Value::Guid(g) => g.to_bytes_le().to_vec(),
                Value::Int(v) => v.to_be_bytes().to_vec(),
                Value::BigInt(v) => v.to_be_bytes().to_vec(),
                _ => return Err(clash(from, to)),
            };
            Ok(Value::Bytes(match len {
                Some(n) => bytes.into_iter().take(*n as usize).collect(),
                None => bytes,
            }))
        }
        SqlType::Variant => unreachable!("handled above"),
    }
}

fn clash(from: &SqlType, to: &SqlType) -> SqlError {
    SqlError::new(
        206,
        16,
        2,
        format!(
            "Operand type clash: {} is incompatible with {}",
            type_name(from),
            type_name(to)
        ),
    )
}

/// SQL Server orders uniqueidentifiers by byte groups, last group first.
fn guid_order(a: &Uuid, b: &Uuid) -> Ordering {
    let key = |g: &Uuid| {
        let b = g.as_bytes();
        [
            b[10], b[11], b[12], b[13], b[14], b[15], b[8], b[9], b[6], b[7], b[4], b[5], b[0],
            b[1], b[2], b[3],
        ]
    };
    key(a).cmp(&key(b))
}

/// Text comparison of the default collation: case-insensitive, trailing blanks ignored.
fn collate(a: &str, b: &str) -> Ordering {
    a.trim_end_matches(' ')
        .to_lowercase()
        .cmp(&b.trim_end_matches(' ').to_lowercase())
}

/// Compares two values; `None` when either is NULL (the comparison is unknown).
pub fn compare(
    a: &Value,
    a_ty: &SqlType,
    b: &Value,
    b_ty: &SqlType,
) -> Result<Option<Ordering>, SqlError> {
    if let Value::Variant(inner, base) = a {
        return compare(inner, base, b, b_ty);
    }
    if let Value::Variant(inner, base) = b {
        return compare(a, a_ty, inner, base);
    }
    if a.is_null() || b.is_null() {
        return Ok(None);
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => return Ok(Some(collate(x, y))),
        (Value::Guid(x), Value::Guid(y)) => return Ok(Some(guid_order(x, y))),
        (Value::DateTime(x), Value::DateTime(y)) => return Ok(Some(x.cmp(y))),
        (Value::Bytes(x), Value::Bytes(y)) => return Ok(Some(x.cmp(y))),
        _ => {}
    }
    // a string meets another type: it converts to that type
    if is_string(a_ty) && !is_string(b_ty) {
        let converted = convert(a, a_ty, b_ty)?;
        return compare(&converted, b_ty, b, b_ty);
    }
    if is_string(b_ty) && !is_string(a_ty) {
        let converted = convert(b, b_ty, a_ty)?;
        return compare(a, a_ty, &converted, a_ty);
    }
    let float = |v: &Value| match v {
        Value::Real(f) => Some(*f as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if let (Some((x, xs)), Some((y, ys))) = (as_decimal(a, a_ty), as_decimal(b, b_ty)) {
        let scale = xs.max(ys);
        let (x, y) = (rescale(x, xs, scale), rescale(y, ys, scale));
        if let (Some(x), Some(y)) = (x, y) {
            return Ok(Some(x.cmp(&y)));
        }
    }
    let as_f64 = |v: &Value, ty: &SqlType| {
        float(v).or_else(|| as_decimal(v, ty).map(|(n, s)| n as f64 / 10f64.powi(s as i32)))
    };
    if let (Some(x), Some(y)) = (as_f64(a, a_ty), as_f64(b, b_ty)) {
        return Ok(x.partial_cmp(&y));
    }
    Err(clash(a_ty, b_ty))
}

/// Evaluates a WHERE/ON condition: true, or false/unknown.
pub fn test(
    cond: &Condition,
    ctx: &EvalContext,
    scope: Option<&RowScope>,
) -> Result<bool, SqlError> {
    Ok(truth(cond, ctx, scope)? == Some(true))
}

/// Three-valued logic: Some(true), Some(false) or None (unknown).
fn truth(
    cond: &Condition,
    ctx: &EvalContext,
    scope: Option<&RowScope>,
) -> Result<Option<bool>, SqlError> {
    Ok(match cond {
        Condition::Compare(l, op, r) => {
            let (lv, lt) = eval(l, ctx, scope)?;
            let (rv, rt) = eval(r, ctx, scope)?;
            compare(&lv, &lt, &rv, &rt)?.map(|ord| match op {
                CompareOp::Eq => ord == Ordering::Equal,
                CompareOp::NotEq => ord != Ordering::Equal,
                CompareOp::Lt => ord == Ordering::Less,
                CompareOp::LtEq => ord != Ordering::Greater,
                CompareOp::Gt => ord == Ordering::Greater,
                CompareOp::GtEq => ord != Ordering::Less,
            })
        }
        Condition::IsNull { expr, negated } => {
            let (v, _) = eval(expr, ctx, scope)?;
            let null = matches!(&v, Value::Null)
                || matches!(&v, Value::Variant(inner, _) if inner.is_null());
            Some(null != *negated)
        }
        Condition::And(a, b) => match (truth(a, ctx, scope)?, truth(b, ctx, scope)?) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Condition::Or(a, b) => match (truth(a, ctx, scope)?, truth(b, ctx, scope)?) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Condition::Not(inner) => truth(inner, ctx, scope)?.map(|b| !b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_with_precision_and_scale() {
        assert_eq!(parse_decimal("12.50"), Some((1250, 4, 2)));
        assert_eq!(parse_decimal("-0.5"), Some((-5, 1, 1)));
        assert_eq!(parse_decimal("1.2.3"), None);
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(1250, 2), "12.50");
    }

    #[test]
    fn strings_compare_case_insensitively_ignoring_trailing_blanks() {
        let s = |x: &str| Value::Str(x.into());
        let t = SqlType::NVarChar(Some(10));
        assert_eq!(
            compare(&s("Octopus"), &t, &s("OCTOPUS  "), &t).unwrap(),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(&s("a"), &t, &Value::Null, &t).unwrap(), None);
    }

    #[test]
    fn strings_convert_to_the_other_side() {
        let g = Uuid::new_v4();
        let text = Value::Str(g.to_string().to_uppercase());
        assert_eq!(
            compare(
                &Value::Guid(g),
                &SqlType::UniqueIdentifier,
                &text,
                &SqlType::VarChar(Some(36))
            )
            .unwrap(),
            Some(Ordering::Equal)
        );
        let err = compare(
            &Value::Guid(g),
            &SqlType::UniqueIdentifier,
            &Value::Str("nope".into()),
            &SqlType::VarChar(Some(4)),
        )
        .unwrap_err();
        assert_eq!(err.number, 8169);
        let err = compare(
            &Value::Int(1),
            &SqlType::Int,
            &Value::Str("x".into()),
            &SqlType::VarChar(Some(1)),
        )
        .unwrap_err();
        assert_eq!(err.number, 245);
        assert_eq!(
            err.text,
            "Conversion failed when converting the varchar value 'x' to data type int."
        );
    }

    #[test]
    fn lsn_numerics_compare_exactly() {
        let ty = SqlType::Numeric {
            precision: 25,
            scale: 0,
        };
        let a = Value::Numeric(37_000_000_801_600_001);
        let b = Value::Numeric(37_000_000_801_600_002);
        assert_eq!(compare(&a, &ty, &b, &ty).unwrap(), Some(Ordering::Less));
        assert_eq!(
            compare(
                &a,
                &ty,
                &Value::BigInt(37_000_000_801_600_001),
                &SqlType::BigInt
            )
            .unwrap(),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn casts() {
        let g = Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
        assert_eq!(
            convert(
                &Value::Guid(g),
                &SqlType::UniqueIdentifier,
                &SqlType::NVarChar(Some(36))
            )
            .unwrap(),
            Value::Str("6F9619FF-8B86-D011-B42D-00C04FC964FF".into())
        );
        assert_eq!(
            convert(
                &Value::Str(" 42 ".into()),
                &SqlType::VarChar(Some(4)),
                &SqlType::Int
            )
            .unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            convert(&Value::Int(300), &SqlType::Int, &SqlType::TinyInt)
                .unwrap_err()
                .number,
            220
        );
        assert_eq!(
            convert(
                &Value::Str("abcdef".into()),
                &SqlType::NVarChar(Some(6)),
                &SqlType::NVarChar(Some(3))
            )
            .unwrap(),
            Value::Str("abc".into())
        );
        assert_eq!(
            convert(
                &Value::Numeric(1255),
                &SqlType::Numeric {
                    precision: 4,
                    scale: 2
                },
                &SqlType::Numeric {
                    precision: 3,
                    scale: 1
                }
            )
            .unwrap(),
            Value::Numeric(126)
        );
        let dt = parse_datetime("2024-01-02 03:04:05").unwrap();
        assert_eq!(
            convert(
                &Value::DateTime(dt),
                &SqlType::DateTime,
                &SqlType::VarChar(Some(30))
            )
            .unwrap(),
            Value::Str("Jan  2 2024  3:04AM".into())
        );
        assert!(parse_datetime("not a date").is_none());
        assert_eq!(
            cast_target(&TypeName {
                name: "widget".into(),
                args: vec![]
            })
            .unwrap_err()
            .number,
            243
        );
    }

    #[test]
    fn variant_unwraps_for_conversion() {
        let v = Value::Variant(Box::new(Value::Int(4)), SqlType::Int);
        assert_eq!(
            convert(&v, &SqlType::Variant, &SqlType::NVarChar(Some(10))).unwrap(),
            Value::Str("4".into())
        );
    }
}
