//! Statement fingerprints (literals, comments, case and spacing normalised away) and the
//! bounded LRU cache of classifications keyed by them.
//!
//! The fingerprint is the full normalised text, not a hash of it, so two statements share
//! a cache entry only when they differ in nothing but string/number literal values,
//! comments, whitespace and the case of unquoted words. Dollar-quoted strings (DO and
//! function bodies) and quoted identifiers are kept verbatim. A classification that
//! depended on a literal's value is never cached (see [`Classification::cacheable`]).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use super::{Classification, Classifier, PreparedStatements};

/// Statements longer than this are classified without the cache.
pub const MAX_CACHED_LEN: usize = 16 * 1024;

/// Returns the fingerprint of `sql`, or `None` when it is too long or its quoting is
/// unterminated (such text is always classified afresh).
pub fn fingerprint(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    if b.len() > MAX_CACHED_LEN {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut space = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            space = true;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(b, i)?;
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(b' ');
        }
        space = false;
        match c {
            b'\'' => {
                i = skip_string(b, i, false)?;
                out.push(b'?');
            }
            b'"' => {
                let end = skip_quoted_identifier(b, i)?;
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b'$' => {
                let end = dollar_token_end(b, i)?;
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b'0'..=b'9' => {
                i = skip_number(b, i);
                out.push(b'?');
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = skip_number(b, i);
                out.push(b'?');
            }
            c if is_word_start(c) => {
                let start = i;
                while i < b.len() && is_word_char(b[i]) {
                    i += 1;
                }
                out.extend(b[start..i].iter().map(u8::to_ascii_lowercase));
                let prefix = &b[start..i];
                if b.get(i) == Some(&b'\'') && prefix.len() == 1 {
                    let escapes = prefix[0].eq_ignore_ascii_case(&b'e');
                    i = skip_string(b, i, escapes)?;
                    out.push(b'?');
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Skips a (possibly nested) block comment starting at `i`; `None` if unterminated.
fn skip_block_comment(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Skips a single-quoted string starting at the quote `i` (`''` escapes a quote; with
/// `escapes`, as in `E'…'`, so does a backslash).
fn skip_string(b: &[u8], mut i: usize, escapes: bool) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' if escapes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_quoted_identifier(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        if b[i] == b'"' {
            if b.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The end of a `$n` parameter or a whole dollar-quoted string starting at `i`.
fn dollar_token_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(u8::is_ascii_digit) {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        return Some(j);
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return Some(i + 1);
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let close = b[body..].windows(tag.len()).position(|w| w == tag)?;
    Some(body + close + tag.len())
}

fn skip_number(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// A classifier with a bounded LRU cache of classifications by fingerprint.
#[derive(Debug)]
pub struct CachedClassifier {
    classifier: Box<dyn Classifier>,
    cache: Mutex<LruCache<String, Arc<Classification>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CachedClassifier {
    /// Wraps `classifier` with a cache of at most `capacity` entries (at least one).
    pub fn new(classifier: Box<dyn Classifier>, capacity: usize) -> CachedClassifier {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        CachedClassifier {
            classifier,
            cache: Mutex::new(LruCache::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The wrapped classifier.
    pub fn classifier(&self) -> &dyn Classifier {
        self.classifier.as_ref()
    }

    /// Classifies `sql`, from the cache when an equivalent statement was seen before.
    pub fn classify(&self, sql: &str, prepared: &dyn PreparedStatements) -> Arc<Classification> {
        let key = fingerprint(sql);
        if let Some(key) = &key {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hit) = cache.get(key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Arc::clone(hit);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let classification = Arc::new(self.classifier.classify(sql, prepared));
        if let Some(key) = key
            && classification.cacheable
            && classification.parse_error.is_none()
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.put(key, Arc::clone(&classification));
        }
        classification
    }

    /// Classifies `sql` without looking at or filling the cache.
    pub fn classify_uncached(
        &self,
        sql: &str,
        prepared: &dyn PreparedStatements,
    ) -> Classification {
        self.classifier.classify(sql, prepared)
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::postgres::PostgresClassifier;
    use super::super::{Class, NoPrepared};
    use super::*;

    #[test]
    fn fingerprints_ignore_literals_comments_case_and_spacing() {
        let same = [
            (
                "SELECT * FROM t WHERE id = 1",
                "select  *\nfrom T where ID = 42 -- x",
            ),
            ("SELECT 'a'", "SELECT 'it''s'"),
            ("SELECT E'\\''", "select e'x'"),
            ("SELECT /* c /* nested */ */ 1.5e3", "SELECT 7"),
        ];
        for (a, b) in same {
            assert_eq!(fingerprint(a), fingerprint(b), "{a} vs {b}");
        }
        let different = [
            ("SELECT 1", "SELECT 1 FROM t"),
            ("SELECT \"A\"", "SELECT \"a\""),
            ("DO $$BEGIN NULL; END$$", "DO $$BEGIN DELETE FROM t; END$$"),
            ("SELECT $1", "SELECT $2"),
            ("SELECT 1 - -1", "SELECT 1 --1"),
            ("SELECT a-/**/-b", "SELECT a--b"),
            ("COPY t TO STDOUT", "COPY t TO PROGRAM 'x'"),
        ];
        for (a, b) in different {
            assert_ne!(fingerprint(a), fingerprint(b), "{a} vs {b}");
        }
    }

    #[test]
    fn unterminated_quoting_has_no_fingerprint() {
        for sql in ["SELECT 'abc", "SELECT \"abc", "DO $$ BEGIN", "SELECT /* x"] {
            assert_eq!(fingerprint(sql), None, "{sql}");
        }
    }

    #[test]
    fn cache_serves_equivalent_statements_and_skips_literal_dependent_ones() {
        let cached = CachedClassifier::new(Box::new(PostgresClassifier), 16);
        assert_eq!(
            cached
                .classify("SELECT * FROM t WHERE id = 1", &NoPrepared)
                .class,
            Class::Read
        );
        assert_eq!(
            cached
                .classify("select * from t where id = 2", &NoPrepared)
                .class,
            Class::Read
        );
        assert_eq!(cached.stats(), (1, 1));
        assert_eq!(
            cached.classify("DO 'BEGIN NULL; END'", &NoPrepared).class,
            Class::Session
        );
        assert_eq!(
            cached
                .classify("DO 'BEGIN DROP TABLE t; END'", &NoPrepared)
                .class,
            Class::Ddl
        );
        assert_eq!(
            cached
                .classify("SELECT set_config('work_mem', '1', false)", &NoPrepared)
                .class,
            Class::Read
        );
        assert_eq!(
            cached
                .classify("SELECT set_config('role', 'x', false)", &NoPrepared)
                .class,
            Class::Admin
        );
        assert!(
            cached
                .classify("DELETE FROM t WHERE 1 = 2", &NoPrepared)
                .has_where
        );
        assert!(
            !cached
                .classify("DELETE FROM t WHERE 1 = 1", &NoPrepared)
                .has_where
        );
    }
}
