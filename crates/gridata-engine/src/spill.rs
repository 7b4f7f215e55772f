//! Joins that stay within a memory limit.
//!
//! DataFusion 53's hash join keeps its whole build side in memory and
//! cannot spill, so under a limit a join of two large inputs fails. When
//! the process runs with a memory limit, [`LargeJoins`] plans every
//! repartitioned hash join either as a broadcast hash join, when its build
//! side is estimated to fit one operator's share, or as a grace hash join
//! ([`GraceHashJoinExec`]), which partitions both inputs to disk by key
//! and joins one bucket at a time. Memory stays bounded whatever the
//! inputs' size, and no wide row is sorted.
//!
//! Invariants:
//! - Only `PartitionMode::Partitioned` joins change. A join DataFusion
//!   already broadcasts (`CollectLeft`) stays as it is.
//! - The output schema is unchanged.
//! - Joins the grace join is not given (mark joins, null-aware anti joins,
//!   joins with a fetch) stay hash joins.
//!
//! An aggregate emits its groups as slices of one large batch, and
//! DataFusion charges each slice for the whole buffers, so a sort over an
//! aggregate's output fails a limit it is far from. [`CompactSlicedBatches`]
//! puts a [`CompactExec`] in front of every sort and every hash join's build
//! side; it copies such slices into buffers of their own, so what is
//! charged is what is held. Compact batches pass through untouched.
//!
//! A sort whose input fits its share sorts in memory and then holds that
//! memory, unspillable, until its output is read; the merge of a sort's
//! spill files reserves room for as many files as the pool allows. Either
//! can starve the plan's other operators. [`CappedPool`] caps every
//! consumer at a fraction of the limit: sorts spill early, and merges
//! merge in several passes.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, MutableArrayData, RecordBatch, make_array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::utils::memory::get_record_batch_memory_size;
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::JoinType;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, PlanProperties};
use futures::StreamExt;

use crate::grace::GraceHashJoinExec;

/// Plans repartitioned hash joins as grace hash joins, which spill, or as
/// broadcast hash joins when the build side is estimated to fit
/// `broadcast_bytes`.
#[derive(Debug, Default)]
pub(crate) struct LargeJoins {
    broadcast_bytes: usize,
}

/// A memory pool that also caps each consumer at `cap` bytes.
#[derive(Debug)]
pub(crate) struct CappedPool<P> {
    inner: P,
    cap: usize,
}

impl<P> CappedPool<P> {
    /// `inner`, with no consumer above `cap` bytes.
    pub(crate) fn new(inner: P, cap: usize) -> Self {
        Self { inner, cap }
    }
}

impl<P: MemoryPool> MemoryPool for CappedPool<P> {
    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        // A broadcast build side is one for all partitions and cannot spill;
        // it was planned to fit the cap (`broadcastable`), with this room
        // for a wrong estimate.
        let cap = if reservation.consumer().name().starts_with("HashJoinInput") {
            self.cap.saturating_mul(2)
        } else {
            self.cap
        };
        if reservation.size() + additional > cap {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} holds {} bytes and may hold at most {} (a share of the memory limit); \
                 it asked for {additional} more",
                reservation.consumer().name(),
                reservation.size(),
                cap
            )));
        }
        self.inner.try_grow(reservation, additional)
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

type Rules = Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>;

/// Adds the bounded-memory rules to a session's physical optimizer rules;
/// `cap` is what one operator may hold.
pub(crate) fn install(rules: &mut Rules, cap: usize) {
    // Right after `join_selection`, which decides which joins broadcast,
    // and before distribution is enforced, which would add the
    // partitioned joins' repartitions.
    let at = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(0, |i| i + 1);
    rules.insert(
        at,
        Arc::new(LargeJoins {
            broadcast_bytes: cap,
        }),
    );
    // Last, once every sort is in place.
    rules.push(Arc::new(CompactSlicedBatches));
}

