//! A synthetic process plant: deterministic, realistic historian data for demos, tests and benches.
//!
//! For a given [`PlantConfig`] the simulator always produces the same records, so a test or a
//! bytes-per-record figure can be re-measured by anyone. The data is shaped like a real plant's:
//! noisy analog sensors quantised to their instrument resolution, monotonic totalisers, rarely
//! flipping switches, state texts, millisecond PLC timestamps with scan jitter, and now and then a
//! sensor that drops out with a bad or uncertain quality.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::record::{Quality, Record, SeriesKey, Value};
use crate::rng::SeededRng;

const NANOS_PER_MILLISECOND: i64 = 1_000_000;

/// OPC UA `Bad_SensorFailure`.
pub const QUALITY_BAD_SENSOR_FAILURE: Quality = Quality(0x808C_0000);
/// OPC UA `Bad_CommunicationError`.
pub const QUALITY_BAD_COMMUNICATION_ERROR: Quality = Quality(0x8005_0000);
/// OPC UA `Uncertain_LastUsableValue`.
pub const QUALITY_UNCERTAIN_LAST_USABLE_VALUE: Quality = Quality(0x4090_0000);

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantConfig {
    /// Same seed, same plant, same records.
    pub seed: u64,
    /// How many series (tags) the plant has.
    pub series_count: usize,
    /// Mean samples per second per series, over all series: fast series sample at 10 times the
    /// rate of most, slow ones at a tenth, scaled so that the mean is this.
    pub base_rate_hz: f64,
    /// Timestamp (ns since the Unix epoch) from which samples start.
    pub start_ns: i64,
}

impl Default for PlantConfig {
    /// 1,000 series at 1 sample/s on average, starting 2024-01-01T00:00:00Z.
    fn default() -> Self {
        Self { seed: 1, series_count: 1_000, base_rate_hz: 1.0, start_ns: 1_704_067_200_000_000_000 }
    }
}

/// What kind of signal a series carries and its state.
#[derive(Debug, Clone)]
enum Signal {
    /// A process value: Ornstein-Uhlenbeck drift around a setpoint plus gaussian noise, quantised
    /// to `10^-digits` (an instrument's resolution, as it would print it).
    Analog {
        setpoint: f64,
        level: f64,
        reversion_per_sample: f64,
        drift_per_sample: f64,
        noise_sigma: f64,
        scale: f64,
        last_value: f64,
    },
    /// A monotonic totaliser (energy, volume, counts).
    Counter { total: i64, mean_increment: f64 },
    /// A pump running, a valve open: flips rarely.
    Switch { on: bool, flip_probability: f64 },
    /// A state or alarm text from a small vocabulary: changes rarely.
    State { vocabulary: &'static [&'static str], current: usize, change_probability: f64 },
}

#[derive(Debug, Clone)]
struct Point {
    signal: Signal,
    period_ms: i64,
    /// Scan jitter is uniform in `-jitter_ms..=jitter_ms` for the samples that have any.
    jitter_ms: i64,
    first_nominal_ms: i64,
    samples_taken: i64,
    /// Samples left in the current dropout, and the quality they carry.
    dropout_samples_left: u32,
    dropout_quality: Quality,
}

/// The kinds of series, with the share of the plant each takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Analog,
    Counter,
    Switch,
    State,
}

