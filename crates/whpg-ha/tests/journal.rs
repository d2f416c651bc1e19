//! The journal: append and read back, durability, rotation, torn lines, a directory the daemon
//! cannot write, `whpg-ha history`, and (in a lab) a daemon's life from start to SIGTERM.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::daemon::{api_get, pair_builder, start_daemon, vrrp_state, PairSettings};
use whpg_ha::journal::{self, Entry, Journal, JournalError, Kind};
use whpg_lab::{lab_or_skip, wait_until, Signal};

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "whpg-ha-journal-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("creating a temporary directory");
        // World-readable, so a test can run the binary as an unprivileged user.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn numbered(seq: u64) -> Entry {
    let mut entry = Entry::new("n1", Kind::Decision, format!("decision number {seq}"))
        .with("seq", seq)
        .with("attempt", 1);
    entry.at_unix_ms = 1_700_000_000_000 + seq;
    entry
}

fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| e.field("seq").and_then(|v| v.as_u64()).expect("seq"))
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("listing the journal")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[test]
fn entries_round_trip_and_a_reader_sees_them_before_the_writer_closes() {
    let tmp = TempDir::new("roundtrip");
    let dir = tmp.path().join("journal");
    let mut writer =
        Journal::open(&dir, journal::DEFAULT_MAX_BYTES, journal::DEFAULT_KEEP).expect("open");
    assert!(dir.is_dir(), "open creates the directory");
    assert_eq!(files(&dir), [journal::CURRENT]);
    assert!(journal::read(&dir, 0).expect("read").is_empty());

    let written: Vec<Entry> = (0..3).map(numbered).collect();
    for (i, entry) in written.iter().enumerate() {
        writer.append(entry).expect("append");
        // Still open: what a reader (another process, `whpg-ha history`) sees right now.
        let seen = journal::read(&dir, 0).expect("read while open");
        assert_eq!(seen, written[..=i], "entry {i} visible after append");
    }
    let raw = fs::read_to_string(dir.join(journal::CURRENT)).expect("raw file");
    assert_eq!(raw.lines().count(), 3);
    assert!(raw.ends_with('\n'));
    let first: serde_json::Value =
        serde_json::from_str(raw.lines().next().expect("a line")).expect("one JSON object");
    assert_eq!(first["kind"], "decision");
    assert_eq!(first["node"], "n1");
    assert_eq!(first["seq"], 0, "structured fields sit at the top level");
    assert_eq!(writer.failures(), 0);

    // A restart appends to the same file.
    drop(writer);
    let mut reopened = Journal::open(&dir, journal::DEFAULT_MAX_BYTES, 5).expect("reopen");
    reopened.append(&numbered(3)).expect("append after reopen");
    assert_eq!(seqs(&journal::read(&dir, 0).expect("read")), [0, 1, 2, 3]);
    assert_eq!(seqs(&journal::read(&dir, 2).expect("read")), [2, 3]);
}

#[test]
fn rotation_keeps_n_files_and_the_reader_spans_them_in_order() {
    let tmp = TempDir::new("rotation");
    let dir = tmp.path().join("journal");
    let line_len = serde_json::to_string(&numbered(10)).expect("json").len() as u64 + 1;
    // Three entries per file.
    let max_bytes = line_len * 3;
    let mut writer = Journal::open(&dir, max_bytes, 2).expect("open");
    for seq in 10..30 {
        writer.append(&numbered(seq)).expect("append");
    }
    assert_eq!(
        files(&dir),
        ["journal.1.jsonl", "journal.2.jsonl", journal::CURRENT],
        "the current file and two rotated ones"
    );
    for name in files(&dir) {
        let size = fs::metadata(dir.join(&name)).expect("size").len();
        assert!(size <= max_bytes, "{name} is {size} bytes");
    }
    // 20 entries, 3 per file: the current file holds 2, the rotated ones 3 each.
    let all = journal::read(&dir, 0).expect("read all");
    assert_eq!(seqs(&all), (22..30).collect::<Vec<_>>());
    let newest = journal::read(&dir, 4).expect("read 4");
    assert_eq!(seqs(&newest), [26, 27, 28, 29], "the newest, oldest first");
    let across = journal::read(&dir, 7).expect("read 7");
    assert_eq!(seqs(&across), (23..30).collect::<Vec<_>>());

    // A smaller `keep` after a restart drops the surplus at the next rotation.
    drop(writer);
    let mut writer = Journal::open(&dir, max_bytes, 1).expect("reopen");
    for seq in 30..32 {
        writer.append(&numbered(seq)).expect("append");
    }
    assert_eq!(files(&dir), ["journal.1.jsonl", journal::CURRENT]);
    assert_eq!(
        seqs(&journal::read(&dir, 0).expect("read")),
        [28, 29, 30, 31]
    );
}

