//! Reads the classification corpus (`tests/data/policy/corpus/*.sql`): a line
//! `-- expect: …` followed by the statement text up to the next `-- expect:` line. Shared
//! (with `#[path]`) by the corpus test, the SELECT fast path's tests and the policy benchmark.

use std::path::Path;

/// One statement of the corpus.
#[allow(
    dead_code,
    reason = "the benchmark and the fast path's tests read only `sql`"
)]
pub struct Entry {
    /// File name, e.g. `dml.sql`.
    pub file: String,
    /// Line of its `-- expect:` header (1-based).
    pub line: usize,
    /// What follows `-- expect:` on that line.
    pub expect: String,
    /// The statement text, trimmed.
    pub sql: String,
}

/// Every entry, files in name order.
pub fn entries() -> Vec<Entry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/policy/corpus");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus directory")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    paths.sort();
    let mut entries = Vec::new();
    for path in paths {
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("corpus file");
        let mut current: Option<Entry> = None;
        for (i, line) in text.lines().enumerate() {
            if let Some(expect) = line.strip_prefix("-- expect:") {
                entries.extend(current.take());
                current = Some(Entry {
                    file: file.clone(),
                    line: i + 1,
                    expect: expect.to_owned(),
                    sql: String::new(),
                });
            } else if let Some(entry) = current.as_mut() {
                entry.sql.push_str(line);
                entry.sql.push('\n');
            }
        }
        entries.extend(current);
    }
    for entry in &mut entries {
        entry.sql = entry.sql.trim().to_string();
    }
    entries
}
