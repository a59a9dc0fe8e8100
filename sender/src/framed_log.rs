//! An append-only, checksummed log of frames in rotating files: the storage under both the spool
//! and the sealed-segment log.
//!
//! A frame is `length u32 LE ‖ id u64 LE ‖ check (first 8 bytes of blake3(id ‖ content)) ‖ content`.
//! Ids grow strictly. Files are named by the id of their first frame (or of a first append that
//! failed: no id in a file is below its name), so whole files can be dropped once everything in
//! them is no longer needed.
//!
//! Faults:
//! - A crash during an append leaves a torn or corrupt tail, cut off on open: such a frame was
//!   never acknowledged, because appends are acknowledged only after they return. A file left with
//!   no frame at all (a crash between its creation and its first frame reaching the disk) is
//!   removed.
//! - A failed append (ENOSPC, EIO, a failed fdatasync) is undone at once: the file is cut back to
//!   where the append began, so nothing of it stays in front of later frames (where recovery would
//!   stop, dropping them), and the same ids can be appended again. If even that fails, the log
//!   refuses every later write ([`LogError::Stuck`]) until it is opened again, which cuts the
//!   tail off as after a crash.
//!
//! The log's writes go through `Disk` and `LogFile`: real files in production, and in tests a
//! disk that runs out of space or fails a sync on demand (`faults`), over the same real files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FRAME_HEADER_BYTES: usize = 4 + 8 + 8;
/// Largest frame content accepted; a larger length on disk means corruption.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
const FILE_PREFIX: &str = "log-";
const FILE_SUFFIX: &str = ".frames";

/// Where a frame lives, for reading it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLocation {
    /// The id of the first frame in its file, which names the file.
    pub file_first_id: u64,
    /// Byte offset of the frame in that file.
    pub offset: u64,
    /// Bytes of the frame's content (header and checksum excluded).
    pub content_bytes: u32,
}

/// One recovered frame, in id order.
pub struct RecoveredFrame {
    /// The id it was appended with.
    pub id: u64,
    /// Where it is.
    pub location: FrameLocation,
    /// Its content, checksum verified.
    pub content: Vec<u8>,
}

