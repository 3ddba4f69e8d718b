//! Reading YAML with positions: serde errors become [`PolicyError`]s naming the full key path
//! (`rules[0].match.clas`), and after a structure error the entry holding it is skipped so
//! the rest of the file is still checked.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_saphyr::{Location, SnippetMode};

use super::load::PolicyError;

/// Deserializes `text` (from `file`), pushing every structure error found to `errors`.
/// Returns what could be read once the broken entries were skipped, or `None` when the
/// rest of the file cannot be read.
pub(super) fn parse<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<T> {
    // A structure error stops serde at the first problem. To report the others too, the
    // top-level entry holding the error is blanked out (line numbers stay) and the file is
    // read again.
    let mut source = text.to_string();
    let mut seen = Vec::new();
    for _ in 0..MAX_ERRORS_PER_FILE {
        match serde_saphyr::from_str::<T>(&source) {
            Ok(value) => return Some(value),
            Err(err) => {
                let line = err.location().map(|l| l.line());
                errors.push(yaml_error(file, text, &err));
                let blanked = line
                    .filter(|l| !seen.contains(l))
                    .and_then(|l| blank_entry(&source, l));
                seen.extend(line);
                source = blanked?;
            }
        }
    }
    None
}

/// At most this many structure errors are reported per file.
const MAX_ERRORS_PER_FILE: usize = 20;

/// `text` with the top-level entry (a list item under a top-level key, or a whole top-level
/// block) that holds 1-based `line` replaced by comment lines.
fn blank_entry(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let parsed: Vec<Option<YamlLine<'_>>> = lines.iter().map(|l| yaml_line(l)).collect();
    let at = usize::try_from(line)
        .ok()?
        .checked_sub(1)?
        .min(lines.len().checked_sub(1)?);
    let top = |l: &YamlLine<'_>| l.key_col == 0 && l.dash_col.is_none();
    let parent = (0..=at)
        .rev()
        .find(|&i| parsed[i].as_ref().is_some_and(top))?;
    let dash = parsed[parent + 1..]
        .iter()
        .flatten()
        .find(|l| !top(l))
        .and_then(|l| l.dash_col);
    let start = dash
        .and_then(|d| {
            (parent + 1..=at)
                .rev()
                .find(|&i| parsed[i].as_ref().is_some_and(|l| l.dash_col == Some(d)))
        })
        .unwrap_or(parent);
    let ends_entry = |l: &YamlLine<'_>| match dash {
        Some(d) if start != parent => top(l) || l.dash_col.is_some_and(|x| x <= d),
        _ => top(l),
    };
    let end = (start + 1..lines.len())
        .find(|&i| parsed[i].as_ref().is_some_and(ends_entry))
        .unwrap_or(lines.len());
    let mut out = String::with_capacity(text.len());
    for (i, l) in lines.iter().enumerate() {
        if (start..end).contains(&i) {
            out.push('#');
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    (out != text).then_some(out)
}

/// The path of the list entry whose `name:` is at `name` (`rules[2]`), from the original
/// text (entries blanked out after structure errors still count); `fallback` otherwise.
pub(super) fn entry_key(text: &str, name: &Location, fallback: String) -> String {
    key_path(text, name.line(), "name")
        .strip_suffix(".name")
        .map_or(fallback, str::to_string)
}

/// Turns a YAML/serde error into a policy error with the key and a hint.
fn yaml_error(file: &Path, source: &str, err: &serde_saphyr::Error) -> PolicyError {
    let position = err.location().map(|l| (l.line(), l.column()));
    let options = serde_saphyr::render_options! { snippets: SnippetMode::Off };
    let mut text = err.render_with_options(options);
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    let between_ticks = |s: &str| -> Option<String> {
        let start = s.find('`')? + 1;
        let end = start + s[start..].find('`')?;
        Some(s[start..end].to_string())
    };
    let expected = text
        .find("expected one of ")
        .map(|at| text[at + "expected one of ".len()..].replace('`', ""));
    let (key, message, hint) = if text.contains("unknown field") {
        (
            between_ticks(&text).unwrap_or_default(),
            "unknown key".to_string(),
            expected.map(|e| format!("valid keys here: {e}")),
        )
    } else if text.contains("unknown variant") {
        let line_key = position
            .and_then(|(line, _)| usize::try_from(line).ok()?.checked_sub(1))
            .and_then(|i| source.lines().nth(i))
            .and_then(yaml_line)
            .and_then(|l| l.key.map(str::to_string))
            .unwrap_or_default();
        (
            line_key,
            format!(
                "unknown value `{}`",
                between_ticks(&text).unwrap_or_default()
            ),
            expected.map(|e| format!("valid values: {e}")),
        )
    } else if let Some(field) = text.strip_prefix("missing field ") {
        (
            field.trim_matches('`').to_string(),
            "required key is missing".to_string(),
            Some("add it to the entry above this position".to_string()),
        )
    } else {
        (
            String::new(),
            text,
            Some("fix the YAML at this position; see docs/policy.md for the format".to_string()),
        )
    };
    let key = match (position, key.is_empty()) {
        (Some((line, _)), false) => key_path(source, line, &key),
        _ => key,
    };
    PolicyError {
        file: file.to_path_buf(),
        position,
        key,
        message,
        hint,
    }
}

/// One line of block-style YAML: where its key starts, and its list dash if any.
struct YamlLine<'a> {
    key_col: usize,
    dash_col: Option<usize>,
    key: Option<&'a str>,
}