impl PhysicalOptimizerRule for LargeJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(hj) = node.as_any().downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if !convertible(hj) {
                return Ok(Transformed::no(node));
            }
            if broadcastable(hj, self.broadcast_bytes) {
                return Ok(Transformed::yes(Arc::new(
                    hj.builder()
                        .with_partition_mode(PartitionMode::CollectLeft)
                        .build()?,
                )));
            }
            let buckets = grace_buckets(hj, self.broadcast_bytes);
            Ok(Transformed::yes(Arc::new(GraceHashJoinExec::try_new(
                hj,
                buckets,
                config.execution.target_partitions,
                self.broadcast_bytes,
            )?)))
        })
        .data()
    }

    fn name(&self) -> &str {
        "large_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Puts a [`CompactExec`] under every sort and hash join build side.
#[derive(Debug, Default)]
pub(crate) struct CompactSlicedBatches;

impl PhysicalOptimizerRule for CompactSlicedBatches {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let compact = |child: &Arc<dyn ExecutionPlan>| -> Arc<dyn ExecutionPlan> {
                if child.as_any().is::<CompactExec>() {
                    Arc::clone(child)
                } else {
                    Arc::new(CompactExec::new(Arc::clone(child)))
                }
            };
            let children: Vec<Arc<dyn ExecutionPlan>> = if node.as_any().is::<SortExec>() {
                node.children().into_iter().map(compact).collect()
            } else if node.as_any().is::<HashJoinExec>() {
                let c = node.children();
                vec![compact(c[0]), Arc::clone(c[1])]
            } else {
                return Ok(Transformed::no(node));
            };
            if children
                .iter()
                .zip(node.children())
                .all(|(a, b)| Arc::ptr_eq(a, b))
            {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(node.with_new_children(children)?))
        })
        .data()
    }

    fn name(&self) -> &str {
        "compact_sliced_batches"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Copies each batch that holds much more memory than its rows need (a
/// slice of a larger batch) into buffers of its own; passes others on.
#[derive(Debug)]
pub struct CompactExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl CompactExec {
    /// Compacts the batches of `input`.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = Arc::clone(input.properties());
        Self { input, properties }
    }
}

impl DisplayAs for CompactExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "CompactExec")
    }
}

impl ExecutionPlan for CompactExec {
    fn name(&self) -> &'static str {
        "CompactExec"
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

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(children.swap_remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            input.map(|batch| batch.and_then(compact)),
        )))
    }

    fn partition_statistics(
        &self,
        partition: Option<usize>,
    ) -> Result<datafusion::common::Statistics> {
        self.input.partition_statistics(partition)
    }
}