/// (measurement, unit, resolution digits, typical value, typical noise in units).
const ANALOG_MEASUREMENTS: &[(&str, &str, i32, f64, f64)] = &[
    ("temperature", "degC", 1, 85.0, 0.15),
    ("pressure", "bar", 2, 6.5, 0.03),
    ("flow", "m3/h", 1, 120.0, 0.8),
    ("level", "%", 2, 55.0, 0.12),
    ("motor_current", "A", 1, 42.0, 0.4),
    ("vibration", "mm/s", 2, 2.8, 0.06),
    ("speed", "rpm", 0, 1480.0, 2.5),
    ("power", "kW", 1, 250.0, 1.5),
    ("steam_temp", "degC", 1, 480.0, 0.4),
    ("outlet_temp", "degC", 1, 65.0, 0.12),
    ("inlet_temp", "degC", 1, 40.0, 0.12),
    ("differential_pressure", "mbar", 1, 180.0, 0.9),
    ("ph", "pH", 2, 7.2, 0.02),
    ("conductivity", "uS/cm", 0, 850.0, 3.0),
];
/// (measurement, unit, typical increment per sample).
const COUNTER_MEASUREMENTS: &[(&str, &str, f64)] = &[
    ("energy_total", "Wh", 70.0),
    ("volume_total", "l", 33.0),
    ("run_seconds", "s", 1.0),
    ("product_count", "pcs", 3.0),
    ("steam_total", "kg", 140.0),
];
const SWITCH_MEASUREMENTS: &[&str] = &["running", "valve_open", "fault", "auto_mode", "interlock_ok", "heater_on"];
const STATE_MEASUREMENTS: &[(&str, &[&str])] = &[
    ("state", &["STOPPED", "STARTING", "RUNNING", "STOPPING", "FAULT"]),
    ("mode", &["AUTO", "MANUAL", "CASCADE", "OUT_OF_SERVICE"]),
    ("alarm_text", &["OK", "HI TEMP ALARM", "LO LEVEL ALARM", "HI PRESSURE WARNING", "MAINTENANCE DUE"]),
    ("recipe", &["RECIPE_A12", "RECIPE_B07", "RECIPE_C03", "CLEANING_CIP"]),
];
const EQUIPMENT: &[&str] =
    &["boiler", "pump", "tank", "compressor", "mixer", "conveyor", "heat_exchanger", "reactor", "dryer", "chiller"];
const POINTS_PER_EQUIPMENT: usize = 8;
const EQUIPMENT_PER_AREA: usize = 10;
const AREAS_PER_PLANT: usize = 10;

/// Share of the analog and counter series that carry a `unit` tag.
const UNIT_TAG_SHARE: f64 = 0.3;

/// Chance per sample that a good series starts a dropout.
const DROPOUT_START_PROBABILITY: f64 = 0.000_2;

/// Generates the plant's samples in timestamp order. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct PlantSimulator {
    keys: Vec<SeriesKey>,
    points: Vec<Point>,
    /// (next sample's timestamp, series index): the earliest on top, ties by series index.
    queue: BinaryHeap<Reverse<(i64, usize)>>,
    rng: Random,
}

/// The seeded generator plus a spare gaussian: the polar method makes two at a time, and the
/// simulator needs one or two per analog sample, so keeping the spare halves the cost.
#[derive(Debug, Clone)]
struct Random {
    rng: SeededRng,
    spare_normal: Option<f64>,
}

impl Random {
    fn normal(&mut self) -> f64 {
        if let Some(spare) = self.spare_normal.take() {
            return spare;
        }
        // Marsaglia's polar method: no trigonometry, and both deviates are used.
        loop {
            let u = 2.0 * self.rng.next_f64() - 1.0;
            let v = 2.0 * self.rng.next_f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let scale = (-2.0 * s.ln() / s).sqrt();
                self.spare_normal = Some(v * scale);
                return u * scale;
            }
        }
    }

    fn next_f64(&mut self) -> f64 {
        self.rng.next_f64()
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.rng.below(bound)
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.rng.chance(probability)
    }
}

