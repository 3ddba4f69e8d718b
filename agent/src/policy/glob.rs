//! Glob patterns for names in policy files: `*` matches any run of characters, `?` one
//! byte (one ASCII character); everything else matches itself (case-sensitive).

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    literal: bool,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_string(),
            literal: !pattern.contains(['*', '?']),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        if self.literal {
            return self.pattern == text;
        }
        let p = self.pattern.as_bytes();
        let t = text.as_bytes();
        let (mut pi, mut ti) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                backtrack = Some((pi, ti));
                pi += 1;
            } else if let Some((star, matched)) = backtrack {
                pi = star + 1;
                ti = matched + 1;
                backtrack = Some((star, matched + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == b'*')
    }
}

/// Whether any glob in `globs` matches `text`.
pub fn any_matches(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|g| g.matches(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_wildcards_and_literals() {
        let cases = [
            ("orders", "orders", true),
            ("orders", "Orders", false),
            ("payroll.*", "payroll.salaries", true),
            ("payroll.*", "public.payroll", false),
            ("*.salaries", ".salaries", true),
            ("claude*", "claude-code", true),
            ("*agent*", "my-agent-1", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                want,
                "{pattern} vs {text}"
            );
        }
    }
}
