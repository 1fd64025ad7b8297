//! The file as a spanned TOML tree, before serde: every syntax error and every unknown key
//! at once (serde would stop at the first), and the key path behind a serde error's span.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::Issue;
use super::raw::{ALL_KEYS, FREE_FORM_TABLES};

/// Parse the document, or return every syntax error.
pub(crate) fn parse(text: &str) -> Result<Spanned<DeTable<'_>>, Vec<Issue>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Ok(doc);
    }
    let mut issues: Vec<Issue> = Vec::new();
    // A set, not a scan of what was kept: thousands of errors must stay linear.
    let mut seen = std::collections::HashSet::new();
    for error in errors {
        if seen.insert((error.span(), error.message().to_owned())) {
            issues.push(Issue::new(error.span(), "", error.message()));
        }
    }
    Err(issues)
}

/// Every key not in `ALL_KEYS`, with the keys allowed at that place.
pub(crate) fn unknown_keys(doc: &DeTable<'_>) -> Vec<Issue> {
    let mut issues = Vec::new();
    check_table(doc, "", "", &mut issues);
    issues
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn has_children(pattern: &str) -> bool {
    let prefix = format!("{pattern}.");
    ALL_KEYS.iter().any(|key| key.starts_with(&prefix))
}

fn check_table(table: &DeTable<'_>, real: &str, pattern: &str, issues: &mut Vec<Issue>) {
    for (key, value) in table.iter() {
        let child_real = join(real, key.get_ref());
        let child_pattern = join(pattern, key.get_ref());
        if !ALL_KEYS.contains(&child_pattern.as_str()) {
            issues.push(Issue::new(
                Some(key.span()),
                child_real,
                unknown_key_message(key.get_ref(), pattern),
            ));
            continue;
        }
        if FREE_FORM_TABLES.contains(&child_pattern.as_str()) {
            continue;
        }
        // Descend only where the schema expects a table or an array of tables; a value of
        // the wrong shape is left to serde, which reports the expected type.
        match value.get_ref() {
            DeValue::Table(inner) if has_children(&child_pattern) => {
                check_table(inner, &child_real, &child_pattern, issues);
            }
            DeValue::Array(items) if has_children(&format!("{child_pattern}[]")) => {
                for (index, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        let item_real = format!("{child_real}[{index}]");
                        check_table(inner, &item_real, &format!("{child_pattern}[]"), issues);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Keys allowed directly under `pattern` ("" is the top level).
fn allowed_keys(pattern: &str) -> Vec<&'static str> {
    ALL_KEYS
        .iter()
        .filter_map(|key| {
            let rest = if pattern.is_empty() {
                Some(*key)
            } else {
                key.strip_prefix(pattern)?.strip_prefix('.')
            };
            rest.filter(|rest| !rest.contains(['.', '[']))
        })
        .collect()
}

fn unknown_key_message(key: &str, pattern: &str) -> String {
    let allowed = allowed_keys(pattern);
    let place = if pattern.is_empty() {
        "at the top level".to_owned()
    } else if let Some(array) = pattern.strip_suffix("[]") {
        format!("in [[{array}]]")
    } else {
        format!("in [{pattern}]")
    };
    let mut message = format!("unknown key \"{key}\" {place}");
    if let Some(close) = closest(key, &allowed) {
        message.push_str(&format!(": did you mean \"{close}\"?"));
    }
    message.push_str(&format!(" (allowed: {})", allowed.join(", ")));
    message
}

/// The allowed key nearest to a typo, if it is near enough to be a plausible suggestion.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|&(distance, candidate)| distance <= 2.max(candidate.len() / 4))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The key path (`servers[1].url`) of the innermost key or value around byte `offset`.
pub(crate) fn path_at(doc: &DeTable<'_>, offset: usize) -> String {
    let mut best: Option<(usize, String)> = None;
    find_path(doc, "", offset, &mut best);
    best.map(|(_, path)| path).unwrap_or_default()
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn consider(span: Range<usize>, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
    let len = span.len();
    // `<=` so that on equal spans the deeper path, visited later, wins.
    if contains(&span, offset) && best.as_ref().is_none_or(|(best_len, _)| len <= *best_len) {
        *best = Some((len, path.to_owned()));
    }
}

fn find_path(table: &DeTable<'_>, real: &str, offset: usize, best: &mut Option<(usize, String)>) {
    for (key, value) in table.iter() {
        let child = join(real, key.get_ref());
        consider(key.span(), &child, offset, best);
        consider(value.span(), &child, offset, best);
        match value.get_ref() {
            DeValue::Table(inner) => find_path(inner, &child, offset, best),
            DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{child}[{index}]");
                    consider(item.span(), &item_path, offset, best);
                    if let DeValue::Table(inner) = item.get_ref() {
                        find_path(inner, &item_path, offset, best);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_key_is_reported_with_the_allowed_ones() {
        let text = "[agent]\ntimezon = \"UTC\"\n[[servers]]\nname = \"a\"\n[[servers]]\napi_key_evn = \"X\"\n[alerts.webhook.x]\n[foo]\n";
        let doc = parse(text).expect("syntax ok");
        let mut issues = unknown_keys(doc.get_ref());
        issues.sort_by_key(|issue| issue.span.clone().map(|span| span.start));
        let paths: Vec<_> = issues.iter().map(|issue| issue.path.as_str()).collect();
        assert_eq!(paths, ["agent.timezon", "servers[1].api_key_evn", "foo"]);
        assert!(
            issues[0].message.contains("did you mean \"timezone\"?"),
            "{}",
            issues[0].message
        );
        assert!(
            issues[1].message.contains("in [[servers]]"),
            "{}",
            issues[1].message
        );
        assert!(issues[1].message.contains("did you mean \"api_key_env\"?"));
        assert!(issues[2].message.contains(
            "(allowed: agent, servers, jobs, quotas, alerts, reports, retention, store)"
        ));
    }

    #[test]
    fn headers_are_free_form() {
        let text = "[[servers]]\n[[alerts.webhook]]\nheaders = { X-Anything = \"v\" }\n";
        let doc = parse(text).expect("syntax ok");
        assert!(unknown_keys(doc.get_ref()).is_empty());
    }

    #[test]
    fn path_at_finds_the_innermost_key() {
        let text = "[[servers]]\nname = \"a\"\n[[servers]]\nname = \"b\"\nurl = 5\n";
        let doc = parse(text).expect("syntax ok");
        let offset = text.find('5').expect("present");
        assert_eq!(path_at(doc.get_ref(), offset), "servers[1].url");
        let header = text.rfind("[[servers]]").expect("present");
        assert_eq!(path_at(doc.get_ref(), header), "servers[1]");
    }

    #[test]
    fn syntax_errors_are_all_reported() {
        let issues = parse("a = \nb = [1,\n").expect_err("bad syntax");
        assert!(issues.len() >= 2, "{issues:?}");
    }
}