#[test]
fn a_torn_last_line_is_skipped_and_costs_no_later_entry() {
    let tmp = TempDir::new("torn");
    let dir = tmp.path().join("journal");
    let mut writer = Journal::open(&dir, journal::DEFAULT_MAX_BYTES, 3).expect("open");
    writer.append(&numbered(1)).expect("append");
    writer.append(&numbered(2)).expect("append");
    drop(writer);

    // A crash in the middle of the third line.
    let current = dir.join(journal::CURRENT);
    let mut raw = fs::read(&current).expect("raw");
    raw.extend_from_slice(br#"{"at_unix_ms":1700000000003,"node":"n1","kind":"deci"#);
    fs::write(&current, &raw).expect("tearing the last line");
    assert_eq!(seqs(&journal::read(&dir, 0).expect("read")), [1, 2]);
    assert_eq!(seqs(&journal::read(&dir, 1).expect("read")), [2]);

    // The restarted daemon's next entry starts on a line of its own.
    let mut writer = Journal::open(&dir, journal::DEFAULT_MAX_BYTES, 3).expect("reopen");
    writer
        .append(&numbered(4))
        .expect("append after the torn line");
    assert_eq!(seqs(&journal::read(&dir, 0).expect("read")), [1, 2, 4]);

    // Garbage and blank lines anywhere are skipped too.
    let mut raw = fs::read(&current).expect("raw");
    raw.extend_from_slice(b"\nnot json\n\n");
    fs::write(&current, &raw).expect("garbage");
    writer.append(&numbered(5)).expect("append");
    assert_eq!(seqs(&journal::read(&dir, 0).expect("read")), [1, 2, 4, 5]);
}

#[test]
fn a_journal_path_that_is_a_file_or_missing_is_named() {
    let tmp = TempDir::new("paths");
    let file = tmp.path().join("journal");
    fs::write(&file, "").expect("a file");
    let e = Journal::open(&file, 1024, 1).expect_err("a file is not a journal directory");
    assert!(matches!(e, JournalError::NotADirectory { .. }), "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");

    let missing = tmp.path().join("never-written");
    let e = journal::read(&missing, 10).expect_err("no journal");
    assert!(matches!(e, JournalError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("[journal] path"), "{e}");
}

/// A configuration for node n1 whose journal is `journal`.
fn config_with_journal(dir: &Path, journal: &Path) -> PathBuf {
    let text = pair_builder(
        &PairSettings::fast(),
        &[("n1", "10.77.0.11", 100), ("n2", "10.77.0.12", 98)],
    )
    .journal(journal)
    .to_toml();
    let path = dir.join("whpg-ha.toml");
    fs::write(&path, text).expect("writing the configuration");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

#[test]
fn a_directory_the_daemon_cannot_write_stops_it_with_the_path_and_the_fix() {
    let tmp = TempDir::new("readonly");
    let locked = tmp.path().join("locked");
    fs::create_dir(&locked).expect("mkdir");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).expect("chmod 555");
    let journal_dir = locked.join("journal");
    let config = config_with_journal(tmp.path(), &journal_dir);

    if euid() != 0 {
        let e = Journal::open(&journal_dir, 1024, 1).expect_err("read-only parent");
        let text = e.to_string();
        assert!(text.contains(&journal_dir.display().to_string()), "{text}");
        assert!(
            text.contains("writable by the user whpg-ha runs as"),
            "{text}"
        );
    }

    // The daemon itself, as an unprivileged user (root ignores the mode bits).
    let mut command = Command::new(env!("CARGO_BIN_EXE_whpg-ha"));
    command
        .args(["run", "--node", "n1", "--config"])
        .arg(&config);
    if euid() == 0 {
        command.uid(65534).gid(65534);
    }
    let output = command.output().expect("running whpg-ha");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot create the journal directory {}",
            journal_dir.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("writable by the user whpg-ha runs as"),
        "{stderr}"
    );
    assert!(stderr.contains("[journal] path"), "{stderr}");
    assert!(!journal_dir.exists());
}

#[test]
fn history_prints_the_journal_as_a_table_or_json_lines() {
    let tmp = TempDir::new("history");
    let dir = tmp.path().join("journal");
    let config = config_with_journal(tmp.path(), &dir);
    let history = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_whpg-ha"))
            .args(["history", "--node", "n1", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .expect("running whpg-ha history");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, _, stderr) = history(&[]);
    assert_eq!(code, Some(1), "no journal yet");
    assert!(stderr.contains("no journal at"), "{stderr}");

    let mut writer = Journal::open(&dir, journal::DEFAULT_MAX_BYTES, 2).expect("open");
    let mut transition = Entry::new(
        "n1",
        Kind::Transition,
        "VRRP BACKUP -> MASTER: no advert from the master within Master_Down_Interval",
    )
    .with("from", "BACKUP")
    .with("to", "MASTER");
    transition.at_unix_ms = 1_700_000_000_123;
    let mut action = Entry::new(
        "n1",
        Kind::Action,
        "virtual addresses installed: 10.77.0.100/24",
    );
    action.at_unix_ms = 1_700_000_000_125;
    writer.append(&numbered(1)).expect("append");
    writer.append(&transition).expect("append");
    writer.append(&action).expect("append");

    let (code, table, stderr) = history(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    println!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows\n{table}");
    assert!(
        lines[0].contains("TIME") && lines[0].contains("KIND"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("2023-11-14T22:13:20.123Z")
            && lines[2].contains("transition")
            && lines[2].contains("BACKUP -> MASTER"),
        "{table}"
    );
    assert!(
        lines[3].contains(".125Z") && lines[3].contains("action"),
        "{table}"
    );

    let (code, json, stderr) = history(&["--json", "--limit", "2"]);
    assert_eq!(code, Some(0), "{stderr}");
    let entries: Vec<Entry> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(entries, [transition, action]);
}

#[test]
fn a_daemon_journals_its_start_election_vip_and_shutdown() {
    let lab = lab_or_skip!("journal", &[]);
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let settings = PairSettings::fast();
    let journal_dir = lab.dir().join("journal-n1");
    let config = pair_builder(
        &settings,
        &[("n1", "10.77.0.11", 100), ("n2", "10.77.0.12", 98)],
    )
    .journal(&journal_dir)
    .to_toml();
    // Alone on the link: n1 becomes master once Master_Down_Interval passes.
    let daemon = start_daemon(&lab, &n1, "n1", &config);
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "n1 master with the VIP",
        || vrrp_state(&n1).as_deref() == Some("MASTER") && n1.has_address(settings.vip_address()),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_contents()));

    let (code, body) = api_get(&n1, "/history?limit=3").expect("GET /history");
    assert_eq!(code, 200, "{body}");
    let recent: Vec<Entry> = serde_json::from_str(&body).expect("a JSON array of entries");
    assert_eq!(recent.len(), 3, "{body}");

    daemon.kill(Signal::Term).expect("SIGTERM");
    daemon
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_contents()));

    let entries = journal::read(&journal_dir, 0).expect("reading the journal");
    let shown: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {}", e.kind, e.detail))
        .collect();
    let shown = shown.join("\n");
    println!("{shown}");
    let position = |what: &str, f: &dyn Fn(&Entry) -> bool| {
        entries
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("no {what} in the journal:\n{shown}"))
    };
    let transition = |from: &'static str, to: &'static str| {
        move |e: &Entry| {
            e.kind == Kind::Transition
                && e.field("from").and_then(|v| v.as_str()) == Some(from)
                && e.field("to").and_then(|v| v.as_str()) == Some(to)
        }
    };
    let event = |name: &'static str| {
        move |e: &Entry| {
            e.kind == Kind::Notice && e.field("event").and_then(|v| v.as_str()) == Some(name)
        }
    };
    let vip = |verb: &'static str| {
        move |e: &Entry| {
            e.kind == Kind::Action
                && e.detail.contains(verb)
                && e.field("vips").and_then(|v| v.as_array()).is_some_and(|v| {
                    v.iter()
                        .any(|a| a.as_str().is_some_and(|a| a.starts_with("10.77.0.100")))
                })
        }
    };
    let start = position("start", &event("start"));
    let to_backup = position("INIT -> BACKUP", &transition("INIT", "BACKUP"));
    let to_master = position("BACKUP -> MASTER", &transition("BACKUP", "MASTER"));
    let installed = position("VIP installed", &vip("installed"));
    let shutdown = position("shutdown", &event("shutdown"));
    let removed = position("VIP removed", &vip("removed"));
    let stopped = position("stopped", &event("stopped"));
    assert!(
        start < to_backup
            && to_backup < to_master
            && to_master < installed
            && installed < shutdown
            && shutdown < removed
            && removed < stopped,
        "in order:\n{shown}"
    );
    assert_eq!(stopped, entries.len() - 1, "stopped is the last entry");
    assert!(entries.iter().all(|e| e.node == "n1"));
    assert!(entries
        .windows(2)
        .all(|w| w[0].at_unix_ms <= w[1].at_unix_ms));
}

