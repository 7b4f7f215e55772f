//! [`LakeTableProvider`]: an Iceberg snapshot as a DataFusion table.
//!
//! Invariants:
//! - Files come from Iceberg planning (partition and column-statistics
//!   pruning on the pushed-down filters); DataFusion's parallel Parquet
//!   reader scans them, split into `target_partitions` groups.
//! - The scan reports the manifests' exact row count and the files' size
//!   as statistics, which the join planner uses to pick the build side.
//! - Columns are matched by Iceberg field id, never by name, so renamed,
//!   dropped, re-added and widened columns read correctly from old files.
//! - With view types on, string and binary columns are exposed as
//!   `Utf8View`/`BinaryView`; data files keep the table's own types.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result as DFResult, ScalarValue, Statistics, project_schema};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapter, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use gridata_lake::iceberg::expr::{Predicate, Reference};
use gridata_lake::iceberg::spec::Datum;
use gridata_lake::{Lake, LakeTable};
use url::Url;

const FIELD_ID: &str = "PARQUET:field_id";

/// A table at one snapshot, optionally restricted to some data files.
#[derive(Debug, Clone)]
pub struct LakeTableProvider {
    lake: Lake,
    table: LakeTable,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
    only_files: Option<Arc<Vec<String>>>,
}

impl LakeTableProvider {
    /// The table at `snapshot_id` (the current snapshot if `None`), read
    /// with the schema that snapshot was written with.
    pub fn new(
        lake: Lake,
        table: LakeTable,
        snapshot_id: Option<i64>,
    ) -> gridata_lake::Result<Self> {
        let schema = table.arrow_schema(snapshot_id)?;
        let snapshot_id = match snapshot_id {
            Some(id) => Some(id),
            None => table.metadata.current_snapshot_id(),
        };
        Ok(Self {
            lake,
            table,
            snapshot_id,
            schema,
            only_files: None,
        })
    }

    /// Read only these data files of the snapshot (current schema).
    pub fn with_files(mut self, files: Vec<String>) -> Self {
        self.only_files = Some(Arc::new(files));
        self
    }

    /// Read string and binary columns as `Utf8View` / `BinaryView`, as
    /// DataFusion's own Parquet tables do with `schema_force_view_types`:
    /// the reader then points into the pages instead of copying every
    /// value, and grouping and comparing short strings is cheaper.
    /// Batches written back are cast to the table's types.
    pub fn with_view_types(mut self, on: bool) -> Self {
        if on {
            let fields: Vec<Field> = self
                .schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 => {
                        f.as_ref().clone().with_data_type(DataType::Utf8View)
                    }
                    DataType::Binary | DataType::LargeBinary => {
                        f.as_ref().clone().with_data_type(DataType::BinaryView)
                    }
                    _ => f.as_ref().clone(),
                })
                .collect();
            self.schema = Arc::new(Schema::new_with_metadata(
                fields,
                self.schema.metadata().clone(),
            ));
        }
        self
    }

    /// The table.
    pub fn table(&self) -> &LakeTable {
        &self.table
    }

    async fn plan(&self, filters: &[Expr]) -> gridata_lake::Result<Vec<Planned>> {
        let Some(snapshot_id) = self.snapshot_id else {
            return Ok(Vec::new());
        };
        if let Some(files) = &self.only_files {
            let live = self.lake.live_files(&self.table, Some(snapshot_id)).await?;
            return Ok(live
                .into_iter()
                .filter(|f| files.iter().any(|p| p == f.file.file_path()))
                .map(|f| Planned {
                    path: f.file.file_path().to_string(),
                    size: f.file.file_size_in_bytes(),
                    rows: Some(f.file.record_count()),
                })
                .collect());
        }
        let predicate = filters
            .iter()
            .filter_map(to_predicate)
            .reduce(|a, b| a.and(b));
        let table = self.lake.iceberg_table(&self.table)?;
        let plan = |p: Option<Predicate>| {
            let table = &table;
            async move {
                let mut b = table.scan().snapshot_id(snapshot_id).select_all();
                if let Some(p) = p {
                    b = b.with_filter(p);
                }
                let scan = b.build()?;
                use futures::TryStreamExt;
                let tasks: Vec<_> = scan.plan_files().await?.try_collect().await?;
                // Delete files (merge-on-read, written by other engines) are
                // not applied by the Parquet reader: refuse rather than
                // return deleted rows.
                if let Some(t) = tasks.iter().find(|t| !t.deletes.is_empty()) {
                    return Err(gridata_lake::iceberg::Error::new(
                        gridata_lake::iceberg::ErrorKind::FeatureUnsupported,
                        format!(
                            "data file {} has {} delete file(s); reading merge-on-read deletes is not supported yet",
                            t.data_file_path,
                            t.deletes.len()
                        ),
                    ));
                }
                Ok::<_, gridata_lake::iceberg::Error>(
                    tasks
                        .into_iter()
                        .map(|t| Planned {
                            path: t.data_file_path,
                            size: t.file_size_in_bytes,
                            rows: t.record_count,
                        })
                        .collect::<Vec<_>>(),
                )
            }
        };
        match plan(predicate.clone()).await {
            Ok(v) => Ok(v),
            // A predicate iceberg cannot bind only costs pruning, never rows.
            Err(e)
                if predicate.is_some()
                    && e.kind() != gridata_lake::iceberg::ErrorKind::FeatureUnsupported =>
            {
                tracing::debug!(error = %e, "iceberg pruning skipped");
                plan(None).await.map_err(|e| gridata_lake::Error::Iceberg {
                    context: format!("plan scan of '{}'", self.table.name),
                    source: Box::new(e),
                })
            }
            Err(e) => Err(gridata_lake::Error::Iceberg {
                context: format!("plan scan of '{}'", self.table.name),
                source: Box::new(e),
            }),
        }
    }
}

