//! Grace hash join: a hash join whose inputs are partitioned to disk first.
//!
//! DataFusion 53's hash join holds its whole build side in memory. Under a
//! memory limit, [`GraceHashJoinExec`] runs a large join in two phases:
//!
//! 1. Every row of the build side, then of the probe side, is hashed on the
//!    join keys and written to one of `buckets` spill files for its side.
//!    Rows with equal keys land in the same bucket on both sides.
//! 2. Each output partition joins its share of the buckets one at a time,
//!    each with an ordinary single-partition `HashJoinExec` over that
//!    bucket's two spill files. The side that turned out smaller is hashed.
//!
//! Invariants:
//! - The output has the template hash join's schema, and the same rows for
//!   every join type it is given (it is never given mark or null-aware
//!   joins, or a join with a fetch). A null key hashes like any value, so
//!   unmatched rows of outer and anti joins are kept.
//! - A bucket's build side that holds more than `cap` bytes (a skewed key)
//!   is joined by a sort-merge join over its spill files, which spills, so
//!   memory stays bounded. A join with a filter has no such fallback: its
//!   bucket is hashed, within the pool's limit.
//! - The bucket hash uses seeds of its own, so it is independent of the
//!   hash join's hash inside a bucket.
//! - Phase 1 runs once for all output partitions. Each bucket is joined
//!   once: its files move into that join, whose readers let go of them as
//!   they open them, so the disk is freed as buckets finish, not with the
//!   plan. Running a partition that owns a bucket again is an error, never
//!   a silently empty result.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use ahash::RandomState;
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{BatchCoalescer, SortOptions, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::execution::disk_manager::RefCountedTempFile;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, SortMergeJoinExec};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, SpillMetrics,
};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PhysicalExpr, PlanProperties, SpillManager,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

/// Seeds of the bucket hash ("GRACE"), unlike the hash join's own.
const SEEDS: (u64, u64, u64, u64) = (0x4752, 0x4143, 0x45, 0x6a6f696e);

/// A hash join that partitions both inputs to disk by key, then joins one
/// bucket at a time.
#[derive(Debug, Clone)]
pub(crate) struct GraceHashJoinExec {
    /// The join each bucket runs (`CollectLeft`), over the whole inputs.
    template: Arc<HashJoinExec>,
    buckets: usize,
    /// What one bucket's build side may hold before it is sort-merged.
    cap: usize,
    /// How each side (left, right) is partitioned when it aggregates by
    /// the join keys: see [`Regroup`].
    regroup: (Option<Arc<Regroup>>, Option<Arc<Regroup>>),
    properties: Arc<PlanProperties>,
    partitioned: Arc<OnceCell<Result<Arc<Partitioned>, Arc<DataFusionError>>>>,
    metrics: ExecutionPlanMetricsSet,
}

type BucketFiles = (Vec<RefCountedTempFile>, Vec<RefCountedTempFile>);

