//! Time travel in SQL.
//!
//! Syntax (Spark and BigQuery spellings):
//! - `SELECT * FROM ns.t VERSION AS OF 1234567890` — a snapshot id;
//! - `SELECT * FROM ns.t TIMESTAMP AS OF '2026-11-20 10:00:00'` and
//!   `SELECT * FROM ns.t FOR SYSTEM_TIME AS OF '2026-11-20T10:00:00Z'` — the
//!   snapshot current at that time (UTC unless the text has an offset);
//!   a number is epoch milliseconds.
//!
//! The clause is rewritten, before planning, into the table name
//! `t@v<id>` or `t@ts<ms>`, which [`crate::catalog`] resolves.

use std::ops::ControlFlow;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectNamePart, TableFactor, TableVersion, Value, VisitMut, VisitorMut,
};

use crate::{Error, Result};

/// Parse a point in time: RFC 3339, `YYYY-MM-DD[ HH:MM:SS[.f]]` (UTC), or
/// epoch milliseconds.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d.and_utc().timestamp_millis());
        }
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Some(d.timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

fn literal_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::TypedString(ts) => match &ts.value.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::UnaryOp { op, expr } if op.to_string() == "-" => {
            literal_text(expr).map(|s| format!("-{s}"))
        }
        _ => None,
    }
}

struct Rewriter {
    error: Option<Error>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, version, .. } = tf else {
            return ControlFlow::Continue(());
        };
        let Some(v) = version.take() else {
            return ControlFlow::Continue(());
        };
        let suffix = match &v {
            TableVersion::VersionAsOf(e) => literal_text(e)
                .and_then(|s| s.parse::<i64>().ok())
                .map(|id| format!("@v{id}"))
                .ok_or_else(|| format!("VERSION AS OF needs a snapshot id, got {e}")),
            TableVersion::TimestampAsOf(e) | TableVersion::ForSystemTimeAsOf(e) => literal_text(e)
                .and_then(|s| parse_time_ms(&s))
                .map(|ms| format!("@ts{ms}"))
                .ok_or_else(|| {
                    format!("AS OF needs a timestamp such as '2026-11-20 10:00:00', got {e}")
                }),
            other => Err(format!("unsupported time travel clause: {other}")),
        };
        match (suffix, name.0.last_mut()) {
            (Ok(s), Some(ObjectNamePart::Identifier(id))) => {
                id.value = format!("{}{s}", id.value.to_lowercase());
                id.quote_style = Some('"');
                ControlFlow::Continue(())
            }
            (Err(msg), _) => {
                self.error = Some(Error::Sql(msg));
                ControlFlow::Break(())
            }
            _ => {
                self.error = Some(Error::Sql(format!("cannot time travel on {name}")));
                ControlFlow::Break(())
            }
        }
    }
}

/// Rewrite time-travel clauses in a parsed statement.
pub fn rewrite<T: VisitMut>(stmt: &mut T) -> Result<()> {
    let mut r = Rewriter { error: None };
    let _ = stmt.visit(&mut r);
    match r.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::GridataDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&GridataDialect::default(), sql).unwrap();
        rewrite(&mut stmts[0]).unwrap();
        stmts[0].to_string()
    }

    #[test]
    fn clauses_become_names() {
        assert_eq!(
            rewritten("SELECT * FROM ns.t VERSION AS OF 42"),
            "SELECT * FROM ns.\"t@v42\""
        );
        assert_eq!(
            rewritten("SELECT * FROM ns.t FOR SYSTEM_TIME AS OF '1970-01-01 00:00:01' AS x"),
            "SELECT * FROM ns.\"t@ts1000\" AS x"
        );
        assert_eq!(
            rewritten("SELECT * FROM ns.t TIMESTAMP AS OF '1970-01-01T00:00:02Z'"),
            "SELECT * FROM ns.\"t@ts2000\""
        );
        assert_eq!(
            rewritten("SELECT * FROM ns.t$snapshots"),
            "SELECT * FROM ns.t$snapshots"
        );
    }

    #[test]
    fn bad_version_is_an_error() {
        let mut s = Parser::parse_sql(
            &GridataDialect::default(),
            "SELECT * FROM t TIMESTAMP AS OF 'not a time'",
        )
        .unwrap();
        assert!(rewrite(&mut s[0]).is_err());
    }
}
