//! The sender's framed log (`sender/src/framed_log.rs`, under both the spool and the segment log),
//! recovered from files a crash, a bad disk or a careless hand left behind: torn and truncated
//! tails, flipped bits, garbage after the last frame, stray files among the log's own.
//!
//! Each input writes a real log through `FramedLog` (frames of its own contents and id steps, in
//! small files so that it rotates), damages the files as the input says and opens the log again.
//! Opening never fails or panics, and what it recovers is what the damage left: in file order,
//! every frame that lies wholly before its file's first damaged byte, until a file that holds
//! damage past its last intact frame (or a stray file of garbage), after which nothing is
//! trusted. No recovered frame carries other bytes than were appended; each reads back at its
//! location; a second open recovers the same; and a frame appended after recovery is recovered
//! with them.
//!
//! Damage the input cannot aim is drawn from a generator seeded by the input: the fuzzer could
//! otherwise learn a frame's checksum from the comparison hooks and write a valid frame into the
//! garbage, which recovery rightly keeps.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use diode_sender::framed_log::{FrameLocation, FramedLog};
use libfuzzer_sys::fuzz_target;

/// A directory of this process's own, on a memory file system when there is one.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        base.join(format!("diode-fuzz-framed-log-{}", std::process::id()))
    })
}

fn file_name(first_id: u64) -> String {
    format!("log-{first_id:020}.frames")
}

/// Reads the input front to back; past its end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        let taken = count.min(self.0.len());
        let (head, rest) = self.0.split_at(taken);
        self.0 = rest;
        head.to_vec()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Garbage the input chooses the length of but not the bytes (splitmix64).
fn garbage(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

struct Written {
    id: u64,
    content: Vec<u8>,
    location: FrameLocation,
}

/// One of the log's files: what the log wrote (nothing for a stray file) and its bytes after the
/// damage.
struct File {
    first_id: u64,
    written: Vec<u8>,
    bytes: Vec<u8>,
}

impl File {
    fn stray(&self) -> bool {
        self.written.is_empty()
    }

    /// The first byte that differs from what the log wrote (where one of them ends, if neither
    /// differs before). Damage may undo itself (a bit flipped twice), so it is found, not tracked.
    fn damaged_from(&self) -> usize {
        let same = self.written.iter().zip(&self.bytes).take_while(|(a, b)| a == b).count();
        if same == self.written.len() && same == self.bytes.len() { usize::MAX } else { same }
    }
}

fn recover(dir: &Path, max_file_bytes: u64) -> (FramedLog, Vec<(u64, Vec<u8>, FrameLocation)>) {
    let mut recovered = Vec::new();
    let log = FramedLog::open(dir, max_file_bytes, |frame| recovered.push((frame.id, frame.content, frame.location)))
        .expect("a damaged log opens");
    (log, recovered)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let dir = scratch();
    let _ = fs::remove_dir_all(dir);
    let max_file_bytes = u64::from(input.byte());

    // Write the log: batches of frames whose ids grow by the input's steps.
    let mut written: Vec<Written> = Vec::new();
    {
        let (mut log, recovered) = recover(dir, max_file_bytes);
        assert!(recovered.is_empty());
        let mut next_id = 1 + u64::from(input.byte() & 7);
        for _ in 0..(input.byte() % 8) {
            let frames = 1 + usize::from(input.byte() % 4);
            let contents: Vec<Vec<u8>> = (0..frames)
                .map(|_| {
                    let length = usize::from(input.byte() % 48);
                    input.bytes(length)
                })
                .collect();
            let locations = log.append_all(next_id, &contents, false).expect("an append to a fresh log");
            for ((offset, content), location) in contents.into_iter().enumerate().zip(locations) {
                written.push(Written { id: next_id + offset as u64, content, location });
            }
            next_id += frames as u64 + u64::from(input.byte() % 3);
        }
    }

    // Damage the files, remembering where each stops being what the log wrote.
    let mut files: Vec<File> = Vec::new();
    let mut first_ids: Vec<u64> = written.iter().map(|frame| frame.location.file_first_id).collect();
    first_ids.dedup();
    for first_id in first_ids {
        let written = fs::read(dir.join(file_name(first_id))).expect("a file the log wrote");
        files.push(File { first_id, bytes: written.clone(), written });
    }
    while !input.is_empty() {
        let (kind, which, at) = (input.byte() % 4, usize::from(input.byte()), usize::from(input.u16()));
        if kind == 3 {
            // A stray file among the log's own, empty or of garbage, under a name not taken.
            let first_id = u64::from(input.byte() % 64);
            if files.iter().any(|file| file.first_id == first_id) {
                continue;
            }
            let bytes = garbage(at as u64, at % 64);
            files.push(File { first_id, written: Vec::new(), bytes });
            continue;
        }
        let Some(file) = files.iter_mut().filter(|file| !file.stray()).nth(which % 8) else { continue };
        let length = file.bytes.len();
        match kind {
            // A torn tail: the file cut short.
            0 if length > 0 => {
                let keep = at % length;
                file.bytes.truncate(keep);
            }
            // A flipped bit.
            1 if length > 0 => {
                let offset = at % length;
                file.bytes[offset] ^= 1 << (input.byte() % 8);
            }
            // Garbage after the end (a frame half written, or bytes from elsewhere).
            2 => {
                file.bytes.extend_from_slice(&garbage(at as u64 ^ 0x5eed, 1 + at % 40));
            }
            _ => {}
        }
    }
    for file in &files {
        fs::write(dir.join(file_name(file.first_id)), &file.bytes).expect("write a damaged file");
    }

    // What recovery must give: file by file in id order, the frames wholly before the damage,
    // until a file that holds more than its intact frames.
    files.sort_by_key(|file| file.first_id);
    let mut expected: Vec<&Written> = Vec::new();
    for file in &files {
        let damaged_from = file.damaged_from();
        let intact: Vec<&Written> = written
            .iter()
            .filter(|frame| frame.location.file_first_id == file.first_id && !file.stray())
            .take_while(|frame| frame.location.offset as usize + 20 + frame.content.len() <= damaged_from)
            .collect();
        let intact_bytes = intact.last().map_or(0, |frame| frame.location.offset as usize + 20 + frame.content.len());
        expected.extend(intact);
        if file.bytes.len() > intact_bytes {
            break;
        }
    }

    let (mut log, recovered) = recover(dir, max_file_bytes);
    let expected_ids: Vec<u64> = expected.iter().map(|frame| frame.id).collect();
    let recovered_ids: Vec<u64> = recovered.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(recovered_ids, expected_ids, "recovered frames");
    for ((_, content, location), frame) in recovered.iter().zip(&expected) {
        assert_eq!(content, &frame.content, "frame {} recovered with other bytes", frame.id);
        assert_eq!(*location, frame.location, "frame {} recovered at another place", frame.id);
        assert_eq!(&log.read(*location).expect("a recovered frame reads back"), content);
    }
    assert_eq!(log.last_id(), expected.last().map(|frame| frame.id));
    let on_disk: u64 = fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(log.size_bytes(), on_disk, "the log's size against its files");

    // Recovery left nothing to cut: a frame appended now is recovered after the others.
    let next_id = log.last_id().map_or(1, |last| last + 1);
    let location = log.append(next_id, b"after recovery", false).expect("an append after recovery");
    drop(log);
    let (_, again) = recover(dir, max_file_bytes);
    assert_eq!(again.len(), recovered.len() + 1, "a second open after an append");
    assert_eq!(again[..recovered.len()], recovered[..]);
    assert_eq!(again.last(), Some(&(next_id, b"after recovery".to_vec(), location)));
});
