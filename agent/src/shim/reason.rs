//! Requester justification: a leading `/* dbward-reason: … */` comment on a statement, or a
//! session-wide `SET dbward.reason = '…'` (cleared by `RESET dbward.reason`).

/// The reason in a leading `/* dbward-reason: … */` comment, if the statement has one.
pub fn leading_reason(sql: &str) -> Option<String> {
    let rest = sql.trim_start().strip_prefix("/*")?;
    let end = rest.find("*/")?;
    let inner = rest[..end].trim();
    let (key, value) = inner.split_once(':')?;
    if !key.trim().eq_ignore_ascii_case("dbward-reason") {
        return None;
    }
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let s = s.trim_start();
    let head = s.get(..kw.len())?;
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    let rest = &s[kw.len()..];
    match rest.chars().next() {
        Some(c) if c.is_alphanumeric() || c == '_' => None,
        _ => Some(rest),
    }
}

/// How a statement changes the session's reason: `Some(Some(r))` for
/// `SET dbward.reason = 'r'`, `Some(None)` for `RESET dbward.reason` (or an empty value),
/// `None` when it does not touch it.
pub fn session_reason_change(sql: &str) -> Option<Option<String>> {
    let sql = sql.trim().trim_end_matches(';').trim_end();
    if let Some(rest) = strip_keyword(sql, "reset") {
        return strip_keyword(rest, "dbward.reason")
            .filter(|r| r.trim().is_empty())
            .map(|_| None);
    }
    let rest = strip_keyword(sql, "set")?;
    let rest = strip_keyword(rest, "session").unwrap_or(rest);
    let rest = strip_keyword(rest, "dbward.reason")?.trim_start();
    let rest = rest
        .strip_prefix('=')
        .or_else(|| strip_keyword(rest, "to"))?
        .trim();
    let literal = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    if literal.replace("''", "").contains('\'') {
        return None;
    }
    let value = literal.replace("''", "'");
    Some((!value.trim().is_empty()).then(|| value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_comment_gives_the_reason() {
        let cases = [
            (
                "/* dbward-reason: INC-42 cleanup */ DELETE FROM t",
                Some("INC-42 cleanup"),
            ),
            ("  /*DBWARD-REASON:x*/select 1", Some("x")),
            ("/* dbward-reason: */ DELETE FROM t", None),
            ("/* other: y */ DELETE FROM t", None),
            ("DELETE FROM t /* dbward-reason: late */", None),
            ("/* dbward-reason: unterminated", None),
        ];
        for (sql, want) in cases {
            assert_eq!(leading_reason(sql).as_deref(), want, "{sql}");
        }
    }

    #[test]
    fn set_and_reset_change_the_session_reason() {
        let cases: &[(&str, Option<Option<&str>>)] = &[
            (
                "SET dbward.reason = 'quarterly export'",
                Some(Some("quarterly export")),
            ),
            (
                "set session dbward.reason to 'it''s fine';",
                Some(Some("it's fine")),
            ),
            ("SET dbward.reason = ''", Some(None)),
            ("RESET dbward.reason", Some(None)),
            ("SET dbward.reasonable = 'x'", None),
            ("SET search_path = 'x'", None),
            ("SET dbward.reason = 'a'; DROP TABLE t; SELECT 'b'", None),
            ("SELECT 'SET dbward.reason = ''x'''", None),
        ];
        for (sql, want) in cases {
            let got = session_reason_change(sql);
            assert_eq!(got.as_ref().map(|o| o.as_deref()), *want, "{sql}");
        }
    }
}
