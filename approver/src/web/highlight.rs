//! SQL syntax highlighting for the web UI: HTML-escaped text with keywords, strings,
//! numbers and comments wrapped in `<span class=…>` (pure, no I/O).

const KEYWORDS: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "AS",
    "BEGIN",
    "BY",
    "CASCADE",
    "COLUMN",
    "COMMIT",
    "COPY",
    "CREATE",
    "DATABASE",
    "DELETE",
    "DISTINCT",
    "DROP",
    "EXECUTE",
    "EXISTS",
    "FROM",
    "FUNCTION",
    "GRANT",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTO",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PRIVILEGES",
    "RETURNING",
    "REVOKE",
    "ROLE",
    "ROLLBACK",
    "SCHEMA",
    "SELECT",
    "SET",
    "TABLE",
    "TO",
    "TRUNCATE",
    "UNION",
    "UPDATE",
    "USING",
    "VACUUM",
    "VALUES",
    "WHERE",
    "WITH",
];

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn span(class: &str, text: &str) -> String {
    format!("<span class=\"{class}\">{}</span>", escape(text))
}

/// Highlights SQL as HTML.
pub fn sql(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let take = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            out.push_str(&span("com", &take(i, end)));
            i = end;
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            out.push_str(&span("com", &take(i, end)));
            i = end;
        } else if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() {
                if chars[j] == '\'' {
                    if chars.get(j + 1) == Some(&'\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            out.push_str(&span("str", &take(i, end)));
            i = end;
        } else if c.is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            let end = chars[i..]
                .iter()
                .position(|c| !(c.is_ascii_digit() || *c == '.'))
                .map_or(chars.len(), |p| i + p);
            out.push_str(&span("num", &take(i, end)));
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let end = chars[i..]
                .iter()
                .position(|c| !(c.is_alphanumeric() || *c == '_'))
                .map_or(chars.len(), |p| i + p);
            let word = take(i, end);
            if KEYWORDS.contains(&word.to_ascii_uppercase().as_str()) {
                out.push_str(&span("kw", &word));
            } else {
                out.push_str(&escape(&word));
            }
            i = end;
        } else {
            out.push_str(&escape(&c.to_string()));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_tokens_are_classified_and_everything_is_escaped() {
        let cases = [
            (
                "select 1",
                r#"<span class="kw">select</span> <span class="num">1</span>"#,
            ),
            (
                "DELETE FROM t1",
                r#"<span class="kw">DELETE</span> <span class="kw">FROM</span> t1"#,
            ),
            (
                "x = 'a''b<'",
                r#"x = <span class="str">&#39;a&#39;&#39;b&lt;&#39;</span>"#,
            ),
            (
                "-- drop <all>\nSELECT",
                "<span class=\"com\">-- drop &lt;all&gt;</span>\n<span class=\"kw\">SELECT</span>",
            ),
            ("/* a */b", r#"<span class="com">/* a */</span>b"#),
            ("a<b&c", "a&lt;b&amp;c"),
            ("'open", r#"<span class="str">&#39;open</span>"#),
            ("\"q\"", "&quot;q&quot;"),
        ];
        for (input, want) in cases {
            assert_eq!(sql(input), want, "input {input:?}");
        }
    }

    #[test]
    fn script_injection_in_statements_is_inert() {
        let html = sql("SELECT '<script>alert(1)</script>'");
        assert!(!html.contains("<script>"), "{html}");
    }
}
