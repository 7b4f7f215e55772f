//! Finding repeated keys without grouping the keys themselves.
//!
//! `GROUP BY key HAVING COUNT(*) > 1` over a table of unique string keys
//! holds (or spills) every key. [`Engine::repeated_key_hashes`] groups a
//! 63-bit hash of the key instead: eight bytes a row whatever the key's
//! width. Its result is a superset of the repeated keys' hashes (two keys
//! may share a hash), so callers then filter the rows with [`KeySet`] and
//! group just those exactly.
//!
//! Invariants:
//! - Every row of a repeated key passes the [`KeySet`] of its input's
//!   repeated hashes, so exact answers over the filtered rows equal the
//!   answers over all rows. A hash collision only adds rows to check.
//! - NULLs hash alike, as `GROUP BY` and `PARTITION BY` group them.
//! - Hashes are only compared within one process: the seeds are fixed, but
//!   no hash is ever stored.

use std::any::Any;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ahash::RandomState;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use futures::StreamExt;

use crate::{Engine, Result};

/// The SQL name of the key hash, registered in every session.
pub const KEY_HASH_FN: &str = "__gridata_key_hash";

fn seeds() -> RandomState {
    RandomState::with_seeds(
        0x6772_6964_6174_6131,
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
    )
}

/// The rows' key hashes, as non-negative `i64`s (63 bits).
fn hash_rows(args: &[ColumnarValue]) -> DfResult<Vec<i64>> {
    if args.is_empty() {
        return exec_err!("{KEY_HASH_FN} needs at least one column");
    }
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let mut hashes = vec![0u64; arrays[0].len()];
    create_hashes(&arrays, &seeds(), &mut hashes)?;
    Ok(hashes.into_iter().map(|h| (h >> 1) as i64).collect())
}

/// `__gridata_key_hash(c1, c2, ...)`: one 63-bit hash of the columns.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyHash {
    signature: Signature,
}

impl KeyHash {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for KeyHash {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        KEY_HASH_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let hashes = hash_rows(&args.args)?;
        Ok(ColumnarValue::Array(
            Arc::new(Int64Array::from(hashes)) as ArrayRef
        ))
    }
}

/// `name(c1, c2, ...)`: whether the columns' key hash is in a set, such as
/// the one [`Engine::repeated_key_hashes`] found.
#[derive(Debug)]
pub struct KeySet {
    name: String,
    hashes: Arc<HashSet<i64>>,
    signature: Signature,
}

impl KeySet {
    /// A function `name` that is true for the rows whose key hash is in
    /// `hashes`.
    pub fn udf(name: impl Into<String>, hashes: HashSet<i64>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            name: name.into(),
            hashes: Arc::new(hashes),
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

impl PartialEq for KeySet {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.hashes, &other.hashes)
    }
}

impl Eq for KeySet {}

impl Hash for KeySet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        Arc::as_ptr(&self.hashes).hash(state);
    }
}

impl ScalarUDFImpl for KeySet {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let hashes = hash_rows(&args.args)?;
        let found: BooleanArray = hashes
            .iter()
            .map(|h| Some(self.hashes.contains(h)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(found)))
    }
}

impl Engine {
    /// The key hashes that occur more than once in `relation` (a table
    /// name or a parenthesised query with an alias), keyed by the SQL
    /// expressions `columns`. Empty when every key is unique.
    pub async fn repeated_key_hashes(
        &self,
        relation: &str,
        columns: &[String],
    ) -> Result<HashSet<i64>> {
        let sql = format!(
            "SELECT \"__h\" FROM (SELECT {KEY_HASH_FN}({}) AS \"__h\" FROM {relation}) AS \"__k\" \
             GROUP BY \"__h\" HAVING COUNT(*) > 1",
            columns.join(", ")
        );
        let mut stream = self.sql(&sql).await?.execute_stream().await?;
        let mut found = HashSet::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let col = batch.column(0).as_primitive::<Int64Type>();
            found.extend(col.iter().flatten());
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};

    fn hashes(arrays: Vec<ArrayRef>) -> Vec<i64> {
        let args: Vec<ColumnarValue> = arrays.into_iter().map(ColumnarValue::Array).collect();
        hash_rows(&args).unwrap()
    }

    #[test]
    fn equal_keys_hash_alike_and_nulls_are_one_key() {
        let h = hashes(vec![
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                Some("a"),
                None,
                None,
            ])),
            Arc::new(Int32Array::from(vec![1, 1, 1, 2, 2])),
        ]);
        assert_eq!(h[0], h[2]);
        assert_ne!(h[0], h[1]);
        assert_eq!(h[3], h[4]);
        assert!(h.iter().all(|v| *v >= 0));
        // Column order is part of the key.
        let swapped = hashes(vec![
            Arc::new(Int32Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["a"])),
        ]);
        assert_ne!(swapped[0], h[0]);
    }

    #[tokio::test]
    async fn repeated_hashes_then_the_set_find_exactly_the_repeated_keys() {
        use datafusion::arrow::array::RecordBatch;
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::prelude::SessionContext;

        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("a"),
                    Some("c"),
                    None,
                    None,
                    Some("a"),
                ])),
                Arc::new(Int32Array::from(vec![1, 2, 3, 4, 5, 6, 7])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch).unwrap();
        ctx.register_udf(KeyHash::udf());
        let repeated = ctx
            .sql(&format!(
                "SELECT {KEY_HASH_FN}(k) AS h FROM t GROUP BY h HAVING COUNT(*) > 1"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let set: HashSet<i64> = repeated
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(set.len(), 2, "'a' and NULL repeat");
        ctx.register_udf(KeySet::udf("dups", set));
        let rows = ctx
            .sql("SELECT n FROM t WHERE dups(k) ORDER BY n")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n: Vec<i32> = rows
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(n, [1, 3, 5, 6, 7]);
    }
}
