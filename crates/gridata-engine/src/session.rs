//! [`Engine`]: a DataFusion session over the lake.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::DiskManager;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryPool, TrackConsumersPool, UnboundedMemoryPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use gridata_lake::Lake;

use crate::catalog::LakeCatalog;
use crate::dialect::GridataDialect;
use crate::spill::CappedPool;
use crate::{Error, Result, timetravel};

/// The DataFusion catalog name under which the lake is registered.
pub const CATALOG: &str = "gridata";

/// Join build sides up to this many bytes (Parquet size) are broadcast.
pub const BROADCAST_BYTES: usize = 16 << 20;
/// Join build sides up to this many rows are broadcast.
pub const BROADCAST_ROWS: usize = 1 << 20;

static MEMORY_LIMIT: OnceLock<Option<usize>> = OnceLock::new();
static SHARED: OnceLock<(Arc<dyn MemoryPool>, Arc<DiskManager>)> = OnceLock::new();

/// Bound the memory of every session in this process to `bytes`, shared
/// fairly between the operators that can spill (sorts, aggregations),
/// which then spill to temporary files. Joins whose build side is not
/// known to be small are then planned as grace hash joins, which
/// partition both inputs to disk first (see [`crate::spill`]). Without a bound nothing spills. Only the
/// first call counts, and only before the first session.
pub fn set_memory_limit(bytes: Option<usize>) {
    let _ = MEMORY_LIMIT.set(bytes);
}

/// The most one operator (a sort, a merge, an aggregation, a broadcast
/// join's build side) may hold under a memory limit of `limit` bytes: an
/// eighth of it, at least 16 MiB.
fn spill_cap(limit: usize) -> usize {
    (limit / 8).max(16 << 20)
}

/// The process's memory bound, if it has one.
pub fn memory_limit() -> Option<usize> {
    *MEMORY_LIMIT.get_or_init(|| None)
}

/// A runtime for one session: the process-wide memory pool and spill
/// files, and the session's own object stores (two lakes in one process
/// may use the same URL for different stores).
fn runtime() -> Arc<RuntimeEnv> {
    let shared = SHARED.get_or_init(|| {
        let pool: Arc<dyn MemoryPool> = match memory_limit() {
            Some(limit) => Arc::new(TrackConsumersPool::new(
                CappedPool::new(FairSpillPool::new(limit), spill_cap(limit)),
                std::num::NonZeroUsize::new(5).expect("5"),
            )),
            None => Arc::new(UnboundedMemoryPool::default()),
        };
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build()
            .expect("runtime with the default disk manager");
        (env.memory_pool, env.disk_manager)
    });
    let env = RuntimeEnvBuilder::new()
        .with_memory_pool(shared.0.clone())
        .build()
        .expect("runtime with the default disk manager");
    Arc::new(RuntimeEnv {
        disk_manager: shared.1.clone(),
        ..env
    })
}

/// A SQL session over the lake.
#[derive(Clone)]
pub struct Engine {
    lake: Lake,
    ctx: SessionContext,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("lake", &self.lake).finish()
    }
}

impl Engine {
    /// A session with every namespace of `lake` as a schema.
    pub async fn new(lake: Lake) -> Result<Self> {
        Self::with_masks(lake, crate::mask::Masks::new()).await
    }

    /// A session whose tables show these columns masked.
    pub async fn with_masks(lake: Lake, masks: crate::mask::Masks) -> Result<Self> {
        // DATAFUSION_* environment variables tune the engine, as in
        // datafusion-cli (DATAFUSION_EXECUTION_BATCH_SIZE=16384, ...).
        let mut config = SessionConfig::from_env()?
            .with_default_catalog_and_schema(CATALOG, crate::catalog::DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        // Like Spark's broadcast threshold: a build side this small is
        // hashed once and probed by every partition, rather than both sides
        // being repartitioned by key.
        // Under a memory limit a broadcast build side must also fit well
        // within one operator's share of it (estimating 256 bytes a row).
        let (bytes, rows) = match memory_limit().map(spill_cap) {
            Some(cap) => (BROADCAST_BYTES.min(cap / 4), BROADCAST_ROWS.min(cap / 256)),
            None => (BROADCAST_BYTES, BROADCAST_ROWS),
        };
        let opts = config.options_mut();
        if let Some(cap) = memory_limit().map(spill_cap) {
            // Every sort that may spill keeps this much aside for merging;
            // a plan has many sorts, so it is sized by the cap.
            opts.execution.sort_spill_reservation_bytes =
                opts.execution.sort_spill_reservation_bytes.min(cap / 16);
            // A view array's rows are charged for every buffer they point
            // into, so sorts of view columns spill early and their merges
            // reserve many times what they hold. Strings stay Utf8.
            opts.execution.parquet.schema_force_view_types = false;
            opts.sql_parser.map_string_types_to_utf8view = false;
            // Bounded runs spill: LZ4 costs no measurable time and needs
            // less than half the disk (decision 0010).
            if std::env::var_os("DATAFUSION_EXECUTION_SPILL_COMPRESSION").is_none() {
                opts.execution.spill_compression =
                    datafusion::common::config::SpillCompression::Lz4Frame;
            }
        }
        if std::env::var_os("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD").is_none() {
            opts.optimizer.hash_join_single_partition_threshold = bytes;
        }
        if std::env::var_os("DATAFUSION_OPTIMIZER_HASH_JOIN_SINGLE_PARTITION_THRESHOLD_ROWS")
            .is_none()
        {
            opts.optimizer.hash_join_single_partition_threshold_rows = rows;
        }
        let view_types = opts.execution.parquet.schema_force_view_types;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime())
            .with_default_features()
            .with_optimizer_rule(Arc::new(crate::decimal::FastDecimalCasts));
        if let Some(limit) = memory_limit() {
            let mut rules = PhysicalOptimizer::new().rules;
            crate::spill::install(&mut rules, spill_cap(limit));
            state = state.with_physical_optimizer_rules(rules);
        }
        let state = state.build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_udf(crate::keys::KeyHash::udf());
        for (url, store) in lake.storage().stores() {
            ctx.register_object_store(&url, store);
        }
        ctx.register_catalog(
            CATALOG,
            Arc::new(
                LakeCatalog::new(lake.clone())
                    .await?
                    .with_masks(masks)
                    .with_view_types(view_types),
            ),
        );
        Ok(Self { lake, ctx })
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The DataFusion context.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plan one SQL statement, with time travel.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let dialect = GridataDialect::default();
        let mut stmts = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()?
            .parse_statements()?;
        if stmts.len() != 1 {
            return Err(Error::Sql(format!(
                "expected one SQL statement, found {}",
                stmts.len()
            )));
        }
        let mut stmt = stmts.pop_front().expect("one statement");
        if let Statement::Statement(s) = &mut stmt {
            timetravel::rewrite(s.as_mut())?;
        }
        let state = self.ctx.state();
        let plan = state.statement_to_plan(stmt).await?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Register a session-local table under an unqualified name, replacing
    /// any earlier one of that name.
    pub fn register(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        self.ctx.register_table(name, table)?;
        Ok(())
    }

    /// Run a query and collect its result.
    pub async fn query(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let df = self.sql(sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    }
}
