//! Compiled rules and how one rule is matched against a statement.
//!
//! Single-valued facts (principal, kind, group, host, database) match when any listed value
//! matches. Conditions over what a statement touches (schemas, tables, columns, classes,
//! commands, functions) depend on the rule's outcome: an `allow`/`audit` rule matches only
//! when the list covers *everything* the statement touches, a `deny`/`require_approval` rule
//! matches when it names *anything* the statement touches. Hiding a dangerous part next to
//! a harmless one therefore never makes a permissive rule apply.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::classify::{Class, ClassSet, Classification};
use super::facts::Facts;
use super::glob::{Glob, any_matches};
use super::identity::{Kind, Principal};
use super::outcome::{Condition, Outcome, RuleTrace, Unmediated};

/// A rule ready to be matched.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) name: Arc<str>,
    pub(super) description: Option<String>,
    pub(super) conditions: RuleConditions,
    pub(super) outcome: Outcome,
    pub(super) unmediated: Option<Unmediated>,
}

/// A rule's conditions; `None` means "any".
#[derive(Debug, Clone, Default)]
pub(super) struct RuleConditions {
    pub(super) principal: Option<Vec<Glob>>,
    pub(super) kind: Option<Vec<Kind>>,
    pub(super) group: Option<Vec<Glob>>,
    pub(super) host: Option<Vec<Glob>>,
    pub(super) database: Option<Vec<Glob>>,
    pub(super) schema: Option<Vec<Glob>>,
    pub(super) table: Option<Vec<Glob>>,
    pub(super) column: Option<Vec<Glob>>,
    pub(super) class: Option<ClassSet>,
    pub(super) command: Option<Vec<String>>,
    pub(super) function: Option<Vec<Glob>>,
    pub(super) has_where: Option<bool>,
    pub(super) has_limit: Option<bool>,
    pub(super) time: Option<TimeWindow>,
}

/// Days of the week and a time of day, at a fixed UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimeWindow {
    /// Bit 0 = Monday … bit 6 = Sunday.
    pub(super) days: u8,
    /// Minutes after midnight, start inclusive, end exclusive; start > end wraps midnight.
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) utc_offset_secs: i64,
}

impl TimeWindow {
    pub(super) fn contains(&self, now: SystemTime) -> bool {
        let unix = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        let local = unix.saturating_add(self.utc_offset_secs);
        let day = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (Monday = 0).
        let weekday = (day + 3).rem_euclid(7);
        let minute = u32::try_from(local.rem_euclid(86_400) / 60).unwrap_or(0);
        let in_time = if self.start <= self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        };
        self.days & (1 << weekday) != 0 && in_time
    }
}

/// Everything a rule is matched against.
pub(super) struct Subject<'a> {
    pub(super) facts: &'a Facts,
    pub(super) principal: &'a Principal,
    pub(super) classification: &'a Classification,
    pub(super) classes: ClassSet,
    pub(super) now: SystemTime,
}

fn single(globs: &Option<Vec<Glob>>, value: Option<&str>) -> bool {
    match globs {
        None => true,
        Some(globs) => value.is_some_and(|v| any_matches(globs, v)),
    }
}

/// Functions SQL calls without parentheses.
const KEYWORD_FUNCTIONS: &[&str] = &[
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "localtime",
    "localtimestamp",
    "session_user",
    "system_user",
    "user",
];

/// `all`: every item matches (allow/audit rules); otherwise any item matches.
fn touched<T>(items: &[T], all: bool, matches: impl Fn(&T) -> bool) -> bool {
    if all {
        items.iter().all(matches)
    } else {
        items.iter().any(matches)
    }
}

fn table_matches(globs: &[Glob], table: &str) -> bool {
    globs.iter().any(|g| {
        if g.as_str().contains('.') {
            if table.contains('.') {
                g.matches(table)
            } else {
                g.matches(&format!(".{table}"))
            }
        } else {
            g.matches(table.rsplit('.').next().unwrap_or(table))
        }
    })
}

impl Rule {
    /// What happens to a matching statement of a session that bypasses the shim.
    pub(super) fn unmediated_effect(&self) -> Unmediated {
        self.unmediated
            .unwrap_or_else(|| Unmediated::for_outcome(&self.outcome))
    }

    /// Matches the rule against a statement; the trace names the first failed condition.
    pub(super) fn check(&self, s: &Subject<'_>) -> RuleTrace {
        RuleTrace {
            rule: Arc::clone(&self.name),
            outcome: self.outcome.name(),
            failed: self.first_failed(s),
        }
    }

