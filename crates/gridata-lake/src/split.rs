//! Splitting a batch by partition, column at a time.
//!
//! iceberg 0.10.1's `RecordBatchPartitionSplitter` turns every row's
//! partition values into a `Literal` struct, hashes those, and filters the
//! whole batch once per partition, even when the batch holds one partition.
//! Here the transforms still come from iceberg (`PartitionValueCalculator`),
//! but rows are grouped by their partition values in arrow's row format, a
//! `Literal` is built once per partition, and a batch that falls in one
//! partition passes through without a copy.
//!
//! Invariant: every input row is in exactly one output batch, and rows keep
//! their input order within a partition.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::row::{RowConverter, SortField};
use iceberg::arrow::{PartitionValueCalculator, arrow_struct_to_literal};
use iceberg::spec::{
    Literal, PartitionKey, PartitionSpecRef, SchemaRef as IcebergSchemaRef, StructType,
};

/// Splits batches by a partition spec.
pub(crate) struct PartitionSplitter {
    calculator: PartitionValueCalculator,
    spec: PartitionSpecRef,
    schema: IcebergSchemaRef,
    partition_type: StructType,
    rows: RowConverter,
}

impl PartitionSplitter {
    /// A splitter for a partitioned spec (an unpartitioned one is an error).
    pub(crate) fn try_new(
        schema: IcebergSchemaRef,
        spec: PartitionSpecRef,
    ) -> iceberg::Result<Self> {
        let calculator = PartitionValueCalculator::try_new(&spec, &schema)?;
        let partition_type = calculator.partition_type().clone();
        let fields = match calculator.partition_arrow_type() {
            arrow::datatypes::DataType::Struct(f) => f
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
            other => {
                return Err(iceberg::Error::new(
                    iceberg::ErrorKind::Unexpected,
                    format!("partition type is not a struct: {other}"),
                ));
            }
        };
        let rows = RowConverter::new(fields).map_err(arrow_err)?;
        Ok(Self {
            calculator,
            spec,
            schema,
            partition_type,
            rows,
        })
    }

