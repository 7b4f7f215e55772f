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
use datafusion::common::{Result, Statistics, exec_err, plan_err};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

/// The column naming a row's source file.
pub const SOURCE_FILE: &str = "_source_file";
/// The column naming a row's line in its source file.
pub const SOURCE_LINE: &str = "_source_line";

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
        let (files, lines) = plain(files, lines)?;
        let (files, lines) = (files.as_string::<i32>(), lines.as_primitive::<Int64Type>());
        for i in 0..lines.len() {
            if lines.is_null(i) {
                return exec_err!("a row without a {SOURCE_LINE}");
            }
            let file = if files.is_valid(i) {
                files.value(i)
            } else {
                ""
            };
            self.insert(file, lines.value(i))?;
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
        let (files, lines) = plain(files, lines)?;
        let (files, lines) = (files.as_string::<i32>(), lines.as_primitive::<Int64Type>());
        let mut keep = Vec::with_capacity(lines.len());
        let mut i = 0;
        // Rows of one file come in long runs: look the file up once a run.
        while i < lines.len() {
            let file = if files.is_valid(i) {
                files.value(i)
            } else {
                ""
            };
            let mut end = i + 1;
            while end < lines.len()
                && files.is_valid(end) == files.is_valid(i)
                && (files.is_null(end) || files.value(end) == file)
            {
                end += 1;
            }
            match self.files.get(file) {
                None => keep.extend(std::iter::repeat_n(true, end - i)),
                Some(bits) => {
                    keep.extend((i..end).map(|r| lines.is_null(r) || !has(bits, lines.value(r))))
                }
            }
            i = end;
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

/// File and line columns as `Utf8` and `Int64`.
fn plain(files: &ArrayRef, lines: &ArrayRef) -> Result<(ArrayRef, ArrayRef)> {
    Ok((
        cast(files, &DataType::Utf8)?,
        cast(lines, &DataType::Int64)?,
    ))
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
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
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