    /// Whether the rule's class, command and function conditions let it match a *plain*
    /// statement (no parentheses: no function calls but the SQL keywords that are
    /// functions, `CURRENT_USER` and the like) with these classes and commands; its other
    /// conditions (which tables, columns, WHERE, LIMIT, when) are taken to match.
    pub(super) fn may_match_plain(&self, classes: ClassSet, commands: &[String]) -> bool {
        let c = &self.conditions;
        let all = self.outcome.is_permissive();
        if !all
            && let Some(want) = &c.function
            && !KEYWORD_FUNCTIONS.iter().any(|f| any_matches(want, f))
        {
            return false;
        }
        if let Some(want) = c.class {
            let ok = if all {
                classes.is_subset(want)
            } else {
                classes.intersects(want) || classes.contains(Class::Unknown)
            };
            if !ok {
                return false;
            }
        }
        c.command
            .as_ref()
            .is_none_or(|want| touched(commands, all, |cmd| want.contains(cmd)))
    }

    /// The first failed condition on who runs the statement and where (principal, kind,
    /// group, host, database): what stays the same for a whole session.
    pub(super) fn session_failed(&self, facts: &Facts, principal: &Principal) -> Option<Condition> {
        let c = &self.conditions;
        if !single(&c.principal, Some(&principal.name)) {
            return Some(Condition::Principal);
        }
        if c.kind
            .as_ref()
            .is_some_and(|k| !k.contains(&principal.kind))
        {
            return Some(Condition::Kind);
        }
        if c.group
            .as_ref()
            .is_some_and(|g| !principal.groups.iter().any(|p| any_matches(g, p)))
        {
            return Some(Condition::Group);
        }
        if !single(&c.host, facts.host.as_deref()) {
            return Some(Condition::Host);
        }
        if !single(&c.database, facts.database.as_deref()) {
            return Some(Condition::Database);
        }
        None
    }

    fn first_failed(&self, s: &Subject<'_>) -> Option<Condition> {
        let c = &self.conditions;
        let all = self.outcome.is_permissive();
        let cl = s.classification;
        if let Some(failed) = self.session_failed(s.facts, s.principal) {
            return Some(failed);
        }
        if let Some(want) = c.class {
            let ok = if all {
                s.classes.is_subset(want)
            } else {
                s.classes.intersects(want) || s.classes.contains(Class::Unknown)
            };
            if !ok {
                return Some(Condition::Class);
            }
        }
        if let Some(want) = &c.command
            && !touched(&cl.commands, all, |cmd| want.contains(cmd))
        {
            return Some(Condition::Command);
        }
        if let Some(want) = &c.schema {
            let ok = touched(&cl.schemas, all, |schema| any_matches(want, schema))
                && !(all && cl.unqualified_tables);
            if !ok {
                return Some(Condition::Schema);
            }
        }
        if let Some(want) = &c.table
            && !touched(&cl.tables, all, |t| table_matches(want, t))
        {
            return Some(Condition::Table);
        }
        if let Some(want) = &c.column
            && !touched(&cl.columns, all, |col| any_matches(want, col))
        {
            return Some(Condition::Column);
        }
        if let Some(want) = &c.function
            && !touched(&cl.functions, all, |f| any_matches(want, f))
        {
            return Some(Condition::Function);
        }
        if c.has_where.is_some_and(|w| w != cl.has_where) {
            return Some(Condition::HasWhere);
        }
        if c.has_limit.is_some_and(|l| l != cl.has_limit) {
            return Some(Condition::HasLimit);
        }
        if c.time.is_some_and(|t| !t.contains(s.now)) {
            return Some(Condition::Time);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn time_windows_follow_days_hours_and_offset() {
        // 2026-01-05 was a Monday.
        let monday_10_utc = UNIX_EPOCH + Duration::from_secs(1_767_607_200);
        let weekdays = 0b001_1111;
        let office = TimeWindow {
            days: weekdays,
            start: 9 * 60,
            end: 18 * 60,
            utc_offset_secs: 0,
        };
        assert!(office.contains(monday_10_utc));
        let night = TimeWindow {
            days: 0x7f,
            start: 22 * 60,
            end: 6 * 60,
            utc_offset_secs: 0,
        };
        assert!(!night.contains(monday_10_utc));
        let new_york = TimeWindow {
            utc_offset_secs: -5 * 3600,
            ..night
        };
        assert!(
            new_york.contains(monday_10_utc),
            "05:00 in New York is night"
        );
        let tokyo = TimeWindow {
            utc_offset_secs: 9 * 3600,
            ..night
        };
        assert!(
            !tokyo.contains(monday_10_utc),
            "19:00 in Tokyo is not night yet"
        );
        let sunday_only = TimeWindow {
            days: 1 << 6,
            ..office
        };
        assert!(!sunday_only.contains(monday_10_utc));
    }

    #[test]
    fn qualified_table_globs_need_the_schema() {
        let g = |p: &str| vec![Glob::new(p)];
        assert!(table_matches(&g("orders"), "public.orders"));
        assert!(table_matches(&g("orders"), "orders"));
        assert!(table_matches(&g("payroll.*"), "payroll.salaries"));
        assert!(!table_matches(&g("payroll.*"), "salaries"));
        assert!(table_matches(&g("*.salaries"), "salaries"));
    }
}