    /// The batch's rows grouped by partition, partitions in the order
    /// their first row appears.
    pub(crate) fn split(
        &self,
        batch: &RecordBatch,
    ) -> iceberg::Result<Vec<(PartitionKey, RecordBatch)>> {
        if batch.num_rows() == 0 {
            return Ok(vec![]);
        }
        let values = self.calculator.calculate(batch)?;
        let columns: Vec<ArrayRef> = values.as_struct().columns().to_vec();
        let rows = self.rows.convert_columns(&columns).map_err(arrow_err)?;
        let first = rows.row(0);
        if (1..rows.num_rows()).all(|i| rows.row(i) == first) {
            return Ok(vec![(self.key(&values, 0)?, batch.clone())]);
        }
        let mut slot: HashMap<arrow::row::Row<'_>, usize> = HashMap::new();
        let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
        for i in 0..rows.num_rows() {
            let g = *slot.entry(rows.row(i)).or_insert_with(|| {
                groups.push((i, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i as u32);
        }
        groups
            .into_iter()
            .map(|(first, idx)| {
                let part = take_record_batch(batch, &UInt32Array::from(idx)).map_err(arrow_err)?;
                Ok((self.key(&values, first)?, part))
            })
            .collect()
    }

    fn key(&self, values: &ArrayRef, row: usize) -> iceberg::Result<PartitionKey> {
        let one = values.slice(row, 1);
        let data = match arrow_struct_to_literal(&one, &self.partition_type)?.pop() {
            Some(Some(Literal::Struct(s))) => s,
            _ => {
                return Err(iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    "partition value is not a struct",
                ));
            }
        };
        Ok(PartitionKey::new(
            self.spec.as_ref().clone(),
            self.schema.clone(),
            data,
        ))
    }
}

fn arrow_err(e: arrow::error::ArrowError) -> iceberg::Error {
    iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use iceberg::arrow::schema_to_arrow_schema;
    use iceberg::spec::{
        NestedField, PartitionSpec, PrimitiveType, Schema, Transform, Type, UnboundPartitionField,
    };

    fn setup() -> (IcebergSchemaRef, PartitionSpecRef) {
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
                NestedField::optional(3, "country", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let spec = PartitionSpec::builder(schema.clone())
            .add_unbound_fields(vec![
                UnboundPartitionField::builder()
                    .source_id(2)
                    .name("ts_month".into())
                    .transform(Transform::Month)
                    .build(),
                UnboundPartitionField::builder()
                    .source_id(3)
                    .name("country".into())
                    .transform(Transform::Identity)
                    .build(),
            ])
            .unwrap()
            .build()
            .unwrap();
        (Arc::new(schema), Arc::new(spec))
    }

    fn batch(schema: &Schema, ts: Vec<Option<i64>>, country: Vec<Option<&str>>) -> RecordBatch {
        let arrow = Arc::new(schema_to_arrow_schema(schema).unwrap());
        let n = ts.len() as i64;
        RecordBatch::try_new(
            arrow,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
                Arc::new(StringArray::from(country)),
            ],
        )
        .unwrap()
    }

    const JAN: i64 = 1_767_225_600_000_000; // 2026-01-01
    const FEB: i64 = 1_769_904_000_000_000; // 2026-02-01

    #[test]
    fn rows_are_grouped_by_partition_in_order() {
        let (schema, spec) = setup();
        let s = PartitionSplitter::try_new(schema.clone(), spec).unwrap();
        let b = batch(
            &schema,
            vec![Some(JAN), Some(FEB), Some(JAN + 5), None, Some(FEB + 1)],
            vec![Some("DE"), Some("DE"), Some("DE"), Some("NL"), Some("DE")],
        );
        let parts = s.split(&b).unwrap();
        let got: Vec<(String, Vec<i64>)> = parts
            .iter()
            .map(|(k, b)| {
                let ids = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                (format!("{:?}", k.data()), ids.values().to_vec())
            })
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, vec![0, 2]);
        assert_eq!(got[1].1, vec![1, 4]);
        assert_eq!(got[2].1, vec![3]);
        assert!(got[0].0.contains("Int(672)"), "{}", got[0].0); // months since 1970
        assert!(got[1].0.contains("Int(673)"), "{}", got[1].0);
        assert!(
            got[2].0.contains("None") && got[2].0.contains("NL"),
            "{}",
            got[2].0
        );
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 5);
    }

    #[test]
    fn one_partition_passes_the_batch_through() {
        let (schema, spec) = setup();
        let s = PartitionSplitter::try_new(schema.clone(), spec).unwrap();
        let b = batch(&schema, vec![Some(JAN); 3], vec![Some("DE"); 3]);
        let parts = s.split(&b).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(
            Arc::ptr_eq(parts[0].1.column(2), b.column(2)),
            "a single-partition batch is not copied"
        );
        assert!(s.split(&b.slice(0, 0)).unwrap().is_empty());
    }

    #[test]
    fn keys_match_iceberg_splitter() {
        let (schema, spec) = setup();
        let ours = PartitionSplitter::try_new(schema.clone(), spec.clone()).unwrap();
        let theirs = iceberg::arrow::RecordBatchPartitionSplitter::try_new_with_computed_values(
            schema.clone(),
            spec,
        )
        .unwrap();
        let b = batch(
            &schema,
            vec![Some(JAN), None, Some(FEB), Some(JAN)],
            vec![Some("DE"), Some("FR"), None, Some("DE")],
        );
        let mut a: Vec<(String, usize)> = ours
            .split(&b)
            .unwrap()
            .into_iter()
            .map(|(k, b)| (k.to_path(), b.num_rows()))
            .collect();
        let mut t: Vec<(String, usize)> = theirs
            .split(&b)
            .unwrap()
            .into_iter()
            .map(|(k, b)| (k.to_path(), b.num_rows()))
            .collect();
        a.sort();
        t.sort();
        assert_eq!(a, t);
    }
}