impl PlantSimulator {
    /// Builds the plant described by `config`.
    ///
    /// # Panics
    /// If `base_rate_hz` is not a positive finite number.
    pub fn new(config: PlantConfig) -> Self {
        assert!(
            config.base_rate_hz.is_finite() && config.base_rate_hz > 0.0,
            "plant base_rate_hz is {}; it must be a positive number of samples per second",
            config.base_rate_hz
        );
        let mut rng = SeededRng::new(config.seed);
        let (keys, kinds) = build_catalog(config.series_count, &mut rng);

        // Rate tiers: 10 % fast (10x), 75 % normal, 15 % slow (0.1x), scaled to the mean rate.
        let multipliers: Vec<f64> = (0..keys.len())
            .map(|_| match rng.next_f64() {
                x if x < 0.10 => 10.0,
                x if x < 0.85 => 1.0,
                _ => 0.1,
            })
            .collect();
        let mean_multiplier = multipliers.iter().sum::<f64>() / multipliers.len().max(1) as f64;
        let start_ms = config.start_ns.div_euclid(NANOS_PER_MILLISECOND)
            + i64::from(config.start_ns.rem_euclid(NANOS_PER_MILLISECOND) != 0);

        let mut points = Vec::with_capacity(keys.len());
        let mut queue = BinaryHeap::with_capacity(keys.len());
        for (index, (&kind, &multiplier)) in kinds.iter().zip(&multipliers).enumerate() {
            let rate_hz = config.base_rate_hz * multiplier / mean_multiplier;
            // PLC timestamps are whole milliseconds, so no series samples faster than 1 kHz.
            let period_ms = ((1_000.0 / rate_hz).round() as i64).max(1);
            let jitter_ms = ((period_ms - 1) / 2).min(2);
            // Starting at or after `jitter_ms` keeps the first sample at or after start_ns.
            let phase_ms = jitter_ms + rng.below((period_ms - jitter_ms) as u64) as i64;
            let samples_per_second = 1_000.0 / period_ms as f64;
            let point = Point {
                signal: new_signal(kind, &keys[index], samples_per_second, &mut rng),
                period_ms,
                jitter_ms,
                first_nominal_ms: start_ms + phase_ms,
                samples_taken: 0,
                dropout_samples_left: 0,
                dropout_quality: Quality::GOOD,
            };
            let first = next_timestamp_ns(&point, &mut rng);
            queue.push(Reverse((first, index)));
            points.push(point);
        }
        Self { keys, points, queue, rng: Random { rng, spare_normal: None } }
    }

    /// Appends every sample with a timestamp before `until_ns` not yet produced, in timestamp order
    /// (ties by series), to `out`; returns how many.
    pub fn generate_until(&mut self, until_ns: i64, out: &mut Vec<Record>) -> usize {
        let before = out.len();
        while let Some(mut top) = self.queue.peek_mut() {
            let Reverse((timestamp_ns, index)) = *top;
            if timestamp_ns >= until_ns {
                break;
            }
            let point = &mut self.points[index];
            let (value, quality) = sample(point, &mut self.rng);
            point.samples_taken += 1;
            out.push(Record { series: self.keys[index].clone(), timestamp_ns, value, quality });
            *top = Reverse((next_timestamp_ns(point, &mut self.rng), index));
        }
        out.len() - before
    }

    /// The plant's series, indexed as the simulator numbers them.
    pub fn series(&self) -> &[SeriesKey] {
        &self.keys
    }

    /// Samples per second the whole plant produces.
    pub fn records_per_second(&self) -> f64 {
        self.points.iter().map(|point| 1_000.0 / point.period_ms as f64).sum()
    }
}

