//! `pgretain schema`: the policy language as JSON Schema, for editors. The
//! schema is derived from `policy::spec`, the types the parser reads.

use serde::{Serialize, Serializer};

use super::Outcome;

/// `pgretain schema`: the JSON Schema of a policy file.
pub fn schema() -> String {
    crate::policy::spec::json_schema()
}

/// The JSON Schema, pretty-printed with a trailing newline; JSON already,
/// so its JSON form is itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema(pub String);

impl Serialize for Schema {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Outcome for Schema {
    fn text(&self) -> String {
        self.0.clone()
    }

    fn json(&self) -> Result<String, serde_json::Error> {
        Ok(self.0.trim_end().to_string())
    }
}