/// A data file Iceberg planning kept.
struct Planned {
    path: String,
    size: u64,
    rows: Option<u64>,
}

/// Table statistics from the manifests: the row count is exact (delete
/// files are refused), so joins pick the smaller build side and
/// `count(*)` needs no scan.
fn statistics(files: &[Planned], schema: &Schema) -> Statistics {
    let mut stats = Statistics::new_unknown(schema);
    if let Some(rows) = files.iter().map(|f| f.rows).sum::<Option<u64>>() {
        stats.num_rows = Precision::Exact(rows as usize);
    }
    stats.total_byte_size = Precision::Inexact(files.iter().map(|f| f.size as usize).sum());
    stats
}

fn df_err(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(e.to_string().into())
}

/// Split a file URI into the store URL DataFusion knows and the object path.
fn split_uri(uri: &str) -> DFResult<(ObjectStoreUrl, String)> {
    let url = Url::parse(uri).map_err(|e| df_err(format!("{uri}: {e}")))?;
    let store = match url.scheme() {
        "file" => ObjectStoreUrl::local_filesystem(),
        s => ObjectStoreUrl::parse(format!("{s}://{}", url.host_str().unwrap_or_default()))?,
    };
    let path = percent_decode(url.path().trim_start_matches('/'));
    Ok((store, path))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[async_trait]
impl TableProvider for LakeTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, f: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; f.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let files = self.plan(filters).await.map_err(df_err)?;
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        let (store_url, _) = split_uri(&files[0].path)?;
        let mut parts = Vec::with_capacity(files.len());
        for f in &files {
            let (_, path) = split_uri(&f.path)?;
            parts.push(PartitionedFile::new(path, f.size));
        }
        let source = ParquetSource::new(TableSchema::from_file_schema(self.schema.clone()))
            .with_table_parquet_options(state.default_table_options().parquet.clone());
        let n = state.config().target_partitions();
        let all = FileGroup::new(parts);
        let groups = FileGroupPartitioner::new()
            .with_target_partitions(n)
            .with_repartition_file_min_size(8 << 20)
            .repartition_file_groups(std::slice::from_ref(&all))
            .unwrap_or_else(|| all.split_files(n));
        let conf = FileScanConfigBuilder::new(store_url, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_expr_adapter(Some(Arc::new(FieldIdAdapterFactory)))
            .with_statistics(statistics(&files, &self.schema))
            .build();
        Ok(DataSourceExec::from_data_source(conf))
    }
}

fn field_id(f: &Field) -> Option<i32> {
    f.metadata().get(FIELD_ID)?.parse().ok()
}

/// Maps table columns to file columns by Iceberg field id.
#[derive(Debug, Default)]
pub struct FieldIdAdapterFactory;

impl PhysicalExprAdapterFactory for FieldIdAdapterFactory {
    fn create(
        &self,
        logical: SchemaRef,
        physical: SchemaRef,
    ) -> DFResult<Arc<dyn PhysicalExprAdapter>> {
        let by_id: HashMap<i32, String> = physical
            .fields()
            .iter()
            .filter_map(|f| field_id(f).map(|id| (id, f.name().clone())))
            .collect();
        if by_id.is_empty() {
            return Ok(Arc::new(DefaultPhysicalExprAdapter::new(logical, physical)));
        }
        let mut rename = HashMap::new();
        let fields: Vec<Field> = logical
            .fields()
            .iter()
            .map(|f| {
                let target = field_id(f)
                    .and_then(|id| by_id.get(&id).cloned())
                    .unwrap_or_else(|| format!("\u{0}missing:{}", f.name()));
                if &target != f.name() {
                    rename.insert(f.name().clone(), target.clone());
                }
                f.as_ref().clone().with_name(target)
            })
            .collect();
        let renamed = Arc::new(Schema::new_with_metadata(
            fields,
            logical.metadata().clone(),
        ));
        Ok(Arc::new(FieldIdAdapter {
            rename,
            inner: DefaultPhysicalExprAdapter::new(renamed, physical),
        }))
    }
}