fn yaml_line(line: &str) -> Option<YamlLine<'_>> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let indent = line.len() - trimmed.len();
    let (dash_col, body, key_col) = match trimmed.strip_prefix('-') {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
            let body = rest.trim_start();
            (Some(indent), body, indent + 1 + (rest.len() - body.len()))
        }
        _ => (None, trimmed, indent),
    };
    let key = body
        .split_once(':')
        .map(|(k, _)| k)
        .filter(|k| !k.is_empty() && !k.contains(['{', '[', ' ', '"', '\'']));
    Some(YamlLine {
        key_col,
        dash_col,
        key,
    })
}

/// The 0-based index of the list item whose dash is on line `at` (column `col`).
fn item_index(lines: &[Option<YamlLine<'_>>], at: usize, col: usize) -> usize {
    let mut index = 0;
    for line in lines[..at].iter().rev().flatten() {
        match line.dash_col {
            Some(d) if d == col => index += 1,
            _ if line.key_col < col || (line.key_col == col && line.dash_col.is_none()) => break,
            _ => {}
        }
    }
    index
}

/// The path to `key` on 1-based `line` of block-style YAML (`rules[0].match.clas`), or
/// `key` alone when the structure cannot be followed (e.g. flow style).
fn key_path(text: &str, line: u64, key: &str) -> String {
    let lines: Vec<Option<YamlLine<'_>>> = text.lines().map(yaml_line).collect();
    let at = usize::try_from(line).ok().and_then(|l| l.checked_sub(1));
    let Some((at, Some(start))) = at.map(|at| (at, lines.get(at).and_then(Option::as_ref))) else {
        return key.to_string();
    };
    if start.key != Some(key) {
        return key.to_string();
    }
    let mut parts = vec![key.to_string()];
    // (column, whether that column holds a list dash) of the node whose parent we seek.
    let mut node = (start.key_col, false);
    if let Some(d) = start.dash_col {
        parts.push(format!("[{}]", item_index(&lines, at, d)));
        node = (d, true);
    }
    for i in (0..at).rev() {
        if node == (0, false) {
            break;
        }
        let Some(l) = &lines[i] else { continue };
        let (col, is_dash) = node;
        if !is_dash && l.dash_col.is_some_and(|d| d + 2 == col) {
            let d = l.dash_col.unwrap_or_default();
            parts.push(format!("[{}]", item_index(&lines, i, d)));
            node = (d, true);
            continue;
        }
        let is_parent = if is_dash {
            l.dash_col != Some(col)
                && (l.key_col < col || (l.key_col == col && l.dash_col.is_none()))
        } else {
            l.key_col < col
        };
        if !is_parent {
            continue;
        }
        let Some(k) = l.key else {
            return key.to_string();
        };
        parts.push(k.to_string());
        node = match l.dash_col {
            Some(d) => {
                parts.push(format!("[{}]", item_index(&lines, i, d)));
                (d, true)
            }
            None => (l.key_col, false),
        };
    }
    parts.reverse();
    let mut out = String::new();
    for part in parts {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(&part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_follow_block_yaml_structure() {
        let yaml = "defaults:\n  unmatched: audit\nrules:\n  - name: a\n    outcome: allow\n  # note\n  - name: b\n    match:\n      kind: human\n      tabel: x\n    outcome: allow\nidentities:\n- name: c\n  kind: human\n- nmae: d\n";
        let cases = [
            (2, "unmatched", "defaults.unmatched"),
            (5, "outcome", "rules[0].outcome"),
            (7, "name", "rules[1].name"),
            (10, "tabel", "rules[1].match.tabel"),
            (11, "outcome", "rules[1].outcome"),
            (14, "kind", "identities[0].kind"),
            (15, "nmae", "identities[1].nmae"),
            (3, "other", "other"),
        ];
        for (line, key, want) in cases {
            assert_eq!(key_path(yaml, line, key), want, "line {line}");
        }
    }
}
