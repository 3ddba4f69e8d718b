//! WHERE predicates that hold for every row (`true`, `1 = 1`, `id = id`, `… OR 'a' = 'a'`):
//! an UPDATE or DELETE filtered by one has, in effect, no WHERE.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

/// Whether a predicate holds for every row (as far as can be told without the data).
pub(super) fn always_true(expr: &Expr) -> bool {
    match expr {
        Expr::Value(v) => matches!(v.value, Value::Boolean(true)),
        Expr::Nested(e) => always_true(e),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => always_false(expr),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::Or => always_true(left) || always_true(right),
            BinaryOperator::And => always_true(left) && always_true(right),
            BinaryOperator::Eq | BinaryOperator::GtEq | BinaryOperator::LtEq => {
                strip_nesting(left) == strip_nesting(right)
            }
            BinaryOperator::NotEq | BinaryOperator::Gt | BinaryOperator::Lt => {
                match (strip_nesting(left), strip_nesting(right)) {
                    (Expr::Value(a), Expr::Value(b)) => literal_order(&a.value, &b.value)
                        .is_some_and(|o| match op {
                            BinaryOperator::NotEq => o.is_ne(),
                            BinaryOperator::Gt => o.is_gt(),
                            _ => o.is_lt(),
                        }),
                    _ => false,
                }
            }
            _ => false,
        },
        Expr::IsNotNull(e) => matches!(strip_nesting(e), Expr::Value(v) if v.value != Value::Null),
        Expr::IsTrue(e) => always_true(e),
        _ => false,
    }
}

/// Whether the predicate compares two literals somewhere in its boolean structure.
pub(super) fn compares_literals(expr: &Expr) -> bool {
    match expr {
        Expr::Nested(e) | Expr::UnaryOp { expr: e, .. } | Expr::IsNotNull(e) | Expr::IsTrue(e) => {
            compares_literals(e)
        }
        Expr::BinaryOp { left, right, .. } => {
            matches!(
                (strip_nesting(left), strip_nesting(right)),
                (Expr::Value(_), Expr::Value(_))
            ) || compares_literals(left)
                || compares_literals(right)
        }
        _ => false,
    }
}

fn always_false(expr: &Expr) -> bool {
    match expr {
        Expr::Value(v) => matches!(v.value, Value::Boolean(false)),
        Expr::Nested(e) => always_false(e),
        _ => false,
    }
}

fn strip_nesting(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(e) => strip_nesting(e),
        other => other,
    }
}

/// The order of two numeric or string literals.
fn literal_order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(a, _), Value::Number(b, _)) => {
            a.parse::<f64>().ok()?.partial_cmp(&b.parse::<f64>().ok()?)
        }
        (Value::SingleQuotedString(a), Value::SingleQuotedString(b)) => Some(a.cmp(b)),
        _ => None,
    }
}
