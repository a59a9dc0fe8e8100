//! The PostgreSQL sink against a real PostgreSQL server (Debian's `postgresql` package, installed
//! by `scripts/prepare`), started by the test in a temporary folder as an unprivileged user on a
//! loopback port: the points table ends equal to the replica, point for point, across shuffled
//! arrivals, corrections and a server killed mid-stream; an unreachable server is a counted,
//! retried error. Skips (and says why) where PostgreSQL's programs are missing.

mod sinks_common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use diode_common::record::Value;
use diode_receiver::sinks::config::{PostgresSinkConfig, SinkLimits};
use diode_receiver::sinks::postgres::PostgresSink;
use diode_receiver::state::Shared;
use diode_replica::Replica;
use sinks_common::*;

/// User and group id of `nobody` on Debian, who runs the server when the test runs as root.
const NOBODY: u32 = 65_534;
/// A deadline guard, not a measurement.
const GUARD: Duration = Duration::from_secs(120);

/// A PostgreSQL server of its own in a temporary folder, stopped when dropped.
struct PostgresServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// `Some(user)` when the test runs as root and the server as `user`.
    user: Option<String>,
    _dir: tempfile::TempDir,
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    dirs.sort_by_key(|dir| dir.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    dirs.pop()
}

impl PostgresServer {
    /// Starts a server, or `None` (after saying why) when PostgreSQL is not installed.
    fn start() -> Option<PostgresServer> {
        let Some(bin) = postgres_bin_dir() else {
            eprintln!("skipping: no PostgreSQL server under /usr/lib/postgresql (run scripts/prepare)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let is_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
        let user = is_root.then(|| "nobody".to_owned());
        std::fs::create_dir(&data).unwrap();
        if is_root {
            use std::os::unix::fs::PermissionsExt;
            // initdb and postgres refuse root: the server runs as nobody in a folder it owns.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let server = PostgresServer { bin, data, port: free_port(), user, _dir: dir };
        server.run("initdb", &["-D", &server.data_arg(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        server.pg_ctl_start();
        Some(server)
    }

    fn data_arg(&self) -> String {
        self.data.display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let output = match &self.user {
            Some(user) => Command::new("runuser").args(["-u", user, "--"]).arg(&program).args(args).output(),
            None => Command::new(&program).args(args).output(),
        }
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.data_arg()
        );
        let log = self.data.join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data_arg(), "-o", &options, "-l", &log, "-w", "-t", "60", "start"]);
    }

    /// Kills the server the way a crash would (no checkpoint; recovery replays the WAL at start).
    fn kill(&self) {
        self.run("pg_ctl", &["-D", &self.data_arg(), "-m", "immediate", "-w", "stop"]);
    }

    fn connection(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let args = ["-D", &self.data_arg(), "-m", "immediate", "stop"].map(str::to_owned);
        let _ = match &self.user {
            Some(user) => Command::new("runuser").args(["-u", user, "--"]).arg(&program).args(&args).output(),
            None => Command::new(&program).args(&args).output(),
        };
    }
}

fn sink_config(name: &str, connection: String) -> PostgresSinkConfig {
    let text = format!("name = {name:?}\nconnection = {connection:?}\n");
    toml::from_str(&text).expect("a valid sink table")
}

fn start_sink(shared: &Arc<Shared>, config: PostgresSinkConfig, limits: SinkLimits) -> std::thread::JoinHandle<()> {
    let name = config.name.clone();
    diode_receiver::sinks::spawn(Box::new(PostgresSink::new(config)), &name, limits, shared).unwrap()
}

/// The points table read back: (series id, time ns) → (value, quality), checking on the way that
/// each row has exactly its kind's value column set and its `time` is `time_ns` in µs.
/// (series id, time ns) → (value, quality).
type PointTable = BTreeMap<(u32, i64), (Value, u32)>;
/// series id → (name, tags as JSON text).
type SeriesTable = BTreeMap<u32, (String, String)>;

fn table_points(connection: &str) -> (PointTable, SeriesTable) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(connection, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT series_id, time_ns, value_f64, value_i64, value_bool, value_text, quality, \
                 (extract(epoch from time) * 1000000)::bigint FROM diode_points",
                &[],
            )
            .await
            .unwrap();
        let mut points = BTreeMap::new();
        for row in rows {
            let (id, time_ns): (i32, i64) = (row.get(0), row.get(1));
            let values = [
                row.get::<_, Option<f64>>(2).map(Value::F64),
                row.get::<_, Option<i64>>(3).map(Value::I64),
                row.get::<_, Option<bool>>(4).map(Value::Bool),
                row.get::<_, Option<String>>(5).map(Value::String),
            ];
            let mut set = values.into_iter().flatten();
            let value = set.next().expect("a value column is set");
            assert!(set.next().is_none(), "exactly one value column is set");
            assert_eq!(row.get::<_, i64>(7), time_ns.div_euclid(1_000), "time is time_ns in µs");
            let quality: i64 = row.get(6);
            let previous = points.insert((id as u32, time_ns), (value, quality as u32));
            assert!(previous.is_none(), "one row per series and time");
        }
        let series = client
            .query("SELECT series_id, name, tags::text FROM diode_series", &[])
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.get::<_, i32>(0) as u32, (row.get(1), row.get(2))))
            .collect();
        (points, series)
    })
}

