//! Arrow batches to ZSTD Parquet data files, split by the table's partition
//! spec, rolled at the target file size, with Iceberg column statistics.

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::SchemaRef;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::lake::{Lake, LakeTable};
use crate::{Error, Result};

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Roll to a new file past this many bytes.
    pub target_file_size: usize,
    /// ZSTD level.
    pub zstd_level: i32,
    /// A column chunk's dictionary grows to this many bytes; past it the
    /// chunk falls back to plain encoding and stops hashing its values.
    pub dict_size: usize,
}

impl WriteOptions {
    /// Options from the table's properties (`write.target-file-size-bytes`,
    /// `write.parquet.compression-level`, `write.parquet.dict-size-bytes`),
    /// with Iceberg's defaults except the dictionary size (arrow-rs').
    pub fn for_table(table: &LakeTable) -> Self {
        let p = table.metadata.properties();
        Self {
            target_file_size: p
                .get("write.target-file-size-bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(512 << 20),
            zstd_level: p
                .get("write.parquet.compression-level")
                .and_then(|v| v.parse().ok())
                .unwrap_or(3),
            dict_size: p
                .get("write.parquet.dict-size-bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_DICT_SIZE),
        }
    }
}

/// Default dictionary page limit of data files: arrow-rs' and parquet-mr's
/// 1 MiB (Iceberg Java: 2 MiB). Smaller limits write faster but read slower
/// (decision 0010).
pub const DEFAULT_DICT_SIZE: usize = 1 << 20;

/// Dictionary page limit of staged Parquet, which is written once and read
/// once or twice: mostly distinct text columns (ids, addresses) stop being
/// hashed after a few thousand values.
pub const STAGED_DICT_SIZE: usize = 64 << 10;

/// Make `batch` fit the table's Arrow schema: columns by name, cast to the
/// table's types, missing optional columns as nulls. Extra columns, missing
/// required columns, failed casts and nulls in required columns are errors
/// naming the column.
pub fn conform_batch(table: &str, batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let mismatch = |reason: String| Error::DataMismatch {
        table: table.to_string(),
        reason,
    };
    let src = batch.schema();
    for f in src.fields() {
        if target.field_with_name(f.name()).is_err() {
            return Err(mismatch(format!(
                "column '{}' is not in the table",
                f.name()
            )));
        }
    }
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        let col = match src.index_of(f.name()) {
            Ok(i) => {
                let c = batch.column(i);
                if c.data_type() == f.data_type() {
                    c.clone()
                } else {
                    cast_with_options(c, f.data_type(), &opts).map_err(|e| {
                        mismatch(format!(
                            "column '{}': cannot convert {} to {}: {e}",
                            f.name(),
                            c.data_type(),
                            f.data_type()
                        ))
                    })?
                }
            }
            Err(_) if f.is_nullable() => new_null_array(f.data_type(), batch.num_rows()),
            Err(_) => {
                return Err(mismatch(format!(
                    "required column '{}' is missing",
                    f.name()
                )));
            }
        };
        if !f.is_nullable() && col.null_count() > 0 {
            return Err(mismatch(format!(
                "required column '{}' has {} null value(s)",
                f.name(),
                col.null_count()
            )));
        }
        cols.push(col);
    }
    RecordBatch::try_new(target.clone(), cols).map_err(|e| mismatch(e.to_string()))
}

/// Batches for one writer.
pub type BatchStream = std::pin::Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

impl Lake {
    /// Write batches as data files of `table` (not yet committed). Each
    /// stream gets its own writer on its own task, so encoding runs on as
    /// many cores as there are streams; a partition gets one file (or more,
    /// past the target size) per stream. The files come back in stream
    /// order.
    pub async fn write_files(
        &self,
        table: &LakeTable,
        streams: Vec<BatchStream>,
    ) -> Result<Vec<DataFile>> {
        let opts = WriteOptions::for_table(table);
        let schema = table.metadata.current_schema().clone();
        let spec = table.metadata.default_partition_spec().clone();
        let target = table.arrow_schema(None)?;
        let name = table.name.to_string();
        let ctx = move |what: &str| format!("write data files of '{name}': {what}");

        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(opts.zstd_level).unwrap_or_default(),
            ))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(1 << 20))
            .set_dictionary_page_size_limit(opts.dict_size)
            .build();
        let location = DefaultLocationGenerator::new(table.metadata.as_ref())
            .map_err(Error::iceberg(ctx("location")))?;
        // One generator for every writer: its counter is shared, so names
        // never collide.
        let names = DefaultFileNameGenerator::new(
            uuid::Uuid::now_v7().to_string(),
            None,
            DataFileFormat::Parquet,
        );
        let splitter = if spec.is_unpartitioned() {
            None
        } else {
            Some(Arc::new(
                crate::split::PartitionSplitter::try_new(schema.clone(), spec)
                    .map_err(Error::iceberg(ctx("partition")))?,
            ))
        };

        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut batches) in streams.into_iter().enumerate() {
            let builder = DataFileWriterBuilder::new(RollingFileWriterBuilder::new(
                ParquetWriterBuilder::new(props.clone(), schema.clone()),
                opts.target_file_size,
                self.file_io().clone(),
                location.clone(),
                names.clone(),
            ));
            let (splitter, target, ctx) = (splitter.clone(), target.clone(), ctx.clone());
            let name = table.name.to_string();
            tasks.spawn(async move {
                let mut files = Vec::new();
                match splitter {
                    None => {
                        let mut w = builder
                            .build(None)
                            .await
                            .map_err(Error::iceberg(ctx("open")))?;
                        while let Some(b) = batches.next().await {
                            let b = conform_batch(&name, &b?, &target)?;
                            w.write(b).await.map_err(Error::iceberg(ctx("write")))?;
                        }
                        files.extend(w.close().await.map_err(Error::iceberg(ctx("close")))?);
                    }
                    Some(splitter) => {
                        let mut w = FanoutWriter::new(builder);
                        while let Some(b) = batches.next().await {
                            let b = conform_batch(&name, &b?, &target)?;
                            for (key, part) in splitter
                                .split(&b)
                                .map_err(Error::iceberg(ctx("partition")))?
                            {
                                w.write(key, part)
                                    .await
                                    .map_err(Error::iceberg(ctx("write")))?;
                            }
                        }
                        files.extend(w.close().await.map_err(Error::iceberg(ctx("close")))?);
                    }
                }
                Ok::<_, Error>((i, files))
            });
        }
        let mut done: Vec<(usize, Vec<DataFile>)> = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(files)) => done.push(files),
                // The first failure wins; the other writers are dropped with
                // the set and their files left for orphan cleanup.
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(Error::Format {
                        context: format!("write data files of '{}'", table.name),
                        reason: format!("writer task failed: {e}"),
                    });
                }
            }
        }
        done.sort_by_key(|(i, _)| *i);
        Ok(done.into_iter().flat_map(|(_, f)| f).collect())
    }
}
