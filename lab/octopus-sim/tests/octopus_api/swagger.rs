//! A small swagger 2.0 validator: enough of the spec ($ref, type, properties, items, enum,
//! additionalProperties, formats date-time/uuid/int32) to check responses against Octopus's own
//! swagger document, and stricter than the spec in one way: a property the schema does not
//! define is a violation.

use std::sync::OnceLock;

use serde_json::{Value, json};

pub struct Swagger {
    doc: Value,
}

/// The swagger document of Octopus 2021.2.4488, as shipped in `tests/data`.
pub fn octopus() -> &'static Swagger {
    static DOC: OnceLock<Swagger> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/octopus-api-swagger-2021.2.json"
        );
        let text = std::fs::read_to_string(path).expect("the swagger document is in tests/data");
        Swagger {
            doc: serde_json::from_str(&text).expect("the swagger document is JSON"),
        }
    })
}

/// Definitions the document gets wrong about the wire, each with its reason.
fn override_for(name: &str) -> Option<Value> {
    match name {
        // NodaTime's LocalDate: the document lists its CLR properties (Calendar, Era, ...), but
        // Octopus's serializer writes an ISO date string.
        "LocalDate" => Some(json!({ "type": "string", "format": "date" })),
        _ => None,
    }
}

impl Swagger {
    /// The schema the document gives for `method path` answering `status` (path relative to the
    /// basePath `/api`), if it gives one.
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Option<Value> {
        let schema = self
            .doc
            .pointer(&format!(
                "/paths/{}/{}/responses/{status}/schema",
                path.replace('~', "~0").replace('/', "~1"),
                method.to_ascii_lowercase()
            ))?
            .clone();
        (schema != json!({})).then_some(schema)
    }

    pub fn definition(&self, name: &str) -> Value {
        json!({ "$ref": format!("#/definitions/{name}") })
    }

    /// Every way `value` breaks `schema`, each as `json-pointer: reason`.
    pub fn violations(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut found = Vec::new();
        self.check(schema, value, "", &mut found);
        found
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference
                    .strip_prefix("#/definitions/")
                    .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
                override_for(name).unwrap_or_else(|| {
                    self.doc["definitions"]
                        .get(name)
                        .unwrap_or_else(|| panic!("no definition {name}"))
                        .clone()
                })
            }
            None => schema.clone(),
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let here = if at.is_empty() { "/" } else { at };
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            found.push(format!("{here}: {value} is not one of {allowed:?}"));
        }
        let kind = schema.get("type").and_then(Value::as_str);
        let kind = kind.or_else(|| schema.get("properties").map(|_| "object"));
        match kind {
            Some("object") => self.check_object(&schema, value, at, found),
            Some("array") => match value.as_array() {
                Some(items) => {
                    if let Some(item_schema) = schema.get("items") {
                        for (i, item) in items.iter().enumerate() {
                            self.check(item_schema, item, &format!("{at}/{i}"), found);
                        }
                    }
                }
                None => found.push(format!("{here}: expected an array, got {value}")),
            },
            Some("string") => match value.as_str() {
                Some(text) => check_format(schema.get("format"), text, here, found),
                None => found.push(format!("{here}: expected a string, got {value}")),
            },
            Some("integer") => {
                let in_range = match schema.get("format").and_then(Value::as_str) {
                    Some("int32") => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    _ => value.is_i64() || value.is_u64(),
                };
                if !in_range {
                    found.push(format!(
                        "{here}: expected an integer ({schema}), got {value}"
                    ));
                }
            }
            Some("number") if !value.is_number() => {
                found.push(format!("{here}: expected a number, got {value}"));
            }
            Some("boolean") if !value.is_boolean() => {
                found.push(format!("{here}: expected a boolean, got {value}"));
            }
            Some("number" | "boolean") => {}
            Some(other) => panic!("unsupported type {other}"),
            // `{}`: anything.
            None => {}
        }
    }

    fn check_object(&self, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
        let here = if at.is_empty() { "/" } else { at };
        let Some(fields) = value.as_object() else {
            found.push(format!("{here}: expected an object, got {value}"));
            return;
        };
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (name, field) in fields {
            let path = format!("{at}/{name}");
            match properties.and_then(|p| p.get(name)) {
                // Octopus writes unset properties as null; swagger 2.0 cannot say so.
                Some(_) if field.is_null() => {}
                Some(property) => self.check(property, field, &path, found),
                None => match additional {
                    Some(Value::Bool(true)) => {}
                    Some(extra) if extra.is_object() => self.check(extra, field, &path, found),
                    _ => found.push(format!("{path}: property not defined by the swagger")),
                },
            }
        }
    }
}

fn check_format(format: Option<&Value>, text: &str, at: &str, found: &mut Vec<String>) {
    let ok = match format.and_then(Value::as_str) {
        // RFC 3339 demands the offset; Octopus always writes one.
        Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        Some("date") => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
        _ => true,
    };
    if !ok {
        found.push(format!("{at}: '{text}' is not a valid {}", format.unwrap()));
    }
}

#[test]
fn the_validator_flags_what_it_should() {
    let swagger = octopus();
    let schema = swagger.definition("TaskResource");
    let good = json!({
        "Id": "ServerTasks-1", "State": "Executing", "QueueTime": "2021-06-01T10:00:00.000+10:00",
        "StartTime": null, "IsCompleted": false, "Links": { "Self": "/api/tasks/ServerTasks-1" },
        "Arguments": { "anything": [1, 2] }
    });
    assert_eq!(swagger.violations(&schema, &good), Vec::<String>::new());
    let bad = json!({
        "Id": 1,
        "State": "Running",
        "QueueTime": "2021-06-01T10:00:00",
        "IsCompleted": "no",
        "Links": { "Self": 3 },
        "Extra": true
    });
    let violations = swagger.violations(&schema, &bad);
    for needle in [
        "/Id",
        "/State",
        "/QueueTime",
        "/IsCompleted",
        "/Links/Self",
        "/Extra",
    ] {
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with(&format!("{needle}:"))),
            "{needle} not flagged in {violations:?}"
        );
    }
    let root = swagger.definition("RootResource");
    assert_eq!(
        swagger
            .violations(&root, &json!({ "InstallationId": "not-a-uuid" }))
            .len(),
        1
    );
    let collection = swagger.definition("TaskResourceCollection");
    assert_eq!(
        swagger
            .violations(
                &collection,
                &json!({ "TotalResults": 5_000_000_000u64, "Items": [{ "Nope": 1 }] })
            )
            .len(),
        2
    );
    assert_eq!(swagger.violations(&schema, &json!([])).len(), 1);
}