#[test]
fn the_points_table_equals_the_replica_after_shuffled_arrivals_corrections_and_a_server_killed_mid_stream() {
    let Some(server) = PostgresServer::start() else { return };
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let segments = plant_segments(21, 90, 400);
    apply(&shared, &segments[..30]); // backfilled at the sink's first start
    let limits = SinkLimits { batch_points: 3_000, retry_first_ms: 50, retry_longest_ms: 200, ..SinkLimits::default() };
    let thread = start_sink(&shared, sink_config("warehouse", server.connection()), limits);
    let last = |shared: &Shared| shared.replica.read().unwrap().last_apply_number();
    wait_until("the backfill is exported", GUARD, || sink_cursor(&shared, "warehouse") == last(&shared));

    apply(&shared, &segments[30..60]);
    server.kill();
    apply(&shared, &segments[60..]);
    wait_until("the sink notices the server is gone", GUARD, || sink_errors(&shared, "warehouse") > 0);
    server.pg_ctl_start();
    wait_until("the sink catches up after the restart", GUARD, || sink_cursor(&shared, "warehouse") == last(&shared));
    stop(&shared, thread);

    let replica = shared.replica.read().unwrap();
    assert_eq!(replica.last_apply_number(), 90);
    assert_eq!(replica.sink_cursor("warehouse").unwrap().unwrap().apply_number, 90, "the replica keeps the cursor");
    let (points, series) = table_points(&server.connection());
    let expected = replica_points(&replica);
    assert_eq!(points.len(), expected.len());
    assert!(points == expected, "the points table differs from the replica");
    assert_eq!(series.len(), replica.series_count() as usize);
    for info in replica.series_list() {
        let (name, tags) = &series[&info.id];
        assert_eq!(name.as_str(), &*info.key.name);
        for (key, value) in info.key.tags.iter() {
            assert!(tags.contains(&format!("\"{key}\": \"{value}\"")), "{tags} lacks {key}={value}");
        }
    }
}

#[test]
fn a_restarted_sink_resumes_from_the_tables_cursor_and_a_second_receiver_under_the_same_name_is_refused() {
    let Some(server) = PostgresServer::start() else { return };
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let segments = plant_segments(22, 20, 200);
    apply(&shared, &segments[..10]);
    let limits = SinkLimits { retry_first_ms: 50, retry_longest_ms: 200, ..SinkLimits::default() };
    let thread = start_sink(&shared, sink_config("warehouse", server.connection()), limits);
    wait_until("the first half is exported", GUARD, || sink_cursor(&shared, "warehouse") == 10);
    stop(&shared, thread);

    // A receiver whose replica is behind the table (another replica, or a restored backup).
    let other_directory = tempfile::tempdir().unwrap();
    let other = sinks_common::shared(Replica::open(other_directory.path()).unwrap());
    apply(&other, &segments[..3]);
    let thread = start_sink(&other, sink_config("warehouse", server.connection()), limits);
    wait_until("the mismatch is reported", GUARD, || sink_errors(&other, "warehouse") > 0);
    let message = other.counters.sinks.lock().unwrap()[0].last_error.lock().unwrap().clone().unwrap();
    assert!(message.contains("another replica"), "{message}");
    stop(&other, thread);

    shared.stop.store(false, Ordering::Relaxed);
    apply(&shared, &segments[10..]);
    let thread = start_sink(&shared, sink_config("warehouse", server.connection()), limits);
    wait_until("the rest is exported", GUARD, || sink_cursor(&shared, "warehouse") == 20);
    stop(&shared, thread);
    let (points, _) = table_points(&server.connection());
    assert!(points == replica_points(&shared.replica.read().unwrap()));
}

#[test]
fn an_unreachable_server_is_a_counted_retried_error_that_names_the_problem() {
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let connection = format!("host=127.0.0.1 port={} user=postgres connect_timeout=2", free_port());
    let limits = SinkLimits { retry_first_ms: 20, retry_longest_ms: 40, ..SinkLimits::default() };
    let thread = start_sink(&shared, sink_config("warehouse", connection), limits);
    wait_until("two failed attempts", GUARD, || sink_errors(&shared, "warehouse") >= 2);
    let message = shared.counters.sinks.lock().unwrap()[0].last_error.lock().unwrap().clone().unwrap();
    assert!(message.contains("PostgreSQL, connecting"), "{message}");
    let metrics = diode_receiver::sinks::metrics(&shared.counters.sinks.lock().unwrap(), 0);
    assert!(metrics.contains("diode_receiver_sink_up{sink=\"warehouse\",kind=\"postgres\"} 0"), "{metrics}");
    stop(&shared, thread);
}

/// Points per second into a local server: `cargo test --release --workspace --test
/// sink_postgres -- --ignored --nocapture`. Also the CPU time of this process (the sink, and
/// the replica reads it makes) and of the server's processes over the export.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_points_per_second_into_a_local_server() {
    let Some(server) = PostgresServer::start() else { return };
    let (_directory, shared, points) = measured_replica(23);
    let postmaster: u32 =
        std::fs::read_to_string(server.data.join("postmaster.pid")).unwrap().lines().next().unwrap().parse().unwrap();
    let (ours, theirs) = (cpu_seconds(std::process::id(), false), cpu_seconds(postmaster, true));
    let start = Instant::now();
    let thread = start_sink(&shared, sink_config("bench", server.connection()), SinkLimits::default());
    wait_until("everything is exported", Duration::from_secs(600), || sink_cursor(&shared, "bench") == 400);
    let elapsed = start.elapsed().as_secs_f64();
    let (ours, theirs) = (cpu_seconds(std::process::id(), false) - ours, cpu_seconds(postmaster, true) - theirs);
    stop(&shared, thread);
    println!(
        "postgres sink: {points} points in {elapsed:.2} s = {:.0} points/s (batches of {} points); CPU s: \
         {ours:.2} sink process ({:.0} points per CPU second), {theirs:.2} server; load average {}",
        points as f64 / elapsed,
        SinkLimits::default().batch_points,
        points as f64 / ours,
        load_average()
    );
}
