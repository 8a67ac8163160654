//! Naming a migration: its file (`V3__shorten_sessions.sql`) from the
//! slugs of its changes, and the title its header opens with, listing
//! them. Pure functions, no I/O.

use std::cmp::Ordering;

use crate::model::Column;
use crate::render::text::comment;

use super::Change;

/// The slug of a change to dataset `name` whose lines are `whats`:
/// `shorten_x` / `lengthen_x` when only `keep` changed (`keep`: the new
/// keep against the old), `add_c_to_x` / `add_columns_to_x` when only
/// columns were added, else `update_x`.
pub(super) fn dataset_slug(
    name: &str,
    whats: &[String],
    keep: Option<Ordering>,
    added_columns: &[Column],
) -> String {
    let only_columns = whats.iter().all(|w| w.contains(": add column "));
    if let Some(keep) = keep {
        match keep {
            Ordering::Less => format!("shorten_{name}"),
            Ordering::Greater => format!("lengthen_{name}"),
            Ordering::Equal => format!("keep_{name}"),
        }
    } else if only_columns && added_columns.len() == 1 {
        format!("add_{}_to_{name}", added_columns[0].name)
    } else if only_columns {
        format!("add_columns_to_{name}")
    } else {
        format!("update_{name}")
    }
}

/// A file name slug from the changes: one slug, two joined by `_and_`,
/// else `policy_update`; lowercase ASCII, at most 60 characters.
fn slug(changes: &[Change]) -> String {
    let mut slugs: Vec<&str> = Vec::new();
    for c in changes {
        if !slugs.contains(&c.slug.as_str()) {
            slugs.push(&c.slug);
        }
    }
    let name = match slugs.as_slice() {
        [one] => one.to_string(),
        [a, b] => format!("{a}_and_{b}"),
        _ => "policy_update".to_string(),
    };
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(60).collect()
}

/// The file of migration `number` holding `changes`.
pub(super) fn file(number: u32, changes: &[Change]) -> String {
    format!("V{number}__{}.sql", slug(changes))
}

/// The title of later migration `number`: what changed since the one
/// before, one `--   - ` line per change (free text made safe).
pub(super) fn title(number: u32, changes: &[Change]) -> String {
    let mut title = format!(
        "V{number}: what changed in the policy since V{}:",
        number - 1
    );
    for c in changes {
        for line in c.what.split("; ") {
            title.push_str(&format!("\n--   - {}", comment(line)));
        }
    }
    title
}