/// The directory operations of a log's writes.
pub(crate) trait Disk: Send + Sync {
    /// Creates `path`, which must not exist yet, for appending.
    fn create_file(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Creates the directory `path` (its parent exists).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` (files created or removed in it) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
}

/// The file a log appends to.
pub(crate) trait LogFile: Send {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
    fn sync_all(&mut self) -> io::Result<()>;
    /// Cuts the file to `length` bytes; the next write goes there.
    fn truncate(&mut self, length: u64) -> io::Result<()>;
}

/// The machine's file system.
pub(crate) struct RealDisk;

impl Disk for RealDisk {
    fn create_file(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(OpenOptions::new().create_new(true).append(true).open(path)?))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

impl LogFile for File {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn truncate(&mut self, length: u64) -> io::Result<()> {
        self.set_len(length)?;
        self.seek(SeekFrom::Start(length))?;
        Ok(())
    }
}

/// Creates directory `path` and whatever of its parents is missing, and makes each new entry
/// durable by syncing the directory it was added to: a power cut must not take back a directory
/// whose contents were synced (a segment log, or the spool, would then look lost).
pub(crate) fn create_dirs_synced(disk: &dyn Disk, path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dirs_synced(disk, parent)?;
    match disk.create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        result => result?,
    }
    disk.sync_dir(parent)
}

/// Why an append failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// Nothing of the append is left: the log is as it was, and the same ids can be appended again.
    #[error("{0}")]
    Failed(Arc<io::Error>),
    /// A failed append could not be undone; the log refuses writes until it is opened again.
    #[error(
        "a failed write ({cause}) could not be undone ({undo}); the log refuses writes until it is opened again \
         (a restart)"
    )]
    Stuck {
        /// Why the append failed.
        cause: Arc<io::Error>,
        /// Why undoing it failed.
        undo: Arc<io::Error>,
    },
}

impl LogError {
    fn failed(error: io::Error) -> LogError {
        LogError::Failed(Arc::new(error))
    }

    /// The kind of the write's own failure.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            LogError::Failed(cause) | LogError::Stuck { cause, .. } => cause.kind(),
        }
    }
}

impl From<LogError> for io::Error {
    fn from(error: LogError) -> io::Error {
        io::Error::new(error.kind(), error)
    }
}

/// ENOSPC, EDQUOT or EFBIG: the write needs room the disk does not have.
pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge)
}

/// The file being appended to.
struct Current {
    first_id: u64,
    file: Box<dyn LogFile>,
    size: u64,
}

/// An append-only log of checksummed frames with increasing ids, in files of bounded size in one
/// directory; the spool and the segment log are each one.
pub struct FramedLog {
    dir: PathBuf,
    max_file_bytes: u64,
    disk: Arc<dyn Disk>,
    current: Option<Current>,
    last_id: Option<u64>,
    /// (first id, size in bytes) of every file, oldest first.
    files: Vec<(u64, u64)>,
    /// Set when a failed append could not be undone: every later append is refused with it.
    stuck: Option<LogError>,
}

impl FramedLog {
    /// Opens (creating if needed) the log in `dir`, calling `visit` for every intact frame in order,
    /// cutting off a damaged tail and removing files that hold no frame.
    pub fn open(dir: &Path, max_file_bytes: u64, visit: impl FnMut(RecoveredFrame)) -> io::Result<FramedLog> {
        Self::open_on(Arc::new(RealDisk), dir, max_file_bytes, visit)
    }

    /// [`FramedLog::open`], writing through `disk`.
    pub(crate) fn open_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        max_file_bytes: u64,
        mut visit: impl FnMut(RecoveredFrame),
    ) -> io::Result<FramedLog> {
        create_dirs_synced(&*disk, dir)?;
        let mut first_ids = list_files(dir)?;
        first_ids.sort_unstable();
        let mut log = FramedLog {
            dir: dir.to_owned(),
            max_file_bytes,
            disk,
            current: None,
            last_id: None,
            files: Vec::new(),
            stuck: None,
        };
        let mut removed = false;
        for (index, first_id) in first_ids.iter().copied().enumerate() {
            let path = log.path_of(first_id);
            let intact_bytes = log.recover_file(first_id, &mut visit)?;
            let file_bytes = fs::metadata(&path)?.len();
            if file_bytes == 0 {
                // Created, then a crash before its first frame reached the disk. Left in place, its
                // name would be taken when the next append starts a file under the same id.
                tracing::warn!(file = %path.display(), "removing an empty log file (created just before a crash)");
                fs::remove_file(&path)?;
                removed = true;
                continue;
            }
            if intact_bytes < file_bytes {
                if intact_bytes == 0 {
                    tracing::warn!(
                        file = %path.display(), file_bytes,
                        "removing a log file that holds no intact frame (its first append was interrupted by a crash)"
                    );
                    fs::remove_file(&path)?;
                } else {
                    tracing::warn!(
                        file = %path.display(), intact_bytes, file_bytes,
                        "cutting a damaged tail off the log (an append interrupted by a crash)"
                    );
                    OpenOptions::new().write(true).open(&path)?.set_len(intact_bytes)?;
                    log.files.push((first_id, intact_bytes));
                }
                // Later files cannot be trusted to follow on from a damaged one.
                for later in &first_ids[index + 1..] {
                    tracing::warn!(file = %log.path_of(*later).display(), "removing a log file that follows a damaged one");
                    fs::remove_file(log.path_of(*later))?;
                }
                removed = true;
                break;
            }
            log.files.push((first_id, file_bytes));
        }
        if removed {
            // Made durable before the next append may reuse a removed file's name.
            log.disk.sync_dir(dir)?;
        }
        Ok(log)
    }

    fn recover_file(&mut self, first_id: u64, visit: &mut impl FnMut(RecoveredFrame)) -> io::Result<u64> {
        let mut reader = BufReader::new(File::open(self.path_of(first_id))?);
        let mut offset = 0u64;
        loop {
            match read_frame(&mut reader)? {
                Some((id, content)) if self.last_id.is_none_or(|last| id > last) => {
                    let location =
                        FrameLocation { file_first_id: first_id, offset, content_bytes: content.len() as u32 };
                    offset += (FRAME_HEADER_BYTES + content.len()) as u64;
                    self.last_id = Some(id);
                    visit(RecoveredFrame { id, location, content });
                }
                _ => return Ok(offset),
            }
        }
    }

    fn path_of(&self, first_id: u64) -> PathBuf {
        file_path(&self.dir, first_id)
    }

    /// The id of the last frame appended or recovered; `None` while the log is empty.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// Total bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|(_, size)| size).sum()
    }

    /// Appends a frame; `id` must exceed every id before it. With `sync`, the frame is on stable
    /// storage when this returns. On error nothing of it is left (see [`LogError`]).
    pub fn append(&mut self, id: u64, content: &[u8], sync: bool) -> Result<FrameLocation, LogError> {
        Ok(self.append_all(id, &[content], sync)?[0])
    }

    /// Appends frames with ids `first_id`, `first_id + 1`, … in one write, all of them or none:
    /// on error nothing of them is left. `first_id` must exceed every id before it. With `sync`,
    /// they are on stable storage when this returns.
    pub fn append_all(
        &mut self,
        first_id: u64,
        contents: &[impl AsRef<[u8]>],
        sync: bool,
    ) -> Result<Vec<FrameLocation>, LogError> {
        if let Some(stuck) = &self.stuck {
            return Err(stuck.clone());
        }
        assert!(!contents.is_empty(), "an append of no frame");
        assert!(
            self.last_id.is_none_or(|last| first_id > last),
            "frame ids must grow: {first_id} after {:?}",
            self.last_id
        );
        let rotate = match &self.current {
            Some(current) => current.size >= self.max_file_bytes,
            None => true,
        };
        if rotate {
            self.start_file(first_id)?;
        }
        let current = self.current.as_mut().expect("a current file after rotation");
        let total: usize = contents.iter().map(|content| FRAME_HEADER_BYTES + content.as_ref().len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut locations = Vec::with_capacity(contents.len());
        for (id, content) in (first_id..).zip(contents) {
            let content = content.as_ref();
            assert!(content.len() <= MAX_FRAME_BYTES, "frame of {} bytes exceeds the limit", content.len());
            let offset = current.size + bytes.len() as u64;
            locations.push(FrameLocation {
                file_first_id: current.first_id,
                offset,
                content_bytes: content.len() as u32,
            });
            bytes.extend_from_slice(&(content.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&check(id, content));
            bytes.extend_from_slice(content);
        }
        let written =
            current.file.write_all(&bytes).and_then(|()| if sync { current.file.sync_data() } else { Ok(()) });
        if let Err(cause) = written {
            // Whatever reached the file must not stay in front of the frames appended next (which
            // recovery would then cut off), nor be taken for an acknowledged frame.
            let undone = current.file.truncate(current.size);
            return Err(self.failed(cause, undone));
        }
        current.size += bytes.len() as u64;
        let file_first_id = current.first_id;
        if let Some(entry) = self.files.iter_mut().rev().find(|(id, _)| *id == file_first_id) {
            entry.1 += bytes.len() as u64;
        }
        self.last_id = Some(first_id + contents.len() as u64 - 1);
        Ok(locations)
    }

    /// The error for a failed write, `undone` or not; a write that could not be undone makes the
    /// log refuse every later one.
    fn failed(&mut self, cause: io::Error, undone: io::Result<()>) -> LogError {
        match undone {
            Ok(()) => LogError::failed(cause),
            Err(undo) => {
                let error = LogError::Stuck { cause: Arc::new(cause), undo: Arc::new(undo) };
                tracing::error!(dir = %self.dir.display(), "{error}");
                self.stuck = Some(error.clone());
                error
            }
        }
    }

    fn start_file(&mut self, first_id: u64) -> Result<(), LogError> {
        // The file being left must be whole on disk before frames go to the next one.
        if let Some(current) = &mut self.current {
            current.file.sync_all().map_err(LogError::failed)?;
        }
        let path = self.path_of(first_id);
        let file = self.disk.create_file(&path).map_err(LogError::failed)?;
        // The new file's name must be durable before a frame in it is acknowledged; if it cannot
        // be made so, the file goes, or its name would be taken when the next append tries again.
        if let Err(cause) = self.disk.sync_dir(&self.dir) {
            drop(file);
            let undone = self.disk.remove_file(&path);
            return Err(self.failed(cause, undone));
        }
        self.files.push((first_id, 0));
        self.current = Some(Current { first_id, file, size: 0 });
        Ok(())
    }

    /// Reads one frame's content back and checks it.
    pub fn read(&self, location: FrameLocation) -> io::Result<Vec<u8>> {
        read_at(&self.dir, location)
    }

    /// Removes whole files all of whose frames have ids `< keep_from_id`, except the one being
    /// written. Returns the bytes freed.
    pub fn drop_before(&mut self, keep_from_id: u64) -> io::Result<u64> {
        let current_first = self.current.as_ref().map(|current| current.first_id);
        let mut freed = 0;
        while self.files.len() >= 2 && self.files[1].0 <= keep_from_id {
            let (first_id, size) = self.files[0];
            if Some(first_id) == current_first {
                break;
            }
            fs::remove_file(self.path_of(first_id))?;
            self.files.remove(0);
            freed += size;
        }
        Ok(freed)
    }

    /// Id of the first frame of every file, oldest first, with its size.
    pub fn files(&self) -> &[(u64, u64)] {
        &self.files
    }
}

/// Visits every intact frame of a log without changing anything, for readers in other
/// processes (such as `resend`) while the owner may be appending. Stops at the first damaged
/// frame of each file, which may be an append in progress.
pub fn scan(dir: &Path, mut visit: impl FnMut(RecoveredFrame)) -> io::Result<()> {
    let mut first_ids = list_files(dir)?;
    first_ids.sort_unstable();
    for first_id in first_ids {
        let path = file_path(dir, first_id);
        let mut reader = BufReader::new(File::open(path)?);
        let mut offset = 0u64;
        while let Some((id, content)) = read_frame(&mut reader)? {
            let location = FrameLocation { file_first_id: first_id, offset, content_bytes: content.len() as u32 };
            offset += (FRAME_HEADER_BYTES + content.len()) as u64;
            visit(RecoveredFrame { id, location, content });
        }
    }
    Ok(())
}

/// Reads a frame from a log directory without opening the log (for readers in other threads or
/// processes, such as `resend`).
pub fn read_at(dir: &Path, location: FrameLocation) -> io::Result<Vec<u8>> {
    let path = file_path(dir, location.file_first_id);
    let mut file = File::open(&path)?;
    file.seek(SeekFrom::Start(location.offset))?;
    match read_frame(&mut file)? {
        Some((_, content)) if content.len() == location.content_bytes as usize => Ok(content),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame at {}:{} is damaged or missing", path.display(), location.offset),
        )),
    }
}

/// The file of a log in `dir` whose first frame is `first_id`.
pub(crate) fn file_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{FILE_PREFIX}{first_id:020}{FILE_SUFFIX}"))
}

fn list_files(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_prefix(FILE_PREFIX).and_then(|rest| rest.strip_suffix(FILE_SUFFIX))
            && let Ok(id) = id.parse()
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn check(id: u64, content: &[u8]) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&id.to_le_bytes());
    hasher.update(content);
    hasher.finalize().as_bytes()[..8].try_into().expect("8 bytes")
}

/// Reads the next frame; `None` at a clean end or at a torn or corrupt frame.
fn read_frame(reader: &mut impl Read) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    if !read_exact_or_eof(reader, &mut header)? {
        return Ok(None);
    }
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let id = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
    if length > MAX_FRAME_BYTES {
        return Ok(None);
    }
    let mut content = vec![0u8; length];
    if !read_exact_or_eof(reader, &mut content)? || check(id, &content) != header[12..20] {
        return Ok(None);
    }
    Ok(Some((id, content)))
}

fn read_exact_or_eof(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A disk that fails the way real ones do, over real files, for tests: a write beyond its free
/// space writes what fits and then fails with "no space left on device" (as a full file system
/// does), and syncs, truncations and directory syncs can be made to fail with an I/O error.
#[cfg(test)]
pub(crate) mod faults {
    use super::*;
    use std::sync::Mutex;

    const ENOSPC: i32 = 28;
    const EIO: i32 = 5;

    #[derive(Default)]
    struct State {
        /// Bytes that may still be written; `None`: as much as the real disk takes.
        space_left: Option<u64>,
        failing_syncs: u32,
        failing_truncates: u32,
        failing_dir_syncs: u32,
        /// Directory operations, in order: what was done and to which path.
        operations: Vec<(&'static str, PathBuf)>,
    }

    /// Cheap to clone; clones share their state, so a test keeps one to steer the disk a log uses.
    #[derive(Clone, Default)]
    pub(crate) struct FaultyDisk {
        state: Arc<Mutex<State>>,
        /// Faults apply only to paths under this one (all paths when `None`).
        under: Option<PathBuf>,
    }

    impl FaultyDisk {
        pub(crate) fn new() -> FaultyDisk {
            FaultyDisk::default()
        }

        /// The same disk, whose faults apply only under `path`.
        pub(crate) fn only_under(&self, path: &Path) -> FaultyDisk {
            FaultyDisk { state: Arc::clone(&self.state), under: Some(path.to_owned()) }
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap()
        }

        /// From now on only `bytes` more can be written.
        pub(crate) fn limit_space(&self, bytes: u64) {
            self.state().space_left = Some(bytes);
        }

        /// No limit any more (an operator freed space).
        pub(crate) fn free_space(&self) {
            self.state().space_left = None;
        }

        pub(crate) fn fail_syncs(&self, count: u32) {
            self.state().failing_syncs = count;
        }

        pub(crate) fn fail_truncates(&self, count: u32) {
            self.state().failing_truncates = count;
        }

        pub(crate) fn fail_dir_syncs(&self, count: u32) {
            self.state().failing_dir_syncs = count;
        }

        pub(crate) fn operations(&self) -> Vec<(&'static str, PathBuf)> {
            self.state().operations.clone()
        }

        fn applies_to(&self, path: &Path) -> bool {
            self.under.as_ref().is_none_or(|under| path.starts_with(under))
        }
    }

    /// Takes one of `count` pending failures, if any.
    fn take(count: &mut u32) -> bool {
        let failing = *count > 0;
        *count = count.saturating_sub(1);
        failing
    }

    impl Disk for FaultyDisk {
        fn create_file(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
            self.state().operations.push(("create_file", path.to_owned()));
            let file = OpenOptions::new().create_new(true).append(true).open(path)?;
            if !self.applies_to(path) {
                return Ok(Box::new(file));
            }
            Ok(Box::new(FaultyFile { disk: self.clone(), file, length: 0 }))
        }

        fn create_dir(&self, path: &Path) -> io::Result<()> {
            self.state().operations.push(("create_dir", path.to_owned()));
            RealDisk.create_dir(path)
        }

        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            let mut state = self.state();
            state.operations.push(("sync_dir", path.to_owned()));
            if self.applies_to(path) && take(&mut state.failing_dir_syncs) {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            RealDisk.sync_dir(path)
        }

        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.state().operations.push(("remove_file", path.to_owned()));
            RealDisk.remove_file(path)
        }
    }

    struct FaultyFile {
        disk: FaultyDisk,
        file: File,
        length: u64,
    }

    impl LogFile for FaultyFile {
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            let mut state = self.disk.state();
            let room = state.space_left.map_or(bytes.len(), |left| left.min(bytes.len() as u64) as usize);
            Write::write_all(&mut self.file, &bytes[..room])?;
            self.length += room as u64;
            if let Some(left) = &mut state.space_left {
                *left -= room as u64;
            }
            if room < bytes.len() {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            Ok(())
        }

        fn sync_data(&mut self) -> io::Result<()> {
            if take(&mut self.disk.state().failing_syncs) {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            self.file.sync_data()
        }

        fn sync_all(&mut self) -> io::Result<()> {
            if take(&mut self.disk.state().failing_syncs) {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            self.file.sync_all()
        }

        fn truncate(&mut self, length: u64) -> io::Result<()> {
            let mut state = self.disk.state();
            if take(&mut state.failing_truncates) {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            LogFile::truncate(&mut self.file, length)?;
            if let Some(left) = &mut state.space_left {
                *left += self.length.saturating_sub(length);
            }
            self.length = length;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recover(dir: &Path) -> (FramedLog, Vec<(u64, Vec<u8>)>) {
        let mut frames = Vec::new();
        let log = FramedLog::open(dir, 100, |frame| frames.push((frame.id, frame.content))).unwrap();
        (log, frames)
    }

    fn recover_on(disk: &faults::FaultyDisk, dir: &Path) -> (FramedLog, Vec<(u64, Vec<u8>)>) {
        let mut frames = Vec::new();
        let disk = Arc::new(disk.clone());
        let log = FramedLog::open_on(disk, dir, 100, |frame| frames.push((frame.id, frame.content))).unwrap();
        (log, frames)
    }

    fn frames(list: &[(u64, &str)]) -> Vec<(u64, Vec<u8>)> {
        list.iter().map(|(id, content)| (*id, content.as_bytes().to_vec())).collect()
    }

    #[test]
    fn frames_survive_reopening_in_order_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = recover(dir.path());
        for id in 1..=20u64 {
            log.append(id, &[id as u8; 30], true).unwrap();
        }
        assert!(log.files().len() > 1);
        drop(log);
        let (log, frames) = recover(dir.path());
        assert_eq!(frames.len(), 20);
        assert!(frames.iter().enumerate().all(|(i, (id, c))| *id == i as u64 + 1 && c == &vec![*id as u8; 30]));
        assert_eq!(log.last_id(), Some(20));
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = recover(dir.path());
        log.append(1, b"first", true).unwrap();
        log.append(2, b"second", true).unwrap();
        let path = file_path(dir.path(), 1);
        drop(log);
        let length = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(length - 3).unwrap();
        let (mut log, frames) = recover(dir.path());
        assert_eq!(frames, vec![(1, b"first".to_vec())]);
        log.append(2, b"again", true).unwrap();
        drop(log);
        let (_, frames) = recover(dir.path());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], (2, b"again".to_vec()));
    }

    /// A crash after a new file was created (and its name synced) but before its first frame was
    /// on disk leaves it empty, or holding only a torn frame; the next append must still work.
    #[test]
    fn an_empty_or_torn_only_last_file_left_by_a_crash_does_not_block_appending() {
        let torn_header = [7u8; 9];
        for (frames_before, leftover) in [(1u64, &[][..]), (0, &[][..]), (1, &torn_header[..]), (0, &torn_header[..])] {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = recover(dir.path());
            for id in 1..=frames_before {
                log.append(id, b"acknowledged", true).unwrap();
            }
            drop(log);
            let next = frames_before + 1;
            fs::write(file_path(dir.path(), next), leftover).unwrap();
            let (mut log, frames) = recover(dir.path());
            assert_eq!(frames.len() as u64, frames_before);
            log.append(next, b"next", true).unwrap_or_else(|e| panic!("append after {leftover:?} left over: {e}"));
            drop(log);
            let (_, frames) = recover(dir.path());
            assert_eq!(frames.last(), Some(&(next, b"next".to_vec())));
            assert_eq!(frames.len() as u64, next);
        }
    }

    /// ENOSPC or EIO part way through a frame: the bytes that did land must not stay in front of
    /// the frames appended after it, which were acknowledged.
    #[test]
    fn a_write_that_runs_out_of_space_part_way_is_undone_and_later_frames_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let disk = faults::FaultyDisk::new();
        let (mut log, _) = recover_on(&disk, dir.path());
        log.append(1, b"first", true).unwrap();
        disk.limit_space(10); // half of the next frame's header
        assert!(log.append(2, b"second", true).is_err());
        disk.free_space();
        log.append(2, b"second", true).unwrap();
        log.append(3, b"third", true).unwrap();
        drop(log);
        let (_, recovered) = recover(dir.path());
        assert_eq!(recovered, frames(&[(1, "first"), (2, "second"), (3, "third")]));
    }

    /// A failed fdatasync: the frame was not acknowledged, so the caller writes the same id again.
    #[test]
    fn a_failed_sync_is_undone_so_the_same_id_can_be_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let disk = faults::FaultyDisk::new();
        let (mut log, _) = recover_on(&disk, dir.path());
        log.append(1, b"first", true).unwrap();
        disk.fail_syncs(1);
        assert!(log.append(2, b"not synced", true).is_err());
        log.append(2, b"second", true).unwrap();
        log.append(3, b"third", true).unwrap();
        drop(log);
        let (_, recovered) = recover(dir.path());
        assert_eq!(recovered, frames(&[(1, "first"), (2, "second"), (3, "third")]));
    }

    #[test]
    fn a_failed_write_that_cannot_be_undone_refuses_every_later_write_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let disk = faults::FaultyDisk::new();
        let (mut log, _) = recover_on(&disk, dir.path());
        log.append(1, b"first", true).unwrap();
        disk.limit_space(10);
        disk.fail_truncates(1);
        assert!(log.append(2, b"second", true).is_err());
        disk.free_space();
        let refused = log.append(2, b"second", true).map(|_| ()).unwrap_err().to_string();
        assert!(refused.contains("until") && refused.contains("restart"), "{refused}");
        drop(log);
        // Reopening cuts the torn frame off, as after a crash.
        let (mut log, recovered) = recover_on(&disk, dir.path());
        assert_eq!(recovered, frames(&[(1, "first")]));
        log.append(2, b"second", true).unwrap();
        drop(log);
        let (_, recovered) = recover(dir.path());
        assert_eq!(recovered, frames(&[(1, "first"), (2, "second")]));
    }

    /// The directory sync that makes a new file's name durable fails: the file must not be written
    /// to (its frames could vanish with its name), and must not block the next try either.
    #[test]
    fn a_new_file_whose_name_cannot_be_synced_is_not_used_and_the_next_append_creates_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let disk = faults::FaultyDisk::new();
        let (mut log, _) = recover_on(&disk, dir.path());
        log.append(1, &[1; 90], true).unwrap(); // fills the first 100-byte file
        disk.fail_dir_syncs(1);
        assert!(log.append(2, b"second", true).is_err());
        log.append(2, b"second", true).unwrap();
        drop(log);
        let (_, recovered) = recover(dir.path());
        assert_eq!(recovered.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(recovered[1].1, b"second");
    }

    #[test]
    fn a_corrupted_frame_ends_recovery_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = recover(dir.path());
        log.append(1, b"aaaa", true).unwrap();
        let location = log.append(2, b"bbbb", true).unwrap();
        log.append(3, b"cccc", true).unwrap();
        drop(log);
        let path = file_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[location.offset as usize + FRAME_HEADER_BYTES] ^= 1;
        fs::write(&path, bytes).unwrap();
        let (_, frames) = recover(dir.path());
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn frames_read_back_by_location() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = recover(dir.path());
        let location = log.append(5, b"hello", false).unwrap();
        assert_eq!(log.read(location).unwrap(), b"hello");
    }

    #[test]
    fn dropping_old_files_keeps_the_ones_still_needed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = recover(dir.path());
        for id in 1..=20u64 {
            log.append(id, &[0u8; 60], false).unwrap();
        }
        let before = log.files().len();
        log.drop_before(10).unwrap();
        assert!(log.files().len() < before);
        assert!(log.files()[0].0 <= 10);
        drop(log);
        let (_, frames) = recover(dir.path());
        assert!(frames.first().unwrap().0 <= 10 && frames.last().unwrap().0 == 20);
    }
}