#[test]
fn journal_files_are_0640_and_symbolic_links_are_refused() {
    let tmp = TempDir::new("modes");
    let dir = tmp.path().join("journal");
    let mut writer = Journal::open(&dir, 1024, 2).expect("open");
    writer.append(&numbered(1)).expect("append");
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), journal::DIR_MODE, "a created directory");
    assert_eq!(
        mode(&dir.join(journal::CURRENT)),
        journal::FILE_MODE,
        "a created file"
    );
    drop(writer);

    // A file left world-writable (by hand, or an older version) is narrowed at open.
    fs::set_permissions(
        dir.join(journal::CURRENT),
        fs::Permissions::from_mode(0o666),
    )
    .expect("chmod");
    drop(Journal::open(&dir, 1024, 2).expect("reopen"));
    assert_eq!(mode(&dir.join(journal::CURRENT)), 0o640);

    // The journal directory is a link: refused for writing and reading, naming the path.
    let link = tmp.path().join("linked-journal");
    std::os::unix::fs::symlink(&dir, &link).expect("symlink");
    let e = Journal::open(&link, 1024, 2).expect_err("a linked directory");
    assert!(matches!(e, JournalError::Symlink { .. }), "{e}");
    assert!(e.to_string().contains(&link.display().to_string()), "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let e = journal::read(&link, 10).expect_err("reading through a link");
    assert!(matches!(e, JournalError::Symlink { .. }), "{e}");

    // The current file is a link to a file someone wants appended to: refused, target untouched.
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious\n").expect("victim");
    let dir2 = tmp.path().join("journal2");
    fs::create_dir(&dir2).expect("mkdir");
    std::os::unix::fs::symlink(&victim, dir2.join(journal::CURRENT)).expect("symlink");
    let e = Journal::open(&dir2, 1024, 2).expect_err("a linked journal file");
    assert!(matches!(e, JournalError::Symlink { .. }), "{e}");
    assert!(e.to_string().contains(journal::CURRENT), "{e}");
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
    let e = journal::read(&dir2, 10).expect_err("reading a linked file");
    assert!(matches!(e, JournalError::Symlink { .. }), "{e}");
}

