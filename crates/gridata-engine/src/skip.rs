//! Staged rows read without some of their source lines.
//!
//! A row check's accepted rows are its input less the rows it quarantined.
//! Rather than copying every accepted row into a new file, the accepted
//! rows are the input's staged file read through [`SkippedLines`]: per
//! source file, a bitmap of the `_source_line`s to leave out (what Iceberg
//! calls a deletion vector). [`SkipLinesTable`] is such a read as a table.
//!
//! Invariants:
//! - `(_source_file, _source_line)` names at most one row of the base, so
//!   a skipped line removes exactly the row it names.
//! - Rows are only removed, never reordered or changed.
//! - Memory follows the largest line number: one bit per line, per file.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, Result, ScalarValue, Statistics, exec_err, plan_err};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use futures::StreamExt;

/// The column naming a row's source file.
pub const SOURCE_FILE: &str = "_source_file";
/// The column naming a row's line in its source file.
pub const SOURCE_LINE: &str = "_source_line";

/// The type of a `_source_file` added to a staged file's rows at scan
/// time: one dictionary value per batch rather than the label per row.
pub fn source_file_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Schema metadata of a staged file whose rows all come from one source
/// file: that file's label, stored once instead of in a column.
pub const SOURCE_FILE_KEY: &str = "gridata.source_file";

/// A staged Parquet file as a frame. A file labelled by
/// [`SOURCE_FILE_KEY`] gets its `_source_file` column back, as a constant
/// placed before `_source_line`.
///
/// # Errors
/// The file cannot be read.
pub async fn read_staged(ctx: &SessionContext, uri: &str) -> Result<DataFrame> {
    let df = ctx
        .read_parquet(uri, ParquetReadOptions::default().skip_metadata(false))
        .await?;
    let schema = df.schema().clone();
    let Some(label) = schema.metadata().get(SOURCE_FILE_KEY) else {
        return Ok(df);
    };
    if schema.has_column_with_unqualified_name(SOURCE_FILE) {
        return Ok(df);
    }
    let mut cols = Vec::with_capacity(schema.fields().len() + 1);
    for f in schema.fields() {
        if f.name() == SOURCE_LINE {
            cols.push(lit(source_file_value(label)).alias(SOURCE_FILE));
        }
        cols.push(col(Column::from_name(f.name())));
    }
    df.select(cols)
}

/// `label` as a [`source_file_type`] value.
pub fn source_file_value(label: &str) -> ScalarValue {
    ScalarValue::Dictionary(
        Box::new(DataType::Int32),
        Box::new(ScalarValue::Utf8(Some(label.to_string()))),
    )
}

/// Runs of equal values in a `_source_file` column (any string type, or a
/// dictionary of one), as (offset, length, file); a null file is `""`.
/// Rows of one file come in long runs, so work per run costs next to
/// nothing; a dictionary is compared by key, not by text.
///
/// # Errors
/// A column of another type.
pub fn file_runs(files: &dyn Array) -> Result<Vec<(usize, usize, &str)>> {
    fn push<'a>(runs: &mut Vec<(usize, usize, &'a str)>, at: usize, n: usize, f: &'a str) {
        match runs.last_mut() {
            Some((_, len, last)) if *last == f => *len += n,
            _ => runs.push((at, n, f)),
        }
    }
    let mut runs = Vec::new();
    // `NULL AS _source_file`, or a dictionary without values (a join's
    // unmatched side): no row names a file.
    let no_file = files.data_type() == &DataType::Null
        || files
            .as_any_dictionary_opt()
            .is_some_and(|d| d.values().is_empty());
    if no_file {
        if !files.is_empty() {
            push(&mut runs, 0, files.len(), "");
        }
        return Ok(runs);
    }
    if let Some(dict) = files.as_any_dictionary_opt() {
        let value = strings(dict.values().as_ref())?;
        let keys = dict.normalized_keys();
        let mut i = 0;
        while i < keys.len() {
            let valid = files.is_valid(i);
            let mut end = i + 1;
            while end < keys.len() && keys[end] == keys[i] && files.is_valid(end) == valid {
                end += 1;
            }
            let f = if valid { value(keys[i]) } else { None };
            push(&mut runs, i, end - i, f.unwrap_or(""));
            i = end;
        }
    } else {
        let value = strings(files)?;
        for i in 0..files.len() {
            push(&mut runs, i, 1, value(i).unwrap_or(""));
        }
    }
    Ok(runs)
}