#[derive(Debug)]
struct FieldIdAdapter {
    rename: HashMap<String, String>,
    inner: DefaultPhysicalExprAdapter,
}

impl PhysicalExprAdapter for FieldIdAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DFResult<Arc<dyn PhysicalExpr>> {
        let expr = expr
            .transform(|e| {
                if let Some(c) = e.as_any().downcast_ref::<Column>()
                    && let Some(n) = self.rename.get(c.name())
                {
                    return Ok(Transformed::yes(
                        Arc::new(Column::new(n, c.index())) as Arc<dyn PhysicalExpr>
                    ));
                }
                Ok(Transformed::no(e))
            })
            .data()?;
        self.inner.rewrite(expr)
    }
}

/// A DataFusion filter as an Iceberg predicate, for file pruning. `None`
/// when some part cannot be expressed (pruning is then skipped for it).
pub fn to_predicate(e: &Expr) -> Option<Predicate> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => match (to_predicate(left), to_predicate(right)) {
                (Some(a), Some(b)) => Some(a.and(b)),
                (Some(a), None) | (None, Some(a)) => Some(a),
                _ => None,
            },
            Operator::Or => Some(to_predicate(left)?.or(to_predicate(right)?)),
            _ => {
                let (col, lit, op) = match (column_name(left), literal(right)) {
                    (Some(c), Some(l)) => (c, l, *op),
                    _ => (column_name(right)?, literal(left)?, op.swap()?),
                };
                let r = Reference::new(col);
                Some(match op {
                    Operator::Eq => r.equal_to(lit),
                    Operator::NotEq => r.not_equal_to(lit),
                    Operator::Lt => r.less_than(lit),
                    Operator::LtEq => r.less_than_or_equal_to(lit),
                    Operator::Gt => r.greater_than(lit),
                    Operator::GtEq => r.greater_than_or_equal_to(lit),
                    _ => return None,
                })
            }
        },
        Expr::IsNull(c) => Some(Reference::new(column_name(c)?).is_null()),
        Expr::IsNotNull(c) => Some(Reference::new(column_name(c)?).is_not_null()),
        Expr::Between(b) if !b.negated => {
            let c = column_name(&b.expr)?;
            Some(
                Reference::new(c.clone())
                    .greater_than_or_equal_to(literal(&b.low)?)
                    .and(Reference::new(c).less_than_or_equal_to(literal(&b.high)?)),
            )
        }
        Expr::InList(l) if !l.negated => {
            let c = column_name(&l.expr)?;
            let vals: Option<Vec<Datum>> = l.list.iter().map(literal).collect();
            Some(Reference::new(c).is_in(vals?))
        }
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<Datum> {
    let Expr::Literal(v, _) = e else { return None };
    Some(match v {
        ScalarValue::Boolean(Some(b)) => Datum::bool(*b),
        ScalarValue::Int8(Some(v)) => Datum::int(*v as i32),
        ScalarValue::Int16(Some(v)) => Datum::int(*v as i32),
        ScalarValue::Int32(Some(v)) => Datum::int(*v),
        ScalarValue::Int64(Some(v)) => Datum::long(*v),
        ScalarValue::Float32(Some(v)) => Datum::float(*v),
        ScalarValue::Float64(Some(v)) => Datum::double(*v),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Datum::string(s),
        ScalarValue::Date32(Some(d)) => Datum::date(*d),
        ScalarValue::TimestampMicrosecond(Some(v), None) => Datum::timestamp_micros(*v),
        ScalarValue::TimestampMicrosecond(Some(v), Some(_)) => Datum::timestamptz_micros(*v),
        ScalarValue::TimestampNanosecond(Some(v), None) => Datum::timestamp_micros(*v / 1000),
        ScalarValue::TimestampNanosecond(Some(v), Some(_)) => Datum::timestamptz_micros(*v / 1000),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn filters_become_iceberg_predicates() {
        let e = col("id").gt(lit(5i64)).and(col("name").eq(lit("x")));
        let p = to_predicate(&e).unwrap().to_string();
        assert!(p.contains("id > 5") && p.contains("name = \"x\""), "{p}");
        // Literal on the left flips the operator.
        let p = to_predicate(&lit(5i64).lt(col("id"))).unwrap().to_string();
        assert!(p.contains("id > 5"), "{p}");
        // Unsupported parts of an OR give no pruning at all.
        assert!(to_predicate(&col("a").eq(lit(1i64)).or(col("b").like(lit("x%")))).is_none());
    }

    #[test]
    fn uris_split_into_store_and_path() {
        let (u, p) = split_uri("s3://bucket/wh/ns/t/data/a.parquet").unwrap();
        assert_eq!(u.as_str(), "s3://bucket/");
        assert_eq!(p, "wh/ns/t/data/a.parquet");
        let (u, p) = split_uri("file:///tmp/x/a%20b.parquet").unwrap();
        assert_eq!(u.as_str(), "file:///");
        assert_eq!(p, "tmp/x/a b.parquet");
    }
}