/// Names the series and picks each one's kind: about 65 % analog, 15 % counters, 15 % switches,
/// 5 % states, grouped by equipment as `plant1/area2/boiler3/steam_temp`.
fn build_catalog(series_count: usize, rng: &mut SeededRng) -> (Vec<SeriesKey>, Vec<Kind>) {
    let mut keys = Vec::with_capacity(series_count);
    let mut kinds = Vec::with_capacity(series_count);
    let mut equipment_index = 0;
    while keys.len() < series_count {
        let plant = 1 + equipment_index / (EQUIPMENT_PER_AREA * AREAS_PER_PLANT);
        let area = 1 + (equipment_index / EQUIPMENT_PER_AREA) % AREAS_PER_PLANT;
        let equipment = EQUIPMENT[equipment_index % EQUIPMENT.len()];
        let number = 1 + equipment_index / EQUIPMENT.len();
        let prefix = format!("plant{plant}/area{area}/{equipment}{number}");
        // Each equipment takes each measurement name once; offsets vary the names between them.
        let mut used = [0usize; 4];
        let offsets = [rng.below(64) as usize, rng.below(64) as usize, rng.below(64) as usize, rng.below(64) as usize];
        for _ in 0..POINTS_PER_EQUIPMENT {
            if keys.len() == series_count {
                break;
            }
            let kind = match rng.next_f64() {
                x if x < 0.65 => Kind::Analog,
                x if x < 0.80 => Kind::Counter,
                x if x < 0.95 => Kind::Switch,
                _ => Kind::State,
            };
            let slot = kind as usize;
            let choice = offsets[slot] + used[slot];
            used[slot] += 1;
            let (measurement, pool_size, unit) = match kind {
                Kind::Analog => {
                    let (name, unit, ..) = ANALOG_MEASUREMENTS[choice % ANALOG_MEASUREMENTS.len()];
                    (name, ANALOG_MEASUREMENTS.len(), Some(unit))
                }
                Kind::Counter => {
                    let (name, unit, _) = COUNTER_MEASUREMENTS[choice % COUNTER_MEASUREMENTS.len()];
                    (name, COUNTER_MEASUREMENTS.len(), Some(unit))
                }
                Kind::Switch => {
                    (SWITCH_MEASUREMENTS[choice % SWITCH_MEASUREMENTS.len()], SWITCH_MEASUREMENTS.len(), None)
                }
                Kind::State => {
                    (STATE_MEASUREMENTS[choice % STATE_MEASUREMENTS.len()].0, STATE_MEASUREMENTS.len(), None)
                }
            };
            // A second lap through a pool gets a suffix so names stay unique: `level_2`.
            let lap = used[slot].div_ceil(pool_size);
            let name =
                if lap > 1 { format!("{prefix}/{measurement}_{lap}") } else { format!("{prefix}/{measurement}") };
            // Some series carry their engineering unit as a tag, as a historian's metadata would.
            let unit = unit.filter(|_| rng.chance(UNIT_TAG_SHARE));
            let key = match unit {
                Some(unit) => SeriesKey::with_tags(name, vec![("unit".to_owned(), unit.to_owned())]),
                None => SeriesKey::new(name),
            };
            keys.push(key);
            kinds.push(kind);
        }
        equipment_index += 1;
    }
    (keys, kinds)
}

/// Initial state of a series of `kind`, with parameters drawn for this instrument.
fn new_signal(kind: Kind, key: &SeriesKey, samples_per_second: f64, rng: &mut SeededRng) -> Signal {
    let measurement = key.name.rsplit('/').next().unwrap_or_default();
    let base_name = measurement.split('_').take_while(|part| part.parse::<u32>().is_err()).collect::<Vec<_>>();
    let base_name = base_name.join("_");
    match kind {
        Kind::Analog => {
            let &(_, _, digits, typical, noise) =
                ANALOG_MEASUREMENTS.iter().find(|entry| entry.0 == base_name).unwrap_or(&ANALOG_MEASUREMENTS[0]);
            let setpoint = typical * (0.7 + 0.6 * rng.next_f64());
            // Drift: about 1 % of the setpoint per minute, reverting over a few minutes.
            let seconds_per_sample = 1.0 / samples_per_second;
            Signal::Analog {
                setpoint,
                level: setpoint,
                reversion_per_sample: (seconds_per_sample / 180.0).min(1.0),
                drift_per_sample: 0.01 * typical * (seconds_per_sample / 60.0).sqrt(),
                noise_sigma: noise * (0.5 + rng.next_f64()),
                scale: 10f64.powi(digits),
                last_value: setpoint,
            }
        }
        Kind::Counter => {
            let &(_, _, per_sample) =
                COUNTER_MEASUREMENTS.iter().find(|entry| entry.0 == base_name).unwrap_or(&COUNTER_MEASUREMENTS[0]);
            Signal::Counter { total: rng.below(50_000_000) as i64, mean_increment: per_sample * (0.5 + rng.next_f64()) }
        }
        Kind::Switch => Signal::Switch { on: rng.chance(0.7), flip_probability: 0.000_5 + 0.004_5 * rng.next_f64() },
        Kind::State => {
            let vocabulary = STATE_MEASUREMENTS
                .iter()
                .find(|entry| entry.0 == base_name)
                .map_or(STATE_MEASUREMENTS[0].1, |entry| entry.1);
            Signal::State {
                vocabulary,
                current: rng.below(vocabulary.len() as u64) as usize,
                change_probability: 0.000_5 + 0.002 * rng.next_f64(),
            }
        }
    }
}

/// The uniform draws shared by [`SeededRng`] (while the plant is built) and [`Random`] (while it runs).
trait Uniform {
    fn chance(&mut self, probability: f64) -> bool;
    fn below(&mut self, bound: u64) -> u64;
}