/// The text of each row of a string column.
type Strings<'a> = Box<dyn Fn(usize) -> Option<&'a str> + 'a>;

fn strings(a: &dyn Array) -> Result<Strings<'_>> {
    Ok(match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            Box::new(move |i| s.is_valid(i).then(|| s.value(i)))
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            Box::new(move |i| s.is_valid(i).then(|| s.value(i)))
        }
        DataType::Utf8View => {
            let s = a.as_string_view();
            Box::new(move |i| s.is_valid(i).then(|| s.value(i)))
        }
        other => return exec_err!("{SOURCE_FILE} must be text, not {other}"),
    })
}

/// A set of `(source file, line)`: one bitmap of lines per file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SkippedLines {
    files: HashMap<String, Vec<u64>>,
    lines: u64,
}

impl SkippedLines {
    /// Adds `line` of `file`; false when it was already there.
    ///
    /// # Errors
    /// A negative line.
    pub fn insert(&mut self, file: &str, line: i64) -> Result<bool> {
        let Ok(line) = u64::try_from(line) else {
            return exec_err!("{file}: line {line} is negative");
        };
        let bits = match self.files.get_mut(file) {
            Some(b) => b,
            None => self.files.entry(file.to_string()).or_default(),
        };
        let (word, bit) = ((line / 64) as usize, 1u64 << (line % 64));
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let new = bits[word] & bit == 0;
        bits[word] |= bit;
        self.lines += u64::from(new);
        Ok(new)
    }

    /// Adds the lines of each row of a `_source_file` and a `_source_line`
    /// column (files of any string type, lines of any integer type).
    ///
    /// # Errors
    /// Columns of other types, a null line or a negative one.
    pub fn insert_rows(&mut self, files: &ArrayRef, lines: &ArrayRef) -> Result<()> {
        let lines = cast(lines, &DataType::Int64)?;
        let lines = lines.as_primitive::<Int64Type>();
        for (at, n, file) in file_runs(files.as_ref())? {
            for i in at..at + n {
                if lines.is_null(i) {
                    return exec_err!("{file}: a row without a {SOURCE_LINE}");
                }
                self.insert(file, lines.value(i))?;
            }
        }
        Ok(())
    }

    /// Every line of `other` added to this set.
    pub fn union(&mut self, other: &SkippedLines) {
        for (file, theirs) in &other.files {
            let ours = self.files.entry(file.clone()).or_default();
            if ours.len() < theirs.len() {
                ours.resize(theirs.len(), 0);
            }
            for (a, b) in ours.iter_mut().zip(theirs) {
                *a |= b;
            }
        }
        self.lines = self
            .files
            .values()
            .flatten()
            .map(|w| u64::from(w.count_ones()))
            .sum();
    }

    /// Whether `line` of `file` is in the set.
    pub fn contains(&self, file: &str, line: i64) -> bool {
        self.files.get(file).is_some_and(|bits| has(bits, line))
    }

