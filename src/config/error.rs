//! Configuration problems: where (file, line, column, key path) and what would be valid.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigProblem {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters), with `line`.
    pub column: Option<usize>,
    /// Key path such as `servers[1].api_key_env`; empty for file-level problems.
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one configuration file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.problems))]
pub struct ConfigErrors {
    pub problems: Vec<ConfigProblem>,
}

fn display_lines(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A problem or warning before it is placed in the file: a byte span from toml.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub span: Option<Range<usize>>,
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(
        span: Option<Range<usize>>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Issue {
            span,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Turns byte spans of one file into lines and columns.
pub(crate) struct Locator<'a> {
    lines: LineIndex<'a>,
    file: &'a Path,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str, file: &'a Path) -> Self {
        Locator {
            lines: LineIndex::new(text),
            file,
        }
    }

    pub fn problem(&self, issue: Issue) -> ConfigProblem {
        let (line, column) = match issue.span {
            Some(span) => {
                let (line, column) = self.lines.line_column(span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        ConfigProblem {
            file: self.file.to_path_buf(),
            line,
            column,
            path: issue.path,
            message: issue.message,
        }
    }

    /// Problems in file order (problems without a place last), as `ConfigErrors`.
    pub fn errors(&self, mut issues: Vec<Issue>) -> ConfigErrors {
        issues.sort_by_key(|issue| issue.span.as_ref().map_or(usize::MAX, |span| span.start));
        ConfigErrors {
            problems: issues
                .into_iter()
                .map(|issue| self.problem(issue))
                .collect(),
        }
    }
}

/// Where each line of a text starts, so that placing thousands of problems stays linear
/// (scanning from the top for each one made 16 000 problems take 15 s).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the first character of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        // The last line starting at or before the offset.
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }
}

/// 1-based line and column (in characters) of a byte offset.
#[cfg(test)]
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_column(offset)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_chars() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_has_file_line_column_path_message() {
        let problem = ConfigProblem {
            file: PathBuf::from("/etc/keywarden/agent.toml"),
            line: Some(12),
            column: Some(7),
            path: "servers[0].timeout".into(),
            message: "invalid duration".into(),
        };
        assert_eq!(
            problem.to_string(),
            "/etc/keywarden/agent.toml:12:7: servers[0].timeout: invalid duration"
        );
        let errors = ConfigErrors {
            problems: vec![
                problem.clone(),
                ConfigProblem {
                    line: None,
                    column: None,
                    path: String::new(),
                    ..problem
                },
            ],
        };
        assert_eq!(
            errors.to_string(),
            "/etc/keywarden/agent.toml:12:7: servers[0].timeout: invalid duration\n\
             /etc/keywarden/agent.toml: invalid duration"
        );
    }
}