/// `batch` with every column that holds more than twice the memory its
/// rows need copied into buffers of its own.
fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    const SLACK: usize = 1 << 20;
    if get_record_batch_memory_size(&batch) <= SLACK {
        return Ok(batch);
    }
    let mut copied = false;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for column in batch.columns() {
        // A view array's buffers may hold the strings of many other rows
        // (a cast from Utf8 shares them; `take` keeps them all).
        if let Some(views) = column.as_string_view_opt() {
            let held: usize = views.data_buffers().iter().map(|b| b.capacity()).sum();
            if held > 2 * views.total_buffer_bytes_used() + SLACK / 8 {
                columns.push(Arc::new(views.gc()));
                copied = true;
                continue;
            }
        }
        let data = column.to_data();
        let needed = data.get_slice_memory_size()?;
        if column.get_array_memory_size() > 2 * needed + SLACK / 8 {
            let mut copy = MutableArrayData::new(vec![&data], false, data.len());
            copy.extend(0, 0, data.len());
            columns.push(make_array(copy.freeze()));
            copied = true;
        } else {
            columns.push(Arc::clone(column));
        }
    }
    if !copied {
        return Ok(batch);
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

fn convertible(hj: &HashJoinExec) -> bool {
    *hj.partition_mode() == PartitionMode::Partitioned
        && !hj.null_aware
        && hj.fetch().is_none()
        && !matches!(hj.join_type(), JoinType::LeftMark | JoinType::RightMark)
}

/// Hash-table bytes a build row costs besides its values (DataFusion's
/// map of hashes to rows and its chain of equal hashes).
const HASH_ROW_BYTES: usize = 48;

/// Whether the join's build side is estimated to fit `budget` bytes, row
/// count (from statistics) times the row's width (from the schema), and
/// its type lets one build side serve every probe partition. The estimate
/// allows 32 bytes a string; the pool lets a build side hold twice the
/// budget, so a wrong estimate has room before it fails the query.
fn broadcastable(hj: &HashJoinExec, budget: usize) -> bool {
    matches!(
        hj.join_type(),
        JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
    ) && build_bytes(hj).is_some_and(|bytes| bytes <= budget)
}

/// The build side's estimated bytes in a hash table, when its row count
/// is known.
fn build_bytes(hj: &HashJoinExec) -> Option<usize> {
    let stats = hj.left().partition_statistics(None).ok()?;
    let rows = *stats.num_rows.get_value()?;
    let width: usize = hj
        .left()
        .schema()
        .fields()
        .iter()
        .map(|f| estimated_width(f.data_type()))
        .sum();
    Some(rows.saturating_mul(width + HASH_ROW_BYTES))
}

/// Buckets for a grace hash join, so that each bucket's build side is
/// estimated at half of what one operator may hold. Unknown sizes get
/// many; a bucket that is still too large is sort-merged.
fn grace_buckets(hj: &HashJoinExec, cap: usize) -> usize {
    const MOST: usize = 64;
    build_bytes(hj).map_or(MOST / 2, |bytes| {
        bytes.div_ceil((cap / 2).max(1)).clamp(2, MOST)
    })
}

fn estimated_width(t: &DataType) -> usize {
    use DataType::*;
    match t {
        Utf8 | LargeUtf8 | Binary | LargeBinary | Utf8View | BinaryView => 32,
        t => t.primitive_width().unwrap_or(64),
    }
}

/// The key types the sort-merge join's comparator handles.
pub(crate) fn comparable(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Null | Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Utf8
            | Utf8View
            | LargeUtf8
            | Binary
            | BinaryView
            | LargeBinary
            | FixedSizeBinary(_)
            | Decimal32(..)
            | Decimal64(..)
            | Decimal128(..)
            | Decimal256(..)
            | Timestamp(_, None)
            | Date32
            | Date64
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const LIMIT: usize = 16 << 20;

    /// A session whose pool is far smaller than a join's inputs.
    fn tight_session() -> datafusion::prelude::SessionContext {
        session_with(true, 10 << 20)
    }

    /// A session with two partitions in a 16 MiB pool; with the bounded
    /// rules, `budget` is what one operator may hold.
    pub(crate) fn session_with(
        bounded_rules: bool,
        budget: usize,
    ) -> datafusion::prelude::SessionContext {
        use datafusion::execution::SessionStateBuilder;
        use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
        use datafusion::prelude::{SessionConfig, SessionContext};
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(LIMIT),
                std::num::NonZeroUsize::new(8).unwrap(),
            )))
            .build_arc()
            .unwrap();
        let mut rules = PhysicalOptimizer::new().rules;
        if bounded_rules {
            install(&mut rules, budget);
        }
        let state = SessionStateBuilder::new()
            .with_config(
                SessionConfig::new()
                    .with_target_partitions(2)
                    .with_sort_spill_reservation_bytes(1 << 20),
            )
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        SessionContext::new_with_state(state)
    }

    const JOIN: &str = "SELECT count(*), sum(o.v) \
        FROM orders o JOIN (SELECT DISTINCT k FROM items) i ON o.k = i.k";

    /// The join's result and the bytes it spilled, in a 16 MiB pool.
    async fn join_under_a_tight_limit() -> Result<(String, usize)> {
        use datafusion::arrow::array::{Int64Array, StringArray};
        use datafusion::datasource::MemTable;
        let ctx = tight_session();
        let n = 600_000i64;
        let keys = |m: i64, step: i64| {
            Arc::new(StringArray::from_iter_values(
                (0..m).map(|i| format!("order-{:012}", i * step)),
            )) as ArrayRef
        };
        // Orders: every key once. Items: every second order's key, twice.
        let orders = RecordBatch::try_from_iter([
            ("k", keys(n, 1)),
            (
                "v",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
        ])?;
        let items = RecordBatch::try_from_iter([("k", keys(n / 2, 2))])?;
        let items = datafusion::arrow::compute::concat_batches(&items.schema(), [&items, &items])?;
        // Two partitions of 8192-row batches.
        let split = |b: RecordBatch| -> Vec<Vec<RecordBatch>> {
            let mut parts = vec![vec![], vec![]];
            for (n, at) in (0..b.num_rows()).step_by(8192).enumerate() {
                parts[n % 2].push(b.slice(at, 8192.min(b.num_rows() - at)));
            }
            parts
        };
        ctx.register_table(
            "orders",
            Arc::new(MemTable::try_new(orders.schema(), split(orders))?),
        )?;
        ctx.register_table(
            "items",
            Arc::new(MemTable::try_new(items.schema(), split(items))?),
        )?;
        let df = ctx.sql(JOIN).await?;
        let plan = df.clone().create_physical_plan().await?;
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        assert!(shown.contains("GraceHashJoin"), "{shown}");
        let rows = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx()).await?;
        let mut spilled = 0;
        datafusion::physical_plan::accept(plan.as_ref(), &mut SpilledBytes(&mut spilled))?;
        let out = datafusion::arrow::util::pretty::pretty_format_batches(&rows)?.to_string();
        Ok((out, spilled))
    }

    struct SpilledBytes<'a>(&'a mut usize);

    impl datafusion::physical_plan::ExecutionPlanVisitor for SpilledBytes<'_> {
        type Error = DataFusionError;
        fn pre_visit(&mut self, plan: &dyn ExecutionPlan) -> Result<bool> {
            if plan.name() == "GraceHashJoinExec" {
                let bytes = plan.metrics().and_then(|m| m.spilled_bytes());
                *self.0 += bytes.unwrap_or(0);
            }
            Ok(true)
        }
    }

    #[tokio::test]
    async fn a_join_larger_than_the_limit_is_partitioned_to_disk() {
        // The orders' keys alone are over 10 MB: both sides go to disk.
        let (out, spilled) = join_under_a_tight_limit().await.unwrap();
        assert!(spilled > 10 << 20, "spilled {spilled} bytes");
        // Each of the 300,000 even keys matches once; their values sum up.
        let sum: i64 = (0..600_000i64).step_by(2).sum();
        assert!(out.contains(&format!("| 300000   | {sum}")), "{out}");
    }

    #[tokio::test]
    async fn a_build_side_within_the_budget_is_broadcast() {
        use datafusion::arrow::array::StringArray;
        use datafusion::datasource::MemTable;
        let keys = |m: i64| {
            Arc::new(StringArray::from_iter_values(
                (0..m).map(|i| format!("k{i:06}")),
            )) as ArrayRef
        };
        let plan_of = |budget: usize| async move {
            let ctx = session_with(true, budget);
            // No broadcast by DataFusion's own thresholds: only ours.
            ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0")
                .await?;
            ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0")
                .await?;
            for (name, n) in [("big", 50_000), ("small", 1_000)] {
                let b = RecordBatch::try_from_iter([("k", keys(n))])?;
                let parts = vec![
                    vec![b.slice(0, n as usize / 2)],
                    vec![b.slice(n as usize / 2, n as usize / 2)],
                ];
                ctx.register_table(name, Arc::new(MemTable::try_new(b.schema(), parts)?))?;
            }
            let df = ctx
                .sql("SELECT count(*) FROM big b WHERE NOT EXISTS (SELECT 1 FROM small s WHERE s.k = b.k)")
                .await?;
            let plan = df.clone().create_physical_plan().await?;
            let shown = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(false)
                .to_string();
            let rows = df.collect().await?;
            let out = datafusion::arrow::util::pretty::pretty_format_batches(&rows)?.to_string();
            Ok::<_, DataFusionError>((shown, out))
        };
        // 1,000 keys at (32 + 48) bytes a row: 80,000 bytes.
        let (wide, out) = plan_of(1 << 20).await.unwrap();
        assert!(
            wide.contains("mode=CollectLeft") && !wide.contains("GraceHashJoin"),
            "{wide}"
        );
        assert!(out.contains("| 49000"), "{out}");
        let (narrow, out) = plan_of(50_000).await.unwrap();
        assert!(narrow.contains("GraceHashJoin"), "{narrow}");
        assert!(out.contains("| 49000"), "{out}");
    }

    #[test]
    fn a_slice_is_copied_into_buffers_of_its_own() {
        use datafusion::arrow::array::StringArray;
        let values: Vec<String> = (0..200_000).map(|i| format!("order-{i:012}")).collect();
        let batch =
            RecordBatch::try_from_iter([("k", Arc::new(StringArray::from(values)) as ArrayRef)])
                .unwrap();
        let slice = batch.slice(1000, 8192);
        let out = compact(slice.clone()).unwrap();
        assert_eq!(out, slice);
        assert!(get_record_batch_memory_size(&out) * 10 < get_record_batch_memory_size(&slice));
        // A view array cast from Utf8 shares all of its strings.
        let views = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8View).unwrap();
        let viewed = RecordBatch::try_from_iter([("k", views.slice(1000, 8192))]).unwrap();
        let out_views = compact(viewed.clone()).unwrap();
        assert_eq!(out_views, viewed);
        assert!(
            get_record_batch_memory_size(&out_views) * 10 < get_record_batch_memory_size(&viewed)
        );
        // A compact batch passes through as it is.
        let again = compact(out.clone()).unwrap();
        assert!(Arc::ptr_eq(again.column(0), out.column(0)));
    }

    #[test]
    fn a_consumer_stops_at_its_cap() {
        use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer};
        let pool: Arc<dyn MemoryPool> =
            Arc::new(CappedPool::new(GreedyMemoryPool::new(100 << 20), 10 << 20));
        let sorter = MemoryConsumer::new("sorter")
            .with_can_spill(true)
            .register(&pool);
        sorter.try_grow(10 << 20).unwrap();
        let err = sorter.try_grow(1).unwrap_err();
        assert!(
            matches!(err, DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
        // So does one that cannot spill; others still get memory.
        let merge = MemoryConsumer::new("merge").register(&pool);
        assert!(merge.try_grow(11 << 20).is_err());
        merge.try_grow(10 << 20).unwrap();
    }

    #[test]
    fn zoned_timestamps_and_dictionaries_are_never_sort_merged() {
        use datafusion::arrow::datatypes::TimeUnit;
        assert!(comparable(&DataType::Utf8));
        assert!(comparable(&DataType::Timestamp(
            TimeUnit::Microsecond,
            None
        )));
        assert!(!comparable(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into())
        )));
        assert!(!comparable(&DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(DataType::Utf8)
        )));
    }
}