#[test]
fn pages_walk_back_through_rotated_files_and_survive_a_rotation() {
    let tmp = TempDir::new("pages");
    let dir = tmp.path().join("journal");
    let line_len = serde_json::to_string(&numbered(10)).expect("json").len() as u64 + 1;
    let mut writer = Journal::open(&dir, line_len * 3, 10).expect("open");
    for seq in 10..30 {
        writer.append(&numbered(seq)).expect("append");
    }
    // Walk back 4 at a time: every entry once, in order, then no cursor.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = journal::read_page(&dir, 4, before).expect("a page");
        assert!(page.entries.len() <= 4);
        pages.push(seqs(&page.entries));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
        assert!(pages.len() < 20, "paging does not end: {pages:?}");
    }
    assert_eq!(pages[0], [26, 27, 28, 29], "the first page is the newest");
    let walked: Vec<u64> = pages.iter().rev().flatten().copied().collect();
    assert_eq!(walked, (10..30).collect::<Vec<_>>(), "{pages:?}");
    // The default is what it was: the newest entries, oldest first.
    assert_eq!(seqs(&journal::read(&dir, 3).expect("read")), [27, 28, 29]);

    // A cursor taken before a rotation still names the same place after it.
    let first = journal::read_page(&dir, 5, None).expect("page");
    let cursor = first.next.expect("older entries exist");
    for seq in 30..36 {
        writer.append(&numbered(seq)).expect("append");
    }
    let older = journal::read_page(&dir, 3, Some(cursor)).expect("after rotation");
    assert_eq!(seqs(&older.entries), [22, 23, 24]);
    // The cursor round-trips through its text form (the API's header and query).
    let text = cursor.to_string();
    assert_eq!(text.parse::<journal::Cursor>().expect("parses"), cursor);
    for bad in ["", "x", "1-2", "1-2-3-4", "-1-2-3"] {
        let e = bad.parse::<journal::Cursor>().expect_err(bad);
        assert!(matches!(e, JournalError::BadCursor { .. }), "{bad}: {e}");
    }

    // Rotated past: the file the cursor named is gone.
    drop(writer);
    let mut writer = Journal::open(&dir, line_len * 3, 1).expect("reopen keeping 1");
    for seq in 36..45 {
        writer.append(&numbered(seq)).expect("append");
    }
    let e = journal::read_page(&dir, 3, Some(cursor)).expect_err("a stale cursor");
    assert!(matches!(e, JournalError::StaleCursor { .. }), "{e}");
    assert!(e.to_string().contains("without a cursor"), "{e}");
}