impl Uniform for SeededRng {
    fn chance(&mut self, probability: f64) -> bool {
        SeededRng::chance(self, probability)
    }

    fn below(&mut self, bound: u64) -> u64 {
        SeededRng::below(self, bound)
    }
}

impl Uniform for Random {
    fn chance(&mut self, probability: f64) -> bool {
        Random::chance(self, probability)
    }

    fn below(&mut self, bound: u64) -> u64 {
        Random::below(self, bound)
    }
}

/// The timestamp of `point`'s next sample: its nominal scan time plus jitter, on a millisecond.
fn next_timestamp_ns<R: Uniform>(point: &Point, rng: &mut R) -> i64 {
    let nominal_ms = point.first_nominal_ms + point.samples_taken * point.period_ms;
    // Most scans are on time; the rest are off by up to `jitter_ms` either way.
    let jitter_ms = if point.jitter_ms > 0 && rng.chance(0.4) {
        rng.below(2 * point.jitter_ms as u64 + 1) as i64 - point.jitter_ms
    } else {
        0
    };
    (nominal_ms + jitter_ms) * NANOS_PER_MILLISECOND
}

/// Advances `point` by one sample and returns its value and quality.
fn sample(point: &mut Point, rng: &mut Random) -> (Value, Quality) {
    if point.dropout_samples_left == 0 && rng.chance(DROPOUT_START_PROBABILITY) {
        point.dropout_samples_left = 5 + rng.below(200) as u32;
        point.dropout_quality = match rng.below(3) {
            0 => QUALITY_BAD_SENSOR_FAILURE,
            1 => QUALITY_BAD_COMMUNICATION_ERROR,
            _ => QUALITY_UNCERTAIN_LAST_USABLE_VALUE,
        };
    }
    let in_dropout = point.dropout_samples_left > 0;
    let quality = if in_dropout {
        point.dropout_samples_left -= 1;
        point.dropout_quality
    } else {
        Quality::GOOD
    };
    let value = match &mut point.signal {
        Signal::Analog { setpoint, level, reversion_per_sample, drift_per_sample, noise_sigma, scale, last_value } => {
            if rng.chance(0.000_1) {
                // An operator moves the setpoint by up to 5 %.
                *setpoint *= 1.0 + 0.1 * (rng.next_f64() - 0.5);
            }
            *level += *reversion_per_sample * (*setpoint - *level) + *drift_per_sample * rng.normal();
            if !in_dropout {
                // Quantised as the instrument prints it: the f64 nearest to integer / 10^digits.
                let reading = *level + *noise_sigma * rng.normal();
                *last_value = (reading * *scale).round() / *scale;
            }
            // A failed sensor reports its last usable value, as OPC UA servers do.
            Value::F64(*last_value)
        }
        Signal::Counter { total, mean_increment } => {
            let increment = (*mean_increment * (1.0 + 0.1 * rng.normal())).round().max(0.0) as i64;
            *total = total.saturating_add(increment);
            Value::I64(*total)
        }
        Signal::Switch { on, flip_probability } => {
            if rng.chance(*flip_probability) {
                *on = !*on;
            }
            Value::Bool(*on)
        }
        Signal::State { vocabulary, current, change_probability } => {
            if rng.chance(*change_probability) {
                *current = (*current + 1 + rng.below(vocabulary.len() as u64 - 1) as usize) % vocabulary.len();
            }
            Value::String(vocabulary[*current].to_owned())
        }
    };
    (value, quality)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn plant(series_count: usize, base_rate_hz: f64) -> PlantSimulator {
        PlantSimulator::new(PlantConfig { seed: 42, series_count, base_rate_hz, ..PlantConfig::default() })
    }

    fn generate(simulator: &mut PlantSimulator, seconds: i64) -> Vec<Record> {
        let mut out = Vec::new();
        simulator.generate_until(PlantConfig::default().start_ns + seconds * 1_000_000_000, &mut out);
        out
    }

    #[test]
    fn every_record_passes_validation() {
        let mut simulator = plant(500, 5.0);
        let records = generate(&mut simulator, 30);
        assert!(records.len() > 50_000);
        for record in &records {
            record.validate().unwrap_or_else(|error| panic!("{record:?}: {error}"));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let a = generate(&mut plant(200, 2.0), 20);
        let b = generate(&mut plant(200, 2.0), 20);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.bit_eq(y)));
        let other = generate(
            &mut PlantSimulator::new(PlantConfig {
                seed: 43,
                series_count: 200,
                base_rate_hz: 2.0,
                ..PlantConfig::default()
            }),
            20,
        );
        assert!(a.iter().zip(&other).any(|(x, y)| !x.bit_eq(y)));
    }

    #[test]
    fn generating_in_steps_gives_the_same_records_as_at_once() {
        let at_once = generate(&mut plant(100, 3.0), 10);
        let mut simulator = plant(100, 3.0);
        let mut stepped = Vec::new();
        let start_ns = PlantConfig::default().start_ns;
        for step in 1..=40 {
            simulator.generate_until(start_ns + step * 250_000_000, &mut stepped);
        }
        assert_eq!(at_once.len(), stepped.len());
        assert!(at_once.iter().zip(&stepped).all(|(x, y)| x.bit_eq(y)));
    }

    #[test]
    fn records_come_in_timestamp_order_on_millisecond_boundaries_from_the_start() {
        let records = generate(&mut plant(300, 10.0), 5);
        let start_ns = PlantConfig::default().start_ns;
        assert!(records.windows(2).all(|pair| pair[0].timestamp_ns <= pair[1].timestamp_ns));
        assert!(records.iter().all(|r| r.timestamp_ns % NANOS_PER_MILLISECOND == 0 && r.timestamp_ns >= start_ns));
        assert!(records.iter().all(|r| r.timestamp_ns < start_ns + 5_000_000_000));
    }

    #[test]
    fn the_mean_rate_per_series_is_the_base_rate() {
        let simulator = plant(1_000, 4.0);
        let per_series = simulator.records_per_second() / 1_000.0;
        assert!((per_series - 4.0).abs() < 0.1, "{per_series}");
        let records = generate(&mut plant(1_000, 4.0), 20);
        let measured = records.len() as f64 / 20.0 / 1_000.0;
        assert!((measured - 4.0).abs() < 0.2, "{measured}");
    }

    #[test]
    fn the_series_mix_looks_like_a_plant() {
        let mut simulator = plant(1_000, 1.0);
        let keys: HashSet<&SeriesKey> = simulator.series().iter().collect();
        assert_eq!(keys.len(), 1_000, "series names are unique");
        assert!(simulator.series().iter().all(|key| key.validate().is_ok()));
        assert!(simulator.series()[0].name.starts_with("plant1/area1/boiler1/"), "{}", simulator.series()[0]);
        assert!(simulator.series().iter().any(|key| *key.tags == [("unit".to_owned(), "degC".to_owned())]));
        assert!(simulator.series().iter().any(|key| key.tags.is_empty()));
        let records = generate(&mut simulator, 60);
        let mut series_of_kind: [HashSet<&SeriesKey>; 4] = Default::default();
        for record in &records {
            series_of_kind[record.value.kind() as usize].insert(&record.series);
        }
        let shares: Vec<f64> = series_of_kind.iter().map(|set| set.len() as f64 / 1_000.0).collect();
        assert!((0.55..0.75).contains(&shares[0]), "analog {shares:?}");
        assert!((0.10..0.20).contains(&shares[1]), "counters {shares:?}");
        assert!((0.10..0.20).contains(&shares[2]), "switches {shares:?}");
        assert!((0.02..0.08).contains(&shares[3]), "states {shares:?}");
        let not_good = records.iter().filter(|r| !r.quality.is_good()).count();
        assert!(not_good > 0 && not_good < records.len() / 20, "{not_good} of {}", records.len());
    }

    #[test]
    fn counters_never_decrease() {
        let records = generate(&mut plant(300, 5.0), 30);
        let mut last = std::collections::HashMap::new();
        for record in &records {
            if let Value::I64(total) = record.value {
                let previous = last.insert(&record.series, total).unwrap_or(i64::MIN);
                assert!(total >= previous, "{}", record.series);
            }
        }
    }
}
