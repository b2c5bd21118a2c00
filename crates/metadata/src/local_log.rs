//! The metadata log of a single node: one append-only file of framed records.
//!
//! Frame: length u32 (big endian) | CRC-32C u32 of the payload | payload (one JSON-encoded
//! batch of records, applied all or nothing). A torn or corrupt tail left by a crash is cut off
//! on open; everything before it is replayed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strom_codec::batch::crc32c;

use crate::{MetadataError, MetadataImage, MetadataLog, MetadataRecord};

const FILE_NAME: &str = "metadata.log";
/// Largest batch of records accepted in one frame.
const MAX_FRAME: usize = 64 * 1024 * 1024;

struct Inner {
    file: File,
    image: Arc<MetadataImage>,
}

/// A metadata log kept in one local file, fsynced on every append.
pub struct LocalMetadataLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl LocalMetadataLog {
    /// Opens (or creates) the log in `dir` and replays it into an image.
    pub fn open(dir: &Path) -> Result<Self, MetadataError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let mut image = MetadataImage::default();
        let mut pos = 0usize;
        while pos + 8 <= data.len() {
            let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
                as usize;
            let crc =
                u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
            if len > MAX_FRAME || pos + 8 + len > data.len() {
                break;
            }
            let payload = &data[pos + 8..pos + 8 + len];
            if crc32c(payload) != crc {
                break;
            }
            let records: Vec<MetadataRecord> =
                serde_json::from_slice(payload).map_err(|e| MetadataError::Corrupt {
                    position: pos as u64,
                    reason: e.to_string(),
                })?;
            for r in &records {
                image.apply(r);
            }
            pos += 8 + len;
        }
        if pos < data.len() {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = pos,
                dropped_bytes = data.len() - pos,
                "metadata log had a torn tail; truncating it"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok(Self {
            path,
            inner: Mutex::new(Inner {
                file,
                image: Arc::new(image),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl MetadataLog for LocalMetadataLog {
    fn append(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>, MetadataError> {
        let payload =
            serde_json::to_vec(&records).map_err(|e| MetadataError::Encode(e.to_string()))?;
        if payload.len() > MAX_FRAME {
            return Err(MetadataError::Encode(format!(
                "batch of {} bytes too large",
                payload.len()
            )));
        }
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32c(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .image
            .validate(&records)
            .map_err(MetadataError::Conflict)?;
        inner.file.write_all(&frame)?;
        inner.file.sync_data()?;
        let mut next = (*inner.image).clone();
        for r in &records {
            next.apply(r);
        }
        inner.image = Arc::new(next);
        Ok(inner.image.clone())
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .image
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn survives_reopen_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::from_u128(1);
        {
            let log = LocalMetadataLog::open(dir.path()).unwrap();
            log.append(vec![MetadataRecord::Topic {
                name: "a".into(),
                topic_id: id,
            }])
            .unwrap();
            log.append(vec![MetadataRecord::RemoveTopic { topic_id: id }])
                .unwrap();
        }
        // A crash in the middle of the third append leaves half a frame.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
        drop(f);
        let log = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.image().offset, 2);
        assert!(log.image().topic("a").is_none());
        log.append(vec![MetadataRecord::Topic {
            name: "b".into(),
            topic_id: id,
        }])
        .unwrap();
        drop(log);
        let log = LocalMetadataLog::open(dir.path()).unwrap();
        assert!(log.image().topic("b").is_some());
    }
}