/// The spill files of one side's bucket, from every input partition.
#[derive(Debug, Default, Clone)]
struct Bucket {
    files: Vec<RefCountedTempFile>,
    rows: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Partitioned {
    left: Vec<Bucket>,
    right: Vec<Bucket>,
    /// Each bucket's (left, right) files, until its join takes them.
    files: Vec<std::sync::Mutex<Option<BucketFiles>>>,
    left_spill: SpillManager,
    right_spill: SpillManager,
}

impl GraceHashJoinExec {
    /// `join` (any partition mode) as a grace hash join over `buckets`
    /// buckets with `partitions` output partitions.
    pub(crate) fn try_new(
        join: &HashJoinExec,
        buckets: usize,
        partitions: usize,
        cap: usize,
    ) -> Result<Self> {
        let template = Arc::new(
            join.builder()
                .with_partition_mode(PartitionMode::CollectLeft)
                .reset_state()
                .build()?,
        );
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(template.schema()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        let (left_keys, right_keys): (Vec<_>, Vec<_>) = template
            .on()
            .iter()
            .map(|(l, r)| (Arc::clone(l), Arc::clone(r)))
            .unzip();
        let regroup = (
            Regroup::find(template.left(), &left_keys).map(Arc::new),
            Regroup::find(template.right(), &right_keys).map(Arc::new),
        );
        Ok(Self {
            template,
            buckets: buckets.max(1),
            cap,
            regroup,
            properties,
            partitioned: Arc::default(),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    fn left(&self) -> &Arc<dyn ExecutionPlan> {
        self.template.left()
    }

    fn right(&self) -> &Arc<dyn ExecutionPlan> {
        self.template.right()
    }

    /// Phase 1: both sides written to their buckets.
    async fn partition(&self, context: &Arc<TaskContext>) -> Result<Arc<Partitioned>> {
        let time = MetricBuilder::new(&self.metrics).subset_time("partition_time", 0);
        let _timer = time.timer();
        let spill = |plan: &Arc<dyn ExecutionPlan>| {
            SpillManager::new(
                context.runtime_env(),
                SpillMetrics::new(&self.metrics, 0),
                plan.schema(),
            )
            .with_compression_type(
                context
                    .session_config()
                    .options()
                    .execution
                    .spill_compression,
            )
        };
        let (left_keys, right_keys): (Vec<_>, Vec<_>) = self
            .template
            .on()
            .iter()
            .map(|(l, r)| (Arc::clone(l), Arc::clone(r)))
            .unzip();
        // A side that aggregates by the keys is partitioned before its
        // aggregate (see `Regroup`).
        let rows =
            |side: &Arc<dyn ExecutionPlan>, keys, regroup: &Option<Arc<Regroup>>| match regroup {
                Some(r) => (Arc::clone(&r.input), r.keys.clone()),
                None => (Arc::clone(side), keys),
            };
        let (left_rows, left_keys) = rows(self.left(), left_keys, &self.regroup.0);
        let (right_rows, right_keys) = rows(self.right(), right_keys, &self.regroup.1);
        let left_spill = spill(&left_rows);
        let right_spill = spill(&right_rows);
        let mut left = self
            .partition_side(&left_rows, left_keys, &left_spill, context)
            .await?;
        let mut right = self
            .partition_side(&right_rows, right_keys, &right_spill, context)
            .await?;
        let files = left
            .iter_mut()
            .zip(&mut right)
            .map(|(l, r)| {
                let both = (std::mem::take(&mut l.files), std::mem::take(&mut r.files));
                std::sync::Mutex::new(Some(both))
            })
            .collect();
        Ok(Arc::new(Partitioned {
            left,
            right,
            files,
            left_spill,
            right_spill,
        }))
    }

    async fn partition_side(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        spill: &SpillManager,
        context: &Arc<TaskContext>,
    ) -> Result<Vec<Bucket>> {
        let mut tasks = tokio::task::JoinSet::new();
        for p in 0..plan.output_partitioning().partition_count() {
            let stream = plan.execute(p, Arc::clone(context))?;
            let splitter = Splitter {
                keys: keys.clone(),
                buckets: self.buckets,
                spill: spill.clone(),
                batch_size: context.session_config().batch_size(),
                buffer: self.cap / 4,
            };
            let reservation = MemoryConsumer::new(format!("GraceHashJoin[{p}]"))
                .with_can_spill(true)
                .register(context.memory_pool());
            tasks.spawn(splitter.run(stream, reservation));
        }
        let mut buckets = vec![Bucket::default(); self.buckets];
        while let Some(done) = tasks.join_next().await {
            let part = done.map_err(|e| DataFusionError::External(Box::new(e)))??;
            for (all, b) in buckets.iter_mut().zip(part) {
                all.files.extend(b.files);
                all.rows += b.rows;
                all.bytes += b.bytes;
            }
        }
        Ok(buckets)
    }

    /// Phase 2 for one bucket: a join over its spill files.
    fn join_bucket(
        &self,
        parts: &Partitioned,
        b: usize,
        context: &Arc<TaskContext>,
    ) -> Result<Option<SendableRecordBatchStream>> {
        let (left, right) = (&parts.left[b], &parts.right[b]);
        // Taken, so the files are deleted as soon as this bucket is joined.
        let (left_files, right_files) = parts.files[b]
            .lock()
            .expect("bucket files")
            .take()
            .ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "GraceHashJoinExec: bucket {b} was joined already (a partition runs once)"
                ))
            })?;
        if produces_nothing(self.template.join_type(), left.rows == 0, right.rows == 0) {
            return Ok(None);
        }
        let scan = |files, spill: &SpillManager, regroup: &Option<Arc<Regroup>>| {
            let rows: Arc<dyn ExecutionPlan> = Arc::new(SpillScanExec::new(files, spill.clone()));
            match regroup {
                Some(r) => r.over(rows),
                None => Ok(rows),
            }
        };
        let left_scan = scan(left_files, &parts.left_spill, &self.regroup.0)?;
        let right_scan = scan(right_files, &parts.right_spill, &self.regroup.1)?;
        // The smaller side is hashed: after phase 1 the sizes are known.
        let swap = right.bytes.saturating_mul(2) < left.bytes;
        let build = if swap { right.bytes } else { left.bytes };
        let plan: Arc<dyn ExecutionPlan> = if build > self.cap && self.sortable()? {
            MetricBuilder::new(&self.metrics)
                .counter("sort_merged_buckets", 0)
                .add(1);
            self.sort_merge(left_scan, right_scan)?
        } else {
            let join = self
                .template
                .builder()
                .with_new_children(vec![left_scan, right_scan])?
                .reset_state()
                .build()?;
            if swap {
                MetricBuilder::new(&self.metrics)
                    .counter("swapped_buckets", 0)
                    .add(1);
                join.swap_inputs(PartitionMode::CollectLeft)?
            } else {
                Arc::new(join)
            }
        };
        Ok(Some(plan.execute(0, Arc::clone(context))?))
    }