    /// How many lines the set holds.
    pub fn len(&self) -> u64 {
        self.lines
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// For each row, whether it is kept (its line is not in the set).
    fn keep(&self, files: &ArrayRef, lines: &ArrayRef) -> Result<BooleanArray> {
        let lines = cast(lines, &DataType::Int64)?;
        let lines = lines.as_primitive::<Int64Type>();
        let mut keep = Vec::with_capacity(lines.len());
        // The file is looked up once a run.
        for (at, n, file) in file_runs(files.as_ref())? {
            match self.files.get(file) {
                None => keep.extend(std::iter::repeat_n(true, n)),
                Some(bits) => keep
                    .extend((at..at + n).map(|r| lines.is_null(r) || !has(bits, lines.value(r)))),
            }
        }
        Ok(BooleanArray::from(keep))
    }
}

/// Whether the bitmap `bits` holds `line`.
fn has(bits: &[u64], line: i64) -> bool {
    u64::try_from(line).is_ok_and(|line| {
        bits.get((line / 64) as usize)
            .is_some_and(|w| w & (1 << (line % 64)) != 0)
    })
}

/// A table read without the rows of some source lines.
#[derive(Debug)]
pub struct SkipLinesTable {
    base: Arc<dyn TableProvider>,
    skipped: Arc<SkippedLines>,
    file: usize,
    line: usize,
}

impl SkipLinesTable {
    /// `base` without the rows whose `(_source_file, _source_line)` is in
    /// `skipped`.
    ///
    /// # Errors
    /// `base` has no `_source_file` or `_source_line` column.
    pub fn try_new(base: Arc<dyn TableProvider>, skipped: Arc<SkippedLines>) -> Result<Self> {
        let schema = base.schema();
        let (Ok(file), Ok(line)) = (schema.index_of(SOURCE_FILE), schema.index_of(SOURCE_LINE))
        else {
            return plan_err!("rows can only be skipped by {SOURCE_FILE} and {SOURCE_LINE}");
        };
        Ok(Self {
            base,
            skipped,
            file,
            line,
        })
    }

    /// The lines left out.
    pub fn skipped(&self) -> &Arc<SkippedLines> {
        &self.skipped
    }

    /// The table read in full.
    pub fn base(&self) -> &Arc<dyn TableProvider> {
        &self.base
    }
}

#[async_trait]
impl TableProvider for SkipLinesTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.base.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The base is read with the file and line columns too; skipping
        // removes rows, so no limit is passed down.
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.base.schema().fields().len()).collect(),
        };
        let mut read = wanted.clone();
        for c in [self.file, self.line] {
            if !read.contains(&c) {
                read.push(c);
            }
        }
        let input = self.base.scan(state, Some(&read), &[], None).await?;
        let at = |c: usize| read.iter().position(|r| *r == c).expect("read");
        SkipLinesExec::try_new(
            input,
            Arc::clone(&self.skipped),
            (at(self.file), at(self.line)),
            (0..wanted.len()).collect(),
        )
        .map(|e| Arc::new(e) as _)
    }
}

