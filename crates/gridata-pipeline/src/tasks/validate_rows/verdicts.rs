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
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, Int32Builder, Int64Builder, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use gridata_engine::skip::file_runs;

/// The SQL name of the rule lookup: `(file, line) -> rule index or NULL`.
pub(super) const RULE_FN: &str = "__gridata_key_verdict";
/// The SQL name of the first-line lookup: `(file, line) -> line or NULL`.
pub(super) const FIRST_FN: &str = "__gridata_key_first";
/// The SQL name of `file -> small integer`, so that the key rules sort and
/// spill four bytes a row for the file rather than its path.
pub(super) const FILE_ID_FN: &str = "__gridata_file_id";

/// Source files numbered in the order they are first seen.
#[derive(Debug, Default)]
pub(super) struct FileIds {
    inner: Mutex<(HashMap<String, i32>, Vec<String>)>,
}

impl FileIds {
    fn ids(&self, files: &dyn Array) -> DfResult<arrow::array::Int32Array> {
        let mut inner = self.inner.lock().expect("file ids");
        let mut out = Int32Builder::with_capacity(files.len());
        for (_, n, f) in file_runs(files)? {
            let id = match inner.0.get(f) {
                Some(id) => *id,
                None => {
                    let id = inner.1.len() as i32;
                    inner.0.insert(f.to_string(), id);
                    inner.1.push(f.to_string());
                    id
                }
            };
            out.append_value_n(id, n);
        }
        Ok(out.finish())
    }

    fn names(&self, ids: &arrow::array::Int32Array) -> arrow::array::StringArray {
        let inner = self.inner.lock().expect("file ids");
        ids.iter()
            .map(|id| id.and_then(|i| inner.1.get(i as usize)).map(String::as_str))
            .collect()
    }

    /// The numbering as a SQL function.
    pub(super) fn udf(self: &Arc<Self>) -> ScalarUDF {
        ScalarUDF::new_from_impl(FileId {
            ids: self.clone(),
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

#[derive(Debug)]
struct FileId {
    ids: Arc<FileIds>,
    signature: Signature,
}

impl PartialEq for FileId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids)
    }
}

impl Eq for FileId {}

impl Hash for FileId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.ids).hash(state);
    }
}

impl ScalarUDFImpl for FileId {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        FILE_ID_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let files = ColumnarValue::values_to_arrays(&args.args)?;
        let ids: ArrayRef = Arc::new(self.ids.ids(files[0].as_ref())?);
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&ids, 0)?)
        } else {
            ColumnarValue::Array(ids)
        })
    }
}

/// Failing rows by file, then line.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    by_file: HashMap<String, HashMap<i64, (i32, Option<i64>)>>,
    rows: u64,
}

impl Verdicts {
    /// Adds the rows of a batch of `(file, line, rule, first)` that have a
    /// rule; a row already present keeps its lowest rule. A file is its
    /// path, or its number in `ids`.
    pub(super) fn add(
        &mut self,
        batch: &RecordBatch,
        ids: &FileIds,
    ) -> Result<(), arrow::error::ArrowError> {
        if batch.column(2).null_count() == batch.num_rows() {
            return Ok(());
        }
        let files: ArrayRef = if batch.column(0).data_type().is_integer() {
            let n = arrow::compute::cast(batch.column(0), &DataType::Int32)?;
            Arc::new(ids.names(n.as_primitive::<Int32Type>()))
        } else {
            batch.column(0).clone()
        };
        let lines = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let rules = arrow::compute::cast(batch.column(2), &DataType::Int32)?;
        let firsts = arrow::compute::cast(batch.column(3), &DataType::Int64)?;
        let (lines, rules, firsts) = (
            lines.as_primitive::<Int64Type>(),
            rules.as_primitive::<Int32Type>(),
            firsts.as_primitive::<Int64Type>(),
        );
        let runs = file_runs(files.as_ref())
            .map_err(|e| arrow::error::ArrowError::InvalidArgumentError(e.to_string()))?;
        for (at, n, file) in runs {
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
        let lines = arrow::compute::cast(lines, &DataType::Int64)?;
        let lines = lines.as_primitive::<Int64Type>();
        let len = lines.len();
        let mut rules = Int32Builder::with_capacity(len);
        let mut firsts = Int64Builder::with_capacity(len);
        for (at, n, file) in file_runs(files.as_ref())? {
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
        let ids = FileIds::default();
        let mut v = Verdicts::default();
        v.add(
            &batch(&[
                ("a.csv", 7, Some(5), None),
                ("a.csv", 9, Some(3), Some(2)),
                ("b.csv", 7, Some(4), None),
            ]),
            &ids,
        )
        .unwrap();
        // The same row again with a lower rule, and a row without one.
        v.add(
            &batch(&[("a.csv", 7, Some(2), None), ("a.csv", 8, None, None)]),
            &ids,
        )
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
        let e = Verdicts::default()
            .add(&b, &FileIds::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.csv") && e.contains("rule 3") && e.contains("_source_line"),
            "{e}"
        );
    }

    #[test]
    fn numbered_files_are_named_back() {
        let ids = Arc::new(FileIds::default());
        let files = StringArray::from(vec!["b.csv", "b.csv", "a.csv", "b.csv"]);
        let n = ids.ids(&files).unwrap();
        assert_eq!(n.values().to_vec(), vec![0, 0, 1, 0]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Int32, false),
            Field::new("l", DataType::Int64, false),
            Field::new("r", DataType::Int64, true),
            Field::new("first", DataType::Int64, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(n),
                Arc::new(Int64Array::from(vec![2, 3, 2, 4])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(1), None])),
                Arc::new(Int64Array::from(vec![None::<i64>; 4])),
            ],
        )
        .unwrap();
        let mut v = Verdicts::default();
        v.add(&b, &ids).unwrap();
        assert_eq!(v.rows(), 2);
        assert!(v.get("a.csv").unwrap().contains_key(&2));
        assert!(v.get("b.csv").unwrap().contains_key(&2));
    }
}
