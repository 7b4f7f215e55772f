//! iceberg-rust's `Storage` on top of Gridata's object stores, so that
//! iceberg's writers and manifest readers use the same stores as everything
//! else (local disk or S3), with no second client.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use gridata_storage::Storage;
use gridata_storage::object_store::{ObjectStoreExt, WriteMultipart};
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile,
    Storage as IcebergStorage, StorageConfig, StorageFactory,
};
use iceberg::{Error as IceError, ErrorKind};
use serde::{Deserialize, Serialize};

/// Adapter from [`Storage`] to iceberg's storage trait.
///
/// Serialising it keeps no stores: a deserialised copy errors on use. Gridata
/// never ships it across processes; each process opens its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LakeStorage {
    #[serde(skip)]
    inner: Option<Storage>,
}

/// Build a `FileIO` over `storage`.
pub fn file_io(storage: &Storage) -> FileIO {
    FileIOBuilder::new(Arc::new(LakeStorageFactory {
        inner: Some(storage.clone()),
    }))
    .build()
}

fn err(e: impl std::fmt::Display) -> IceError {
    IceError::new(ErrorKind::Unexpected, e.to_string())
}

impl LakeStorage {
    fn storage(&self) -> iceberg::Result<&Storage> {
        self.inner.as_ref().ok_or_else(|| {
            IceError::new(
                ErrorKind::Unexpected,
                "LakeStorage was deserialised without its object stores",
            )
        })
    }
}

#[async_trait]
#[typetag::serde]
impl IcebergStorage for LakeStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        self.storage()?.exists(path).await.map_err(err)
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let info = self.storage()?.head(path).await.map_err(err)?;
        Ok(FileMetadata { size: info.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        self.storage()?.read(path).await.map_err(err)
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (store, p) = self.storage()?.resolve(path).map_err(err)?;
        Ok(Box::new(Reader { store, path: p }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        self.storage()?.write(path, bs).await.map_err(err)
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (store, p) = self.storage()?.resolve(path).map_err(err)?;
        let upload = store.put_multipart(&p).await.map_err(err)?;
        Ok(Box::new(Writer {
            inner: Some(WriteMultipart::new_with_chunk_size(upload, 8 << 20)),
            buf: BytesMut::new(),
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        self.storage()?.delete(path).await.map_err(err)
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let s = self.storage()?;
        for f in s.list(path).await.map_err(err)? {
            s.delete(&f.uri).await.map_err(err)?;
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let s = self.storage()?;
        while let Some(p) = paths.next().await {
            s.delete(&p).await.map_err(err)?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Factory handing out [`LakeStorage`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LakeStorageFactory {
    #[serde(skip)]
    inner: Option<Storage>,
}

#[typetag::serde]
impl StorageFactory for LakeStorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn IcebergStorage>> {
        Ok(Arc::new(LakeStorage {
            inner: self.inner.clone(),
        }))
    }
}

struct Reader {
    store: Arc<dyn gridata_storage::object_store::ObjectStore>,
    path: gridata_storage::object_store::path::Path,
}

#[async_trait]
impl FileRead for Reader {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.store.get_range(&self.path, range).await.map_err(err)
    }
}

struct Writer {
    inner: Option<WriteMultipart>,
    buf: BytesMut,
}

#[async_trait]
impl FileWrite for Writer {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        let w = self
            .inner
            .as_mut()
            .ok_or_else(|| err("write after close"))?;
        self.buf.extend_from_slice(&bs);
        if self.buf.len() >= 8 << 20 {
            w.write(&self.buf.split());
            w.wait_for_capacity(4).await.map_err(err)?;
        }
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let mut w = self.inner.take().ok_or_else(|| err("closed twice"))?;
        if !self.buf.is_empty() {
            w.write(&self.buf.split());
        }
        w.finish().await.map_err(err)?;
        Ok(())
    }
}