/// Drops the rows whose source line is in a [`SkippedLines`], then keeps
/// the columns `output` of its input.
#[derive(Debug)]
pub struct SkipLinesExec {
    input: Arc<dyn ExecutionPlan>,
    skipped: Arc<SkippedLines>,
    /// Indices of the file and line columns in the input.
    keys: (usize, usize),
    output: Vec<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl SkipLinesExec {
    fn try_new(
        input: Arc<dyn ExecutionPlan>,
        skipped: Arc<SkippedLines>,
        keys: (usize, usize),
        output: Vec<usize>,
    ) -> Result<Self> {
        let schema = Arc::new(input.schema().project(&output)?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        Ok(Self {
            input,
            skipped,
            keys,
            output,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The share of the input's rows that are kept, by the statistics.
    fn kept_share(&self) -> Option<f64> {
        let stats = self.input.partition_statistics(None).ok()?;
        let rows = *stats.num_rows.get_value()?;
        (rows > 0).then(|| 1.0 - (self.skipped.len() as f64 / rows as f64).min(1.0))
    }
}

impl DisplayAs for SkipLinesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SkipLinesExec: skipped={}", self.skipped.len())
    }
}

impl ExecutionPlan for SkipLinesExec {
    fn name(&self) -> &'static str {
        "SkipLinesExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::try_new(
            children.swap_remove(0),
            Arc::clone(&self.skipped),
            self.keys,
            self.output.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let skipped = Arc::clone(&self.skipped);
        let (file, line) = self.keys;
        let output = self.output.clone();
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let stream = input.map(move |batch| {
            let batch = batch?;
            let timer = metrics.elapsed_compute().timer();
            let kept = if skipped.is_empty() {
                batch.project(&output)?
            } else {
                let keep = skipped.keep(batch.column(file), batch.column(line))?;
                filter_record_batch(&batch.project(&output)?, &keep)?
            };
            timer.done();
            Ok(kept.record_output(&metrics))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        let stats = self.input.partition_statistics(partition)?;
        let share = self.kept_share().unwrap_or(1.0);
        let mut stats = stats.project(Some(&self.output));
        stats.num_rows = match stats.num_rows {
            Precision::Exact(n) | Precision::Inexact(n) => {
                Precision::Inexact((n as f64 * share).round() as usize)
            }
            Precision::Absent => Precision::Absent,
        };
        stats.total_byte_size = stats.total_byte_size.with_estimated_selectivity(share);
        stats.column_statistics = stats
            .column_statistics
            .into_iter()
            .map(|c| c.to_inexact())
            .collect();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    };
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn table() -> Arc<dyn TableProvider> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Utf8, true),
            Field::new(SOURCE_FILE, DataType::Utf8, false),
            Field::new(SOURCE_LINE, DataType::Int64, false),
        ]));
        let batch = |v: Vec<&str>, f: Vec<&str>, l: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(v)),
                    Arc::new(StringArray::from(f)),
                    Arc::new(Int64Array::from(l)),
                ],
            )
            .unwrap()
        };
        Arc::new(
            MemTable::try_new(
                schema.clone(),
                vec![
                    vec![batch(
                        vec!["a", "b", "c", "d"],
                        vec!["x", "x", "y", "y"],
                        vec![2, 3, 2, 3],
                    )],
                    vec![batch(vec!["e", "f"], vec!["x", "y"], vec![200, 4])],
                ],
            )
            .unwrap(),
        )
    }

    #[test]
    fn file_runs_read_plain_and_dictionary_columns() {
        let plain = StringArray::from(vec![Some("a"), Some("a"), None, Some("b"), Some("b")]);
        assert_eq!(
            file_runs(&plain).unwrap(),
            [(0, 2, "a"), (2, 1, ""), (3, 2, "b")]
        );
        // Keys 0 and 2 both name "a": one run, found by text.
        let dict = DictionaryArray::<Int32Type>::new(
            Int32Array::from(vec![Some(0), Some(2), Some(1), None, Some(1)]),
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
        );
        assert_eq!(
            file_runs(&dict).unwrap(),
            [(0, 2, "a"), (2, 1, "b"), (3, 1, ""), (4, 1, "b")]
        );
        assert!(file_runs(&Int64Array::from(vec![1])).is_err());
        let none = datafusion::arrow::array::NullArray::new(2);
        assert_eq!(file_runs(&none).unwrap(), [(0, 2, "")]);
        // A join's unmatched side: a dictionary without values.
        let nulls = datafusion::arrow::array::new_null_array(&source_file_type(), 3);
        assert_eq!(file_runs(&nulls).unwrap(), [(0, 3, "")]);
        let empty = datafusion::arrow::array::new_empty_array(&source_file_type());
        assert!(file_runs(&empty).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_labelled_staged_file_reads_back_its_source_file() {
        use datafusion::parquet::arrow::ArrowWriter;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("landed.parquet");
        let label = "file:///raw/orders.csv";
        let schema = Arc::new(Schema::new_with_metadata(
            vec![
                Field::new("v", DataType::Utf8, true),
                Field::new(SOURCE_LINE, DataType::Int64, false),
            ],
            HashMap::from([(SOURCE_FILE_KEY.to_string(), label.to_string())]),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Int64Array::from(vec![2, 3, 4])),
            ],
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let ctx = SessionContext::new();
        let df = read_staged(&ctx, path.to_str().unwrap()).await.unwrap();
        let names: Vec<&str> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["v", SOURCE_FILE, SOURCE_LINE]);
        assert_eq!(df.schema().field(1).data_type(), &source_file_type());

        let mut s = SkippedLines::default();
        s.insert(label, 3).unwrap();
        let t = SkipLinesTable::try_new(df.into_view(), Arc::new(s)).unwrap();
        ctx.register_table("t", Arc::new(t)).unwrap();
        let batches = ctx
            .sql("SELECT v, _source_file FROM t ORDER BY v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let b = &batches[0];
        assert_eq!(b.num_rows(), 2);
        assert_eq!(
            file_runs(b.column(1)).unwrap(),
            [(0, 2, label)],
            "every kept row names the file"
        );
    }

    #[test]
    fn lines_are_kept_per_file() {
        let mut s = SkippedLines::default();
        assert!(s.insert("x", 3).unwrap());
        assert!(!s.insert("x", 3).unwrap());
        assert!(s.insert("y", 700).unwrap());
        assert!(s.insert("x", 64).unwrap());
        assert!(s.insert("x", -1).is_err());
        assert_eq!(s.len(), 3);
        assert!(s.contains("x", 3) && s.contains("x", 64) && s.contains("y", 700));
        assert!(!s.contains("y", 3) && !s.contains("x", 2) && !s.contains("z", 3));
        assert!(!s.contains("x", 1 << 40) && !s.contains("x", -3));

        let mut t = SkippedLines::default();
        t.insert("x", 3).unwrap();
        t.insert("x", 1000).unwrap();
        t.insert("z", 0).unwrap();
        s.union(&t);
        assert_eq!(s.len(), 5);
        assert!(s.contains("x", 1000) && s.contains("z", 0) && s.contains("y", 700));
    }

    #[tokio::test]
    async fn skipped_rows_are_left_out_of_every_projection() {
        let mut s = SkippedLines::default();
        s.insert("x", 3).unwrap();
        s.insert("y", 2).unwrap();
        s.insert("x", 200).unwrap();
        s.insert("x", 4).unwrap(); // no such row
        let t = SkipLinesTable::try_new(table(), Arc::new(s)).unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(t)).unwrap();
        let rows = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                let mut out: Vec<String> = batches
                    .iter()
                    .flat_map(|b| {
                        let c = cast(b.column(0), &DataType::Utf8).unwrap();
                        let c = c.as_string::<i32>();
                        (0..c.len())
                            .map(|i| c.value(i).to_string())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                out.sort();
                out
            }
        };
        assert_eq!(rows("SELECT v FROM t").await, ["a", "d", "f"]);
        assert_eq!(rows("SELECT _source_line FROM t").await, ["2", "3", "4"]);
        assert_eq!(rows("SELECT COUNT(*) FROM t").await, ["3"]);
        assert_eq!(
            rows("SELECT v || _source_file FROM t WHERE v <> 'a'").await,
            ["dy", "fy"]
        );
    }

    #[tokio::test]
    async fn statistics_count_the_kept_rows() {
        let mut s = SkippedLines::default();
        s.insert("x", 3).unwrap();
        s.insert("y", 2).unwrap();
        let t = SkipLinesTable::try_new(table(), Arc::new(s)).unwrap();
        let ctx = SessionContext::new();
        let plan = t
            .scan(&ctx.state(), Some(&vec![0]), &[], None)
            .await
            .unwrap();
        assert_eq!(plan.schema().fields().len(), 1);
        let rows = plan.partition_statistics(None).unwrap().num_rows;
        // MemTable counts its 6 rows; 2 are skipped.
        assert_eq!(rows.get_value().copied(), Some(4));
    }

    #[test]
    fn a_base_without_source_lines_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)]));
        let base = Arc::new(MemTable::try_new(schema, vec![vec![]]).unwrap());
        let err = SkipLinesTable::try_new(base, Arc::default()).unwrap_err();
        assert!(err.to_string().contains(SOURCE_LINE), "{err}");
    }
}