    /// Whether a sort-merge join can stand in for the template: it has no
    /// filter (DataFusion 53's sort-merge join returned wrong rows for an
    /// inner join with one, in our tests) and every key type compares.
    fn sortable(&self) -> Result<bool> {
        if self.template.filter().is_some() {
            return Ok(false);
        }
        let schema = self.left().schema();
        for (l, _) in self.template.on() {
            if !crate::spill::comparable(&l.data_type(&schema)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The template join as a sort-merge join of sorted inputs, with the
    /// same output columns.
    fn sort_merge(
        &self,
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let hj = &self.template;
        let sorted = |input: Arc<dyn ExecutionPlan>, keys: Vec<Arc<dyn PhysicalExpr>>| {
            let ordering = LexOrdering::new(
                keys.into_iter()
                    .map(|k| PhysicalSortExpr::new(k, SortOptions::default())),
            )
            .ok_or_else(|| DataFusionError::Internal("a join without keys".into()))?;
            Ok::<_, DataFusionError>(Arc::new(SortExec::new(ordering, input)))
        };
        let (lk, rk): (Vec<_>, Vec<_>) = hj
            .on()
            .iter()
            .map(|(l, r)| (Arc::clone(l), Arc::clone(r)))
            .unzip();
        let smj: Arc<dyn ExecutionPlan> = Arc::new(SortMergeJoinExec::try_new(
            sorted(left, lk)?,
            sorted(right, rk)?,
            hj.on().to_vec(),
            hj.filter().cloned(),
            *hj.join_type(),
            vec![SortOptions::default(); hj.on().len()],
            hj.null_equality(),
        )?);
        project(smj, hj.projection.as_ref().map(|p| p.to_vec()))
    }
}

/// A join side that is an aggregate grouped by (at least) the join keys,
/// possibly under projections: `Projection* <- Final(Partitioned)
/// aggregate <- Repartition* <- Partial aggregate <- input`.
///
/// Rows with equal group keys have equal join keys, so they land in one
/// bucket: the side's rows are partitioned before the partial aggregate,
/// and each bucket is aggregated on its own (`Single` mode) under the same
/// projections. This replaces the partial aggregate, the repartition and
/// a final aggregate over every group, which spills under a limit, with
/// one aggregate per bucket that fits in memory.
#[derive(Debug)]
struct Regroup {
    /// The partial aggregate's input: the rows that are partitioned.
    input: Arc<dyn ExecutionPlan>,
    /// The join keys, as expressions over `input`.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The partial aggregate, whose expressions each bucket's reuses.
    partial: Arc<dyn ExecutionPlan>,
    /// The plans above the final aggregate, the side's root first.
    above: Vec<Arc<dyn ExecutionPlan>>,
}

impl Regroup {
    fn find(side: &Arc<dyn ExecutionPlan>, keys: &[Arc<dyn PhysicalExpr>]) -> Option<Self> {
        let column =
            |e: &Arc<dyn PhysicalExpr>| e.as_any().downcast_ref::<Column>().map(Column::index);
        let mut cols: Vec<usize> = keys.iter().map(column).collect::<Option<_>>()?;
        let mut above = Vec::new();
        let mut node = Arc::clone(side);
        while let Some(p) = node.as_any().downcast_ref::<ProjectionExec>() {
            cols = cols
                .iter()
                .map(|&c| column(&p.expr().get(c)?.expr))
                .collect::<Option<_>>()?;
            let input = Arc::clone(p.input());
            above.push(node);
            node = input;
        }
        let last = node.as_any().downcast_ref::<AggregateExec>()?;
        let groups = last.group_expr();
        if !matches!(
            last.mode(),
            AggregateMode::Final | AggregateMode::FinalPartitioned
        ) || groups.has_grouping_set()
            || last.limit_options().is_some()
            || cols.iter().any(|&c| c >= groups.expr().len())
        {
            return None;
        }
        let mut below = Arc::clone(last.input());
        while below.as_any().is::<RepartitionExec>() {
            below = Arc::clone(below.children()[0]);
        }
        let first = below.as_any().downcast_ref::<AggregateExec>()?;
        if *first.mode() != AggregateMode::Partial
            || first.group_expr().has_grouping_set()
            || first.group_expr().expr().len() != groups.expr().len()
        {
            return None;
        }
        let input = Arc::clone(first.input());
        let keys: Vec<_> = cols
            .iter()
            .map(|&c| Arc::clone(&first.group_expr().expr()[c].0))
            .collect();
        let regroup = Self {
            input,
            keys,
            partial: below,
            above,
        };
        // Each bucket's side must look exactly like the side.
        let probe = regroup.over(Arc::clone(&regroup.input)).ok()?;
        (probe.schema().fields() == side.schema().fields()).then_some(regroup)
    }

    /// The side over one bucket's rows of `input`.
    fn over(&self, rows: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let partial = self
            .partial
            .as_any()
            .downcast_ref::<AggregateExec>()
            .expect("an aggregate");
        let mut plan: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
            AggregateMode::Single,
            partial.group_expr().clone(),
            partial.aggr_expr().to_vec(),
            partial.filter_expr().to_vec(),
            rows,
            partial.input_schema(),
        )?);
        for node in self.above.iter().rev() {
            plan = Arc::clone(node).with_new_children(vec![plan])?;
        }
        Ok(plan)
    }
}

/// `plan` with only the columns `projection` keeps (all when `None`).
fn project(
    plan: Arc<dyn ExecutionPlan>,
    projection: Option<Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let Some(projection) = projection else {
        return Ok(plan);
    };
    let schema = plan.schema();
    let exprs: Vec<ProjectionExpr> = projection
        .iter()
        .map(|&i| {
            let name = schema.field(i).name();
            ProjectionExpr::new(
                Arc::new(datafusion::physical_expr::expressions::Column::new(name, i)),
                name.clone(),
            )
        })
        .collect();
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

/// Whether a bucket with an empty build and/or probe side has no output.
fn produces_nothing(join: &JoinType, left_empty: bool, right_empty: bool) -> bool {
    use JoinType::*;
    let keeps_left = matches!(join, Left | Full | LeftAnti | LeftMark);
    let keeps_right = matches!(join, Right | Full | RightAnti | RightMark);
    (left_empty && (right_empty || !keeps_right)) || (right_empty && !keeps_left)
}

/// Hashes one input partition's rows into per-bucket spill files.
struct Splitter {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    buckets: usize,
    spill: SpillManager,
    batch_size: usize,
    /// Bytes of buffered rows to aim for, over all buckets.
    buffer: usize,
}

impl Splitter {
    /// Reserves room for the buffered rows, and returns the rows each
    /// bucket buffers: less when the pool has less room.
    fn reserve(
        &self,
        batch: &RecordBatch,
        reservation: &mut datafusion::execution::memory_pool::MemoryReservation,
    ) -> Result<usize> {
        let width = used_bytes(batch)?.div_ceil(batch.num_rows()).max(1);
        let mut budget = self.buffer;
        loop {
            let target = (budget / width / self.buckets).clamp(16, self.batch_size);
            match reservation.try_grow(target * width * self.buckets) {
                Ok(()) => return Ok(target),
                Err(_) if target > 16 => budget /= 2,
                Err(e) => return Err(e),
            }
        }
    }

    async fn run(
        self,
        mut stream: SendableRecordBatchStream,
        mut reservation: datafusion::execution::memory_pool::MemoryReservation,
    ) -> Result<Vec<Bucket>> {
        let state = RandomState::with_seeds(SEEDS.0, SEEDS.1, SEEDS.2, SEEDS.3);
        let mut files = (0..self.buckets)
            .map(|_| self.spill.create_in_progress_file("GraceHashJoin"))
            .collect::<Result<Vec<_>>>()?;
        let mut out = vec![Bucket::default(); self.buckets];
        let mut coalescers: Vec<BatchCoalescer> = Vec::new();
        let mut hashes: Vec<u64> = Vec::new();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.buckets];
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            if coalescers.is_empty() {
                let target = self.reserve(&batch, &mut reservation)?;
                coalescers = (0..self.buckets)
                    .map(|_| BatchCoalescer::new(batch.schema(), target))
                    .collect();
            }
            let keys = self
                .keys
                .iter()
                .map(|k| k.evaluate(&batch)?.into_array(n))
                .collect::<Result<Vec<ArrayRef>>>()?;
            hashes.clear();
            hashes.resize(n, 0);
            create_hashes(&keys, &state, &mut hashes)?;
            for r in rows.iter_mut() {
                r.clear();
            }
            for (i, h) in hashes.iter().enumerate() {
                rows[bucket_of(*h, self.buckets)].push(i as u32);
            }
            for (b, r) in rows.iter().enumerate() {
                if r.is_empty() {
                    continue;
                }
                let part = if r.len() == n {
                    batch.clone()
                } else {
                    take_record_batch(&batch, &UInt32Array::from(r.clone()))?
                };
                coalescers[b].push_batch(part)?;
                while let Some(done) = coalescers[b].next_completed_batch() {
                    files[b].append_batch(&done)?;
                    out[b].add(&done)?;
                }
            }
        }
        for ((c, f), o) in coalescers.iter_mut().zip(&mut files).zip(&mut out) {
            c.finish_buffered_batch()?;
            while let Some(done) = c.next_completed_batch() {
                f.append_batch(&done)?;
                o.add(&done)?;
            }
        }
        reservation.free();
        for (f, o) in files.iter_mut().zip(&mut out) {
            if let Some(file) = f.finish()? {
                o.files.push(file);
            }
        }
        Ok(out)
    }
}

impl Bucket {
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        self.bytes += used_bytes(batch)?;
        Ok(())
    }
}

