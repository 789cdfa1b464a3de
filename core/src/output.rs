//! Where flushed batches of COF lines go: standard output or an append-only file.
//! Sealing, spooling and upload will be further sinks behind the same trait.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A destination for flushed windows. Called from the flusher thread only.
pub trait Sink: Send {
    /// Writes one batch: `ndjson` holds `records` complete COF lines.
    fn write_batch(&mut self, ndjson: &[u8], records: usize) -> io::Result<()>;
}

/// Writes batches to standard output.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn write_batch(&mut self, ndjson: &[u8], _records: usize) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(ndjson)?;
        out.flush()
    }
}

/// Appends batches to a file, creating it if needed.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
}

impl FileSink {
    /// Opens `path` for appending; the error names the path.
    pub fn open(path: &Path) -> io::Result<FileSink> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: {}", path.display(), crate::describe_io_error(&e)),
                )
            })?;
        Ok(FileSink {
            path: path.to_owned(),
            file,
        })
    }
}

impl Sink for FileSink {
    fn write_batch(&mut self, ndjson: &[u8], _records: usize) -> io::Result<()> {
        self.file.write_all(ndjson).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {}", self.path.display(), crate::describe_io_error(&e)),
            )
        })
    }
}

/// Collects batches in memory; for tests.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    /// Every batch written so far, concatenated.
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Sink for MemorySink {
    fn write_batch(&mut self, ndjson: &[u8], _records: usize) -> io::Result<()> {
        self.lines
            .lock()
            .map_err(|_| io::Error::other("memory sink poisoned"))?
            .extend_from_slice(ndjson);
        Ok(())
    }
}
