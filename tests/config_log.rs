//! What parsing the `[quantization]` section logs: each accepted-and-ignored
//! key once per process at WARN, each warning at WARN on every parse
//! (docs/guide.md). A process of its own: a logger of the `log` crate, once
//! set, stays for the process's life, and "once per process" needs a process
//! in which nothing else parsed a config first.

use nyxq::config::QuantConfig;
use std::sync::Mutex;

/// Keeps every record with its level.
struct Recorder {
    records: Mutex<Vec<(log::Level, String)>>,
}

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        self.records
            .lock()
            .unwrap()
            .push((record.level(), record.args().to_string()));
    }

    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder {
    records: Mutex::new(Vec::new()),
};

#[test]
fn ignored_keys_are_logged_once_and_warnings_on_every_parse() {
    log::set_logger(&RECORDER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let text = "[quantization]\nspeedup_target = 2\naccuracy_threshold = 0.5\n";
    for _ in 0..2 {
        let cfg = QuantConfig::parse(text, "t.ini").unwrap();
        assert_eq!(cfg.ignored.len(), 1, "{:?}", cfg.ignored);
    }
    let records = RECORDER.records.lock().unwrap();
    let count = |needle: &str| {
        records
            .iter()
            .filter(|(level, m)| *level == log::Level::Warn && m.contains(needle))
            .count()
    };
    assert_eq!(
        count(
            "[quantization] speedup_target is accepted and ignored: the planner optimises memory and error"
        ),
        1,
        "{records:#?}"
    );
    assert_eq!(
        count("t.ini:3: accuracy_threshold = 0.5 is the least cosine"),
        2,
        "{records:#?}"
    );
}