/// The bytes `batch`'s rows use, as they are when read back from a spill
/// file (a coalesced batch's buffers have room to spare).
fn used_bytes(batch: &RecordBatch) -> Result<usize> {
    let mut used = 0;
    for c in batch.columns() {
        used += c.to_data().get_slice_memory_size()?;
    }
    Ok(used)
}

fn bucket_of(hash: u64, buckets: usize) -> usize {
    // The high half, scaled to [0, buckets) without a division.
    (((hash >> 32) * buckets as u64) >> 32) as usize
}

impl DisplayAs for GraceHashJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self
            .template
            .on()
            .iter()
            .map(|(l, r)| format!("({l}, {r})"))
            .collect();
        write!(
            f,
            "GraceHashJoinExec: join_type={:?}, on=[{}], buckets={}",
            self.template.join_type(),
            on.join(", "),
            self.buckets
        )?;
        if let Some(filter) = self.template.filter() {
            write!(f, ", filter={}", filter.expression())?;
        }
        match &self.regroup {
            (Some(_), Some(_)) => write!(f, ", aggregated_per_bucket=both"),
            (Some(_), None) => write!(f, ", aggregated_per_bucket=left"),
            (None, Some(_)) => write!(f, ", aggregated_per_bucket=right"),
            (None, None) => Ok(()),
        }
    }
}

