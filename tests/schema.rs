//! `docs/policy.schema.json` (what editors validate policy files against,
//! see the `yaml-language-server` line at the top of `policies/chatbot.yaml`)
//! is the committed output of `pgretain schema`: it must not drift from the
//! types the checker deserializes, and it must reject what they reject.

use serde_json::Value;

const COMMITTED: &str = include_str!("../docs/policy.schema.json");

fn schema() -> Value {
    serde_json::from_str(&pgretain::cmd::schema::schema())
        .expect("pgretain::cmd::schema::schema() is JSON")
}

/// Follow a local `$ref` (`#/$defs/Name`).
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("local $ref");
            &root["$defs"][name]
        }
        None => node,
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn committed_schema_is_current() {
    assert!(
        COMMITTED == pgretain::cmd::schema::schema(),
        "docs/policy.schema.json is out of date; regenerate it with\n\n    cargo run -- schema > docs/policy.schema.json\n"
    );
}

#[test]
fn schema_describes_a_policy_file() {
    let root = schema();
    assert_eq!(root["type"], "object");
    assert_eq!(
        root["additionalProperties"],
        Value::Bool(false),
        "unknown top-level keys are errors"
    );
    let props = root["properties"]
        .as_object()
        .expect("top-level properties");
    for key in [
        "version",
        "schedule",
        "environments",
        "datasets",
        "overrides",
        "holds",
        "access",
        "run_log_keep",
        "subjects",
        "engine",
    ] {
        assert!(props.contains_key(key), "top level lacks `{key}`");
    }
    assert_eq!(props.len(), 10, "{:?}", props.keys());
    // `subjects`: name → a non-empty mapping of dataset → column.
    let subjects = &props["subjects"];
    assert_eq!(subjects["type"], "object");
    assert_eq!(
        subjects["propertyNames"]["pattern"],
        "^[a-z][a-z0-9_]{0,39}$"
    );
    let subject = &subjects["additionalProperties"];
    assert_eq!(subject["type"], "object");
    assert_eq!(subject["minProperties"], 1);
    assert_eq!(subject["additionalProperties"]["type"], "string");
    // `access` is a closed mapping that requires its owner.
    let access = resolve(&root, &props["access"]["anyOf"][0]);
    assert_eq!(access["additionalProperties"], Value::Bool(false));
    assert_eq!(strings(&access["required"]), ["owner"]);
    assert_eq!(strings(&root["required"]), ["version"]);
    assert_eq!(root["properties"]["version"]["minimum"], 1);
    assert_eq!(root["properties"]["version"]["maximum"], 1);
}

#[test]
fn dataset_definition_is_closed_and_requires_the_essentials() {
    let root = schema();
    let datasets = &root["properties"]["datasets"];
    assert_eq!(datasets["type"], "object");
    assert_eq!(
        datasets["propertyNames"]["pattern"], "^[a-z][a-z0-9_]{0,39}$",
        "dataset names"
    );
    let ds = resolve(&root, &datasets["additionalProperties"]);
    assert_eq!(ds["type"], "object");
    assert_eq!(
        ds["additionalProperties"],
        Value::Bool(false),
        "deny_unknown_fields must show as additionalProperties: false on the dataset"
    );
    let mut required = strings(&ds["required"]);
    required.sort_unstable();
    assert_eq!(required, ["description", "keep", "table", "time"]);
    for key in [
        "description",
        "owner",
        "legal_basis",
        "table",
        "columns",
        "time",
        "tenant",
        "environment",
        "keep",
        "min_keep",
        "max_keep",
        "partition",
        "on_expiry",
        "archive",
        "sliding",
        "changes_apply_to",
        "erase_by",
        "sensitive",
    ] {
        assert!(
            ds["properties"].get(key).is_some(),
            "dataset schema lacks `{key}`"
        );
    }
    // Every nested mapping is closed too.
    for (name, def) in root["$defs"].as_object().expect("$defs") {
        if def["type"] == "object" {
            assert_eq!(
                def["additionalProperties"],
                Value::Bool(false),
                "`{name}` accepts unknown keys"
            );
        }
    }
}

#[test]
fn overrides_and_holds_are_lists_of_closed_mappings() {
    let root = schema();
    for (key, required) in [("overrides", vec!["keep"]), ("holds", vec!["reason"])] {
        let list = &root["properties"][key];
        assert_eq!(list["type"], "array", "`{key}`");
        let item = resolve(&root, &list["items"]);
        assert_eq!(item["type"], "object", "`{key}` items");
        assert_eq!(item["additionalProperties"], Value::Bool(false), "`{key}`");
        assert_eq!(strings(&item["required"]), required, "`{key}`");
    }
    let hold = resolve(&root, &root["properties"]["holds"]["items"]);
    assert_eq!(hold["properties"]["datasets"]["items"]["type"], "string");
}

/// The patterns agree with the checker on the values that matter.
#[test]
fn patterns_reject_what_the_checker_rejects() {
    let root = schema();
    let ds = resolve(
        &root,
        &root["properties"]["datasets"]["additionalProperties"],
    );
    let duration = ds["properties"]["keep"]["pattern"]
        .as_str()
        .expect("keep has a pattern");
    let table = ds["properties"]["table"]["pattern"]
        .as_str()
        .expect("table has a pattern");
    let over = resolve(&root, &root["properties"]["overrides"]["items"]);
    assert_eq!(
        over["properties"]["keep"]["additionalProperties"]["pattern"], duration,
        "override retentions are durations"
    );
    // No regex engine among the dependencies: check the pattern's text.
    assert!(
        duration.contains("[1-9]"),
        "zero is not a duration: {duration}"
    );
    for unit in ["hour", "day", "week", "month", "year"] {
        assert!(duration.contains(unit), "{duration} lacks {unit}");
    }
    assert!(!duration.contains("minute"), "{duration}");
    assert!(
        table.contains(r"\."),
        "a table is schema-qualified: {table}"
    );
    assert!(!table.contains("A-Z"), "identifiers are lowercase: {table}");
    let hold = resolve(&root, &root["properties"]["holds"]["items"]);
    assert_eq!(
        hold["properties"]["until"]["pattern"],
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
    );
    let on_expiry = resolve(&root, &root["$defs"]["OnExpiry"]);
    assert_eq!(strings(&on_expiry["enum"]), ["delete", "archive"]);
}
