//! A writable replica bounds the table files RocksDB keeps open (512), so its descriptors stay
//! countable beside the receiver's HTTP connections; a read-only replica beside it still opens.

use diode_replica::Replica;

/// The `max_open_files` line of the newest RocksDB OPTIONS file in `dir`.
fn max_open_files(dir: &std::path::Path) -> String {
    let mut options: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
        .collect();
    options.sort_by_key(|path| {
        path.file_name().unwrap().to_string_lossy().trim_start_matches("OPTIONS-").parse::<u64>().unwrap_or(0)
    });
    let text = std::fs::read_to_string(options.last().expect("an OPTIONS file")).unwrap();
    text.lines().map(str::trim).find(|line| line.starts_with("max_open_files=")).expect("max_open_files").to_owned()
}

#[test]
fn a_writable_replica_keeps_at_most_512_table_files_open_and_read_only_replicas_still_open_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path()).unwrap();
    assert_eq!(max_open_files(dir.path()), "max_open_files=512");
    let reader = Replica::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.series_count(), replica.series_count());
}
