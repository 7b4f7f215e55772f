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
use std::sync::{Arc, Mutex};

use ahash::RandomState;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::execution::disk_manager::{DiskManager, RefCountedTempFile};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
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
    ///
    /// The hashes are split by their top bits into [`HashRuns`], each
    /// sorted on its own: eight bytes a row, spilled to disk when the pool
    /// is short, and no hash table of every key.
    pub async fn repeated_key_hashes(
        &self,
        relation: &str,
        columns: &[String],
    ) -> Result<HashSet<i64>> {
        let sql = format!(
            "SELECT {KEY_HASH_FN}({}) AS \"__h\" FROM {relation}",
            columns.join(", ")
        );
        let streams = self.sql(&sql).await?.execute_stream_partitioned().await?;
        let runtime = self.context().runtime_env();
        let reservation = MemoryConsumer::new("RepeatedKeyHashes")
            .with_can_spill(true)
            .register(&runtime.memory_pool);
        let runs = Arc::new(Mutex::new(HashRuns::new(
            reservation,
            Arc::clone(&runtime.disk_manager),
        )));
        let mut tasks = tokio::task::JoinSet::new();
        for mut stream in streams {
            let runs = Arc::clone(&runs);
            tasks.spawn(async move {
                while let Some(batch) = stream.next().await {
                    let hashes = batch?
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .clone();
                    // Adding may spill to a file: off the async workers.
                    let runs = Arc::clone(&runs);
                    tokio::task::spawn_blocking(move || runs.lock().expect("runs").add(&hashes))
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))??;
                }
                Ok::<_, DataFusionError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| DataFusionError::External(Box::new(e)))??;
        }
        let runs = Arc::into_inner(runs)
            .expect("every task joined")
            .into_inner()
            .expect("runs");
        let found = tokio::task::spawn_blocking(move || runs.repeated())
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        Ok(found)
    }
}

/// Buckets of [`HashRuns`], by a hash's top bits.
const RUNS: usize = 256;

/// Key hashes split into [`RUNS`] buckets by their top bits; a bucket
/// spills to a file of its own when the pool has no room.
///
/// Invariant: every hash added is in exactly one bucket, in memory or in
/// its file, so a hash that repeats repeats within one bucket.
struct HashRuns {
    memory: Vec<Vec<i64>>,
    files: Vec<Option<(RefCountedTempFile, std::io::BufWriter<std::fs::File>)>>,
    reservation: MemoryReservation,
    disk: Arc<DiskManager>,
}

impl HashRuns {
    fn new(reservation: MemoryReservation, disk: Arc<DiskManager>) -> Self {
        Self {
            memory: vec![Vec::new(); RUNS],
            files: (0..RUNS).map(|_| None).collect(),
            reservation,
            disk,
        }
    }

    fn bucket(h: i64) -> usize {
        // Hashes are 63-bit and non-negative: bits 55..63 pick the bucket.
        ((h as u64) >> 55) as usize % RUNS
    }

    fn add(&mut self, hashes: &[i64]) -> DfResult<()> {
        // Vectors grow by doubling: reserve for the slack too.
        let need = hashes.len() * 16;
        if self.reservation.try_grow(need).is_err() {
            self.spill()?;
            self.reservation.try_grow(need)?;
        }
        for &h in hashes {
            self.memory[Self::bucket(h)].push(h);
        }
        Ok(())
    }

    /// Appends every bucket in memory to its file.
    fn spill(&mut self) -> DfResult<()> {
        use std::io::Write;
        for (run, file) in self.memory.iter_mut().zip(&mut self.files) {
            if run.is_empty() {
                continue;
            }
            if file.is_none() {
                let tmp = self.disk.create_tmp_file("repeated key hashes")?;
                let f = std::fs::OpenOptions::new().append(true).open(tmp.path())?;
                *file = Some((tmp, std::io::BufWriter::new(f)));
            }
            let (_, out) = file.as_mut().expect("created");
            for h in run.iter() {
                out.write_all(&h.to_le_bytes())?;
            }
            *run = Vec::new();
        }
        for (tmp, out) in self.files.iter_mut().flatten() {
            out.flush()?;
            tmp.update_disk_usage()?;
        }
        self.reservation.free();
        Ok(())
    }

    /// The hashes seen more than once: each bucket sorted on its own.
    fn repeated(mut self) -> DfResult<HashSet<i64>> {
        let mut found = HashSet::new();
        for (run, file) in self.memory.iter_mut().zip(&mut self.files) {
            let mut run = std::mem::take(run);
            if let Some((tmp, out)) = file.take() {
                drop(out);
                let bytes = std::fs::read(tmp.path())?;
                run.extend(
                    bytes
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))),
                );
            }
            run.sort_unstable();
            for w in run.windows(2) {
                if w[0] == w[1] {
                    found.insert(w[0]);
                }
            }
        }
        self.reservation.free();
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

    /// Under a pool too small for the hashes, the runs spill and still
    /// find exactly the repeated ones.
    #[test]
    fn hash_runs_find_the_repeats_in_memory_and_spilled() {
        use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        for (size, spills) in [(1usize << 30, false), (64 << 10, true)] {
            let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(size));
            let env = RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::clone(&pool))
                .build()
                .unwrap();
            let reservation = MemoryConsumer::new("test").register(&pool);
            let mut runs = HashRuns::new(reservation, Arc::clone(&env.disk_manager));
            // 0..50_000 spread over the 63-bit range; every 7th twice, 21st thrice.
            let spread = |i: i64| (i * 0x0000_9e37_79b9_7f4b) & i64::MAX;
            let mut want = HashSet::new();
            for chunk in (0..50_000i64).collect::<Vec<_>>().chunks(1_000) {
                let mut hashes: Vec<i64> = chunk.iter().map(|&i| spread(i)).collect();
                for &i in chunk {
                    if i % 7 == 0 {
                        hashes.push(spread(i));
                        want.insert(spread(i));
                    }
                    if i % 21 == 0 {
                        hashes.push(spread(i));
                    }
                }
                runs.add(&hashes).unwrap();
            }
            let spilled = runs.files.iter().flatten().count();
            assert_eq!(spilled > 0, spills, "pool of {size} bytes");
            assert_eq!(runs.repeated().unwrap(), want);
            assert_eq!(pool.reserved(), 0);
        }
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