#[test]
fn the_newest_page_reads_no_older_file() {
    let tmp = TempDir::new("lazy");
    let dir = tmp.path().join("journal");
    let line_len = serde_json::to_string(&numbered(10)).expect("json").len() as u64 + 1;
    let mut writer = Journal::open(&dir, line_len * 3, 10).expect("open");
    for seq in 10..20 {
        writer.append(&numbered(seq)).expect("append");
    }
    drop(writer);
    // An "older file" that cannot be read at all (a directory): reading it would fail.
    let oldest = files(&dir)
        .into_iter()
        .filter(|n| n != journal::CURRENT)
        .max_by_key(|n| n.split('.').nth(1).and_then(|n| n.parse::<u32>().ok()))
        .expect("a rotated file");
    fs::remove_file(dir.join(&oldest)).expect("rm");
    fs::create_dir(dir.join(&oldest)).expect("an unreadable journal file");
    // The newest 4 entries are in the current file and journal.1: read without touching it.
    assert_eq!(
        seqs(&journal::read(&dir, 4).expect("the newest page")),
        [16, 17, 18, 19]
    );
    // Asking for everything has to read it, and says so.
    let e = journal::read(&dir, 0).expect_err("all of it");
    assert!(matches!(e, JournalError::Read { .. }), "{e}");
}

/// A sink that holds the writer thread until told to go, and keeps what it got.
struct GatedSink {
    entered: std::sync::mpsc::Sender<()>,
    gate: std::sync::mpsc::Receiver<()>,
    got: std::sync::Arc<std::sync::Mutex<Vec<Entry>>>,
    first: bool,
}

impl journal::Sink for GatedSink {
    fn record(&mut self, entry: &Entry) {
        if self.first {
            self.first = false;
            let _ = self.entered.send(());
            let _ = self.gate.recv();
        }
        self.got.lock().expect("lock").push(entry.clone());
    }
}

#[test]
fn a_full_queue_never_blocks_and_the_drop_is_journaled() {
    let (open, gate) = std::sync::mpsc::channel();
    let (entered, writer_busy) = std::sync::mpsc::channel();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = GatedSink {
        entered,
        gate,
        got: std::sync::Arc::clone(&got),
        first: true,
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // The recording runs on a thread of its own: if `record` blocked, the test fails in time
    // instead of hanging.
    let recorder = std::thread::spawn(move || {
        let mut writer = journal::BackgroundJournal::with_sink(sink, 2);
        writer.record(numbered(1)); // taken by the writer, which then waits at the gate
        writer_busy
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer takes the first entry");
        for seq in 2..=6 {
            writer.record(numbered(seq)); // 2 and 3 fill the queue; 4, 5, 6 are dropped
        }
        done_tx.send(writer.dropped()).expect("report");
        writer
    });
    let dropped = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("record() must not wait for a full queue");
    assert_eq!(dropped, 3);
    let mut writer = recorder.join().expect("recorder");
    open.send(()).expect("open the gate");
    // Room again: the next entry is preceded by the notice.
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(5),
        "the writer drains the queue",
        || got.lock().expect("lock").len() >= 3,
    )
    .expect("the writer drains the queue");
    writer.record(numbered(7));
    drop(writer);
    let got = got.lock().expect("lock");
    let details: Vec<String> = got.iter().map(|e| e.detail.clone()).collect();
    assert_eq!(got.len(), 5, "{details:?}");
    assert_eq!(seqs(&got[..3]), [1, 2, 3], "{details:?}");
    assert_eq!(got[3].kind, Kind::Notice);
    assert!(
        got[3].detail.starts_with("3 journal entries dropped"),
        "{details:?}"
    );
    assert_eq!(got[3].field("dropped").and_then(|v| v.as_u64()), Some(3));
    assert_eq!(got[3].node, "n1");
    assert_eq!(seqs(&got[4..]), [7]);
}
