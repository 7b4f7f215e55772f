//! Verdicts of the key rules (`unique`, `exists_in`), looked up by row.
//!
//! The key rules are evaluated first over a narrow relation (source file,
//! source line and the key columns). The rows that fail one are kept here
//! as `(file, line) -> (first failing key rule, first line of the key)`,
//! and two scalar functions look them up while the wide rows stream
//! through the row rules once, with no join and no sort of the wide rows.
//!
//! Invariant: `_source_file` and `_source_line` name one input row (true of
//! landed files and `validate_rows` outputs; `sql` outputs must keep it).
//! Memory follows the failing rows (about 50 bytes each), not the input.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Builder, Int64Builder, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The SQL name of the rule lookup: `(file, line) -> rule index or NULL`.
pub(super) const RULE_FN: &str = "__gridata_key_verdict";
/// The SQL name of the first-line lookup: `(file, line) -> line or NULL`.
pub(super) const FIRST_FN: &str = "__gridata_key_first";

/// Failing rows by file, then line.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    by_file: HashMap<String, HashMap<i64, (i32, Option<i64>)>>,
    rows: u64,
}

impl Verdicts {
    /// Adds the rows of a batch of `(file, line, rule, first)` that have a
    /// rule; a row already present keeps its lowest rule.
    pub(super) fn add(&mut self, batch: &RecordBatch) -> Result<(), arrow::error::ArrowError> {
        if batch.column(2).null_count() == batch.num_rows() {
            return Ok(());
        }
        let files = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let lines = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let rules = arrow::compute::cast(batch.column(2), &DataType::Int32)?;
        let firsts = arrow::compute::cast(batch.column(3), &DataType::Int64)?;
        let (lines, rules, firsts) = (
            lines.as_primitive::<Int64Type>(),
            rules.as_primitive::<Int32Type>(),
            firsts.as_primitive::<Int64Type>(),
        );
        for (at, n, file) in crate::run::file_runs(files.as_string::<i32>()) {
            let map = self.by_file.entry(file.to_string()).or_default();
            for i in at..at + n {
                if rules.is_null(i) {
                    continue;
                }
                if lines.is_null(i) {
                    return Err(arrow::error::ArrowError::InvalidArgumentError(format!(
                        "a row of {file} failing rule {} has no _source_line, so it \
                         cannot be told apart from the others",
                        rules.value(i) + 1
                    )));
                }
                let first = firsts.is_valid(i).then(|| firsts.value(i));
                let v = (rules.value(i), first);
                let e = map.entry(lines.value(i)).or_insert_with(|| {
                    self.rows += 1;
                    v
                });
                if v.0 < e.0 {
                    *e = v;
                }
            }
        }
        Ok(())
    }

    /// How many rows failed a key rule.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// The two lookup functions, to register on the session.
    pub(super) fn into_udfs(self) -> [ScalarUDF; 2] {
        let v = Arc::new(self);
        [
            ScalarUDF::new_from_impl(Lookup::new(RULE_FN, v.clone(), false)),
            ScalarUDF::new_from_impl(Lookup::new(FIRST_FN, v, true)),
        ]
    }

    fn get(&self, file: &str) -> Option<&HashMap<i64, (i32, Option<i64>)>> {
        self.by_file.get(file)
    }
}

/// A lookup of [`Verdicts`] by `(file, line)`.
#[derive(Debug)]
struct Lookup {
    name: &'static str,
    verdicts: Arc<Verdicts>,
    first: bool,
    signature: Signature,
}

impl Lookup {
    fn new(name: &'static str, verdicts: Arc<Verdicts>, first: bool) -> Self {
        Self {
            name,
            verdicts,
            first,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    fn lookup(&self, files: &ArrayRef, lines: &ArrayRef) -> DfResult<ArrayRef> {
        let files = arrow::compute::cast(files, &DataType::Utf8)?;
        let lines = arrow::compute::cast(lines, &DataType::Int64)?;
        let lines = lines.as_primitive::<Int64Type>();
        let len = lines.len();
        let mut rules = Int32Builder::with_capacity(len);
        let mut firsts = Int64Builder::with_capacity(len);
        for (at, n, file) in crate::run::file_runs(files.as_string::<i32>()) {
            let Some(map) = self.verdicts.get(file) else {
                rules.append_nulls(n);
                firsts.append_nulls(n);
                continue;
            };
            for i in at..at + n {
                match lines
                    .is_valid(i)
                    .then(|| map.get(&lines.value(i)))
                    .flatten()
                {
                    Some((rule, first)) => {
                        rules.append_value(*rule);
                        firsts.append_option(*first);
                    }
                    None => {
                        rules.append_null();
                        firsts.append_null();
                    }
                }
            }
        }
        Ok(if self.first {
            Arc::new(firsts.finish())
        } else {
            Arc::new(rules.finish())
        })
    }
}

impl PartialEq for Lookup {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.verdicts, &other.verdicts)
    }
}

impl Eq for Lookup {}

impl Hash for Lookup {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        Arc::as_ptr(&self.verdicts).hash(state);
    }
}

impl ScalarUDFImpl for Lookup {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(if self.first {
            DataType::Int64
        } else {
            DataType::Int32
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(self.lookup(&arrays[0], &arrays[1])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(rows: &[(&str, i64, Option<i64>, Option<i64>)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Utf8, false),
            Field::new("l", DataType::Int64, false),
            Field::new("r", DataType::Int64, true),
            Field::new("first", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn looks_up_the_lowest_rule_per_row() {
        let mut v = Verdicts::default();
        v.add(&batch(&[
            ("a.csv", 7, Some(5), None),
            ("a.csv", 9, Some(3), Some(2)),
            ("b.csv", 7, Some(4), None),
        ]))
        .unwrap();
        // The same row again with a lower rule, and a row without one.
        v.add(&batch(&[
            ("a.csv", 7, Some(2), None),
            ("a.csv", 8, None, None),
        ]))
        .unwrap();
        assert_eq!(v.rows(), 3);
        let [rule, first] = v.into_udfs();
        let files: ArrayRef = Arc::new(StringArray::from(vec!["a.csv", "a.csv", "b.csv", "c.csv"]));
        let lines: ArrayRef = Arc::new(Int64Array::from(vec![7, 9, 8, 7]));
        let get = |udf: &ScalarUDF| {
            udf.inner()
                .as_any()
                .downcast_ref::<Lookup>()
                .unwrap()
                .lookup(&files, &lines)
                .unwrap()
        };
        let r = get(&rule);
        let r = r.as_primitive::<Int32Type>();
        assert_eq!(r.iter().collect::<Vec<_>>(), [Some(2), Some(3), None, None]);
        let f = get(&first);
        let f = f.as_primitive::<Int64Type>();
        assert_eq!(f.iter().collect::<Vec<_>>(), [None, Some(2), None, None]);
    }

    #[test]
    fn a_failing_row_without_a_line_is_an_error() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Utf8, false),
            Field::new("l", DataType::Int64, true),
            Field::new("r", DataType::Int64, true),
            Field::new("first", DataType::Int64, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a.csv"])),
                Arc::new(Int64Array::from(vec![None])),
                Arc::new(Int64Array::from(vec![Some(2)])),
                Arc::new(Int64Array::from(vec![None])),
            ],
        )
        .unwrap();
        let e = Verdicts::default().add(&b).unwrap_err().to_string();
        assert!(
            e.contains("a.csv") && e.contains("rule 3") && e.contains("_source_line"),
            "{e}"
        );
    }
}
