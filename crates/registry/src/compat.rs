//! Compatibility levels: which earlier versions a new schema is checked against, and in which
//! direction.
//!
//! - BACKWARD: a consumer using the new schema reads data written with the latest version.
//! - FORWARD: a consumer using the latest version reads data written with the new schema.
//! - FULL: both.
//! - The `_TRANSITIVE` variants check against every earlier version, not only the latest.
//! - NONE: no check.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::format::{Parsed, can_read};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    pub const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why `new` may not follow `previous` (oldest first, each with its version number) under
/// `level`: empty when it may.
pub fn check(level: Level, new: &Parsed, previous: &[(i32, &Parsed)]) -> Vec<String> {
    if level == Level::None || previous.is_empty() {
        return Vec::new();
    }
    let against: &[(i32, &Parsed)] = if level.transitive() {
        previous
    } else {
        &previous[previous.len() - 1..]
    };
    let mut problems = Vec::new();
    for (version, old) in against.iter().rev() {
        if level.backward() {
            for p in can_read(old, new) {
                problems.push(format!(
                    "BACKWARD: the new schema cannot read data written with version {version}: {p}"
                ));
            }
        }
        if level.forward() {
            for p in can_read(new, old) {
                problems.push(format!(
                    "FORWARD: version {version} cannot read data written with the new schema: {p}"
                ));
            }
        }
    }
    problems
}