impl ExecutionPlan for GraceHashJoinExec {
    fn name(&self) -> &'static str {
        "GraceHashJoinExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.left(), self.right()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let template = self
            .template
            .builder()
            .with_new_children(children)?
            .reset_state()
            .build()?;
        Ok(Arc::new(Self::try_new(
            &template,
            self.buckets,
            self.properties.partitioning.partition_count(),
            self.cap,
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let this = self.clone();
        let output_rows: Count = MetricBuilder::new(&self.metrics).output_rows(partition);
        let step = self.properties.partitioning.partition_count();
        let schema = self.schema();
        let stream = futures::stream::once(async move {
            let parts = this
                .partitioned
                .get_or_init(|| async { this.partition(&context).await.map_err(Arc::new) })
                .await
                .clone()
                .map_err(DataFusionError::Shared)?;
            let streams = (partition..this.buckets)
                .step_by(step)
                .map(|b| this.join_bucket(&parts, b, &context))
                .collect::<Result<Vec<_>>>()?;
            Ok::<_, DataFusionError>(futures::stream::iter(streams.into_iter().flatten()).flatten())
        })
        .try_flatten()
        .inspect_ok(move |b| output_rows.add(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        match partition {
            None => self.template.partition_statistics(None),
            Some(_) => Ok(Statistics::new_unknown(&self.schema())),
        }
    }
}

/// One partition reading spill files in order.
#[derive(Debug)]
struct SpillScanExec {
    files: Vec<RefCountedTempFile>,
    spill: SpillManager,
    properties: Arc<PlanProperties>,
}

impl SpillScanExec {
    fn new(files: Vec<RefCountedTempFile>, spill: SpillManager) -> Self {
        let schema: SchemaRef = Arc::clone(spill.schema());
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            files,
            spill,
            properties,
        }
    }
}

impl DisplayAs for SpillScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SpillScanExec: files={}", self.files.len())
    }
}

impl ExecutionPlan for SpillScanExec {
    fn name(&self) -> &'static str {
        "SpillScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let streams = self
            .files
            .iter()
            .map(|f| self.spill.read_spill_as_stream(f.clone(), None))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(self.spill.schema()),
            futures::stream::iter(streams).flatten(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::spill::tests::session_with;

    /// `l` and `r` in two partitions each: keys with duplicates, nulls and
    /// keys on one side only.
    fn register(ctx: &SessionContext) -> Result<()> {
        let table = |n: i64, step: i64| -> Result<Arc<MemTable>> {
            let keys: Vec<Option<i64>> = (0..n)
                .map(|i| (i % 97 != 0).then_some((i * step) % 5_000))
                .collect();
            let names: Vec<String> = (0..keys.len()).map(|i| format!("row-{i:08}")).collect();
            let b = RecordBatch::try_from_iter([
                ("k", Arc::new(Int64Array::from(keys)) as ArrayRef),
                ("v", Arc::new(StringArray::from(names)) as ArrayRef),
            ])?;
            let half = b.num_rows() / 2;
            let parts = vec![
                vec![b.slice(0, half)],
                vec![b.slice(half, b.num_rows() - half)],
            ];
            Ok(Arc::new(MemTable::try_new(b.schema(), parts)?))
        };
        ctx.register_table("l", table(20_000, 3)?)?;
        ctx.register_table("r", table(12_000, 7)?)?;
        Ok(())
    }

    async fn run(
        ctx: &SessionContext,
        sql: &str,
    ) -> Result<(String, String, Arc<dyn ExecutionPlan>)> {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let rows = collect(Arc::clone(&plan), ctx.task_ctx()).await?;
        Ok((pretty_format_batches(&rows)?.to_string(), shown, plan))
    }

    fn bounded(budget: usize) -> SessionContext {
        let ctx = session_with(true, budget);
        let opts = ctx.state_ref();
        let mut state = opts.write();
        let o = state.config_mut().options_mut();
        o.optimizer.hash_join_single_partition_threshold = 0;
        o.optimizer.hash_join_single_partition_threshold_rows = 0;
        drop(state);
        ctx
    }

    const JOINS: [&str; 8] = [
        "JOIN",
        "LEFT JOIN",
        "RIGHT JOIN",
        "FULL JOIN",
        "LEFT SEMI JOIN",
        "LEFT ANTI JOIN",
        "RIGHT SEMI JOIN",
        "RIGHT ANTI JOIN",
    ];

    /// A summary that is the same whatever the row order.
    fn query(join: &str, filter: &str) -> String {
        let cols = if join.starts_with("RIGHT S") || join.starts_with("RIGHT A") {
            "count(*) AS n, count(r.k) AS keys, min(r.v) AS lo, max(r.v) AS hi"
        } else if join.contains("SEMI") || join.contains("ANTI") {
            "count(*) AS n, count(l.k) AS keys, min(l.v) AS lo, max(l.v) AS hi"
        } else {
            "count(*) AS n, count(l.k) AS lk, count(r.k) AS rk, min(l.v) AS lo, max(r.v) AS hi"
        };
        format!("SELECT {cols} FROM l {join} r ON l.k = r.k{filter}")
    }

    /// Buckets sort-merged when `plan` ran.
    fn sort_merged(plan: &Arc<dyn ExecutionPlan>) -> usize {
        counted(plan, "sort_merged_buckets")
    }

    fn counted(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
        let mut merged = 0;
        datafusion::physical_plan::accept(
            plan.as_ref(),
            &mut Visit(|p: &dyn ExecutionPlan| {
                if let Some(m) = p.metrics() {
                    merged += m.sum_by_name(name).map_or(0, |v| v.as_usize());
                }
            }),
        )
        .unwrap();
        merged
    }

    /// Every join type, with and without a filter, against the plain hash
    /// join: with buckets that fit (hash joins) and with buckets that do
    /// not (sort-merge joins).
    async fn every_join_type_under(budget: usize, merges: bool) {
        let plain = session_with(false, 0);
        register(&plain).unwrap();
        let grace = bounded(budget);
        register(&grace).unwrap();
        for join in JOINS {
            for filter in ["", " AND l.v < r.v"] {
                let sql = query(join, filter);
                let (want, _, _) = run(&plain, &sql).await.unwrap();
                let (got, shown, plan) = run(&grace, &sql).await.unwrap();
                assert!(shown.contains("GraceHashJoinExec"), "{sql}\n{shown}");
                assert_eq!(got, want, "{sql}\n{shown}");
                let merged = merges && filter.is_empty();
                assert_eq!(sort_merged(&plan) > 0, merged, "{sql}\n{shown}");
            }
        }
    }

    #[tokio::test]
    async fn every_join_type_returns_what_the_hash_join_returns() {
        every_join_type_under(256 << 10, false).await;
    }

    #[tokio::test]
    async fn buckets_too_large_for_a_hash_table_are_sort_merged() {
        every_join_type_under(1 << 10, true).await;
    }

    /// Every spill codec DataFusion offers (`spill_compression`) writes
    /// buckets that read back to the same rows, and each bucket's files
    /// are deleted once it is joined.
    #[tokio::test]
    async fn buckets_spilled_with_every_codec_read_back() {
        use datafusion::common::config::SpillCompression;
        let plain = session_with(false, 0);
        register(&plain).unwrap();
        let sql = query("JOIN", "");
        let (want, _, _) = run(&plain, &sql).await.unwrap();
        for codec in [
            SpillCompression::Uncompressed,
            SpillCompression::Lz4Frame,
            SpillCompression::Zstd,
        ] {
            let grace = bounded(256 << 10);
            grace
                .state_ref()
                .write()
                .config_mut()
                .options_mut()
                .execution
                .spill_compression = codec;
            register(&grace).unwrap();
            let (got, shown, plan) = run(&grace, &sql).await.unwrap();
            assert!(shown.contains("GraceHashJoinExec"), "{codec:?}\n{shown}");
            let mut spilled = 0;
            datafusion::physical_plan::accept(
                plan.as_ref(),
                &mut Visit(|p: &dyn ExecutionPlan| {
                    spilled += p.metrics().and_then(|m| m.spilled_rows()).unwrap_or(0);
                }),
            )
            .unwrap();
            assert!(spilled > 0, "{codec:?}");
            assert_eq!(got, want, "{codec:?}");
            // Each bucket's files were let go by its join, before the plan.
            assert_eq!(grace.runtime_env().disk_manager.used_disk_space(), 0);
            // Its buckets are gone: running the plan again is an error.
            let again = collect(Arc::clone(&plan), grace.task_ctx()).await;
            let err = again.expect_err("a second run").to_string();
            assert!(err.contains("joined already"), "{err}");
        }
    }

    /// A side that aggregates by the join key (alone, with another column,
    /// or with a FILTER clause and under a projection) is aggregated per
    /// bucket, and every join type returns what the hash join returns.
    #[tokio::test]
    async fn an_aggregate_by_the_join_key_is_aggregated_per_bucket() {
        aggregated_per_bucket_under(256 << 10).await;
        // Buckets over the cap: the aggregate's output is sort-merged.
        aggregated_per_bucket_under(1 << 10).await;
    }

    async fn aggregated_per_bucket_under(budget: usize) {
        let plain = session_with(false, 0);
        register(&plain).unwrap();
        let grace = bounded(budget);
        register(&grace).unwrap();
        let sides = [
            "SELECT k, count(*) AS n, max(v) AS best FROM r GROUP BY k",
            "SELECT k, k % 3 AS m, count(*) FILTER (WHERE v > 'row-00005') AS n, \
             min(v) AS best FROM r GROUP BY k, k % 3",
            "SELECT k, best, x.n + 1 AS n1 FROM \
             (SELECT k, count(*) AS n, max(v) AS best FROM r GROUP BY k) AS x",
        ];
        for side in sides {
            for join in [
                "JOIN",
                "LEFT JOIN",
                "RIGHT JOIN",
                "FULL JOIN",
                "LEFT ANTI JOIN",
            ] {
                let cols = if join.contains("ANTI") {
                    "count(*), count(l.k), min(l.v), max(l.v)"
                } else {
                    "count(*), count(l.k), count(a.k), sum(a.n), min(a.best), max(l.v)"
                };
                let sql = format!("SELECT {cols} FROM l {join} ({side}) AS a ON l.k = a.k");
                let sql = sql.replace(
                    "sum(a.n)",
                    if side.contains("n1") {
                        "sum(a.n1)"
                    } else {
                        "sum(a.n)"
                    },
                );
                let (want, _, _) = run(&plain, &sql).await.expect(&sql);
                let (got, shown, _) = run(&grace, &sql).await.unwrap();
                // The planner may put the aggregate on either side.
                assert!(shown.contains("aggregated_per_bucket="), "{sql}\n{shown}");
                assert_eq!(got, want, "{sql}\n{shown}");
            }
        }
        // Grouped by another column than the key: aggregated as planned.
        let sql = "SELECT count(*), sum(a.n) FROM l JOIN \
                   (SELECT v, min(k) AS k, count(*) AS n FROM r GROUP BY v) AS a ON l.k = a.k";
        let (want, _, _) = run(&plain, sql).await.unwrap();
        let (got, shown, _) = run(&grace, sql).await.unwrap();
        assert!(shown.contains("GraceHashJoinExec"), "{shown}");
        assert!(!shown.contains("aggregated_per_bucket"), "{shown}");
        assert_eq!(got, want);
    }

    /// The output's rows as sorted strings.
    async fn rows(plan: Arc<dyn ExecutionPlan>, ctx: &SessionContext) -> Vec<String> {
        use datafusion::arrow::util::display::array_value_to_string;
        let mut out = Vec::new();
        for b in collect(plan, ctx.task_ctx()).await.unwrap() {
            for i in 0..b.num_rows() {
                let row: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, i).unwrap())
                    .collect();
                out.push(row.join("|"));
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn the_smaller_side_is_hashed_whichever_it_is() {
        use datafusion::physical_expr::expressions::Column;
        use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
        let ctx = session_with(false, 0);
        register(&ctx).unwrap();
        let scan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await?.create_physical_plan().await }
        };
        // The left side is ten times the right one.
        let big = scan("SELECT k, v FROM l").await.unwrap();
        let small = scan("SELECT k, v FROM r WHERE k < 500").await.unwrap();
        let on = vec![(
            Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>,
            Arc::new(Column::new("k", 0)) as Arc<dyn PhysicalExpr>,
        )];
        for join_type in [
            JoinType::Inner,
            JoinType::Left,
            JoinType::LeftAnti,
            JoinType::Full,
        ] {
            let join = |left: Arc<dyn ExecutionPlan>| {
                HashJoinExec::try_new(
                    left,
                    Arc::clone(&small),
                    on.clone(),
                    None,
                    &join_type,
                    None,
                    PartitionMode::CollectLeft,
                    datafusion::common::NullEquality::NullEqualsNothing,
                    false,
                )
            };
            let plain = join(Arc::new(CoalescePartitionsExec::new(Arc::clone(&big)))).unwrap();
            let grace: Arc<dyn ExecutionPlan> = Arc::new(
                GraceHashJoinExec::try_new(&join(Arc::clone(&big)).unwrap(), 4, 2, 1 << 30)
                    .unwrap(),
            );
            let want = rows(Arc::new(plain), &ctx).await;
            let got = rows(Arc::clone(&grace), &ctx).await;
            assert!(!want.is_empty(), "{join_type}");
            assert_eq!(got, want, "{join_type}");
            assert!(counted(&grace, "swapped_buckets") > 0, "{join_type}");
        }
    }

    struct Visit<F>(F);

    impl<F: FnMut(&dyn ExecutionPlan)> datafusion::physical_plan::ExecutionPlanVisitor for Visit<F> {
        type Error = DataFusionError;
        fn pre_visit(&mut self, plan: &dyn ExecutionPlan) -> Result<bool> {
            (self.0)(plan);
            Ok(true)
        }
    }

    #[test]
    fn buckets_cover_the_hash_range() {
        assert_eq!(bucket_of(0, 16), 0);
        assert_eq!(bucket_of(u64::MAX, 16), 15);
        assert_eq!(bucket_of(u64::MAX / 2, 2), 0);
        assert_eq!(bucket_of(u64::MAX / 2 + 1, 2), 1);
        use JoinType::*;
        assert!(produces_nothing(&Inner, true, false));
        assert!(!produces_nothing(&Right, true, false));
        assert!(!produces_nothing(&LeftAnti, false, true));
        assert!(produces_nothing(&LeftSemi, false, true));
    }
}
