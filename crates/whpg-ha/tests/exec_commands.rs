//! The command runner: exit codes, output caps, timeouts that kill the whole process group, user
//! switching, the exact environment, no shell, and the `gpactivatestandby` stand-in run through it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use whpg_ha::config::testing::TestConfig;
use whpg_ha::config::CommandKind;
use whpg_ha::exec::{run, Environment, ExecError, Exit, PreparedCommand};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("whpg-exec-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cmd(key: &str, argv: &[&str], timeout: Duration) -> PreparedCommand {
    PreparedCommand::new(key, argv.iter().map(|s| s.to_string()).collect(), timeout)
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Whether `pid` is gone (or a zombie nobody reaped yet: it runs nothing any more).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The skip policy of the lab tests: fail under CI=true, else say SKIPPED and skip.
fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root under CI=true");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: not running as root");
    false
}

#[tokio::test]
async fn exit_code_stdout_and_stderr_are_reported() {
    let outcome = run(&cmd(
        "commands.test",
        &["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
        Duration::from_secs(10),
    ))
    .await
    .expect("the command runs");
    assert_eq!(outcome.exit, Exit::Code(3));
    assert_eq!(outcome.code(), Some(3));
    assert!(!outcome.success());
    assert_eq!(outcome.output.stdout, "out\n");
    assert_eq!(outcome.output.stderr, "err\n");
    assert_eq!(outcome.output.last_line(), Some("err"));
    assert!(outcome.duration < Duration::from_secs(10));

    let ok = run(&cmd("commands.test", &["true"], Duration::from_secs(10)))
        .await
        .expect("true runs");
    assert!(ok.success());
}

#[tokio::test]
async fn output_is_capped_to_its_tail() {
    // 300 KiB of filler, then a last line that must survive the cap.
    let script = "head -c 307200 /dev/zero | tr '\\0' x; echo; echo LAST-LINE";
    let outcome = run(&cmd(
        "commands.test",
        &["/bin/sh", "-c", script],
        Duration::from_secs(20),
    )
    .with_output_cap(64 * 1024))
    .await
    .expect("the command runs");
    assert!(outcome.success());
    assert_eq!(outcome.output.stdout.len(), 64 * 1024);
    assert!(outcome.output.stdout.ends_with("LAST-LINE\n"));
    assert_eq!(outcome.output.stdout_bytes, 307200 + 1 + 10);
    assert!(outcome.output.truncated());
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group_even_when_sigterm_is_ignored() {
    // The shell ignores SIGTERM and so does its grandchild (ignored signals survive exec), so
    // only the SIGKILL after the grace period ends them.
    let script = "trap '' TERM; sleep 100 & echo \"$$ $!\"; wait";
    let started = Instant::now();
    let err = run(&cmd(
        "commands.promote",
        &["/bin/sh", "-c", script],
        Duration::from_millis(500),
    )
    .with_kill_grace(Duration::from_millis(300)))
    .await
    .expect_err("the command must time out");
    let elapsed = started.elapsed();
    let ExecError::TimedOut {
        ref key,
        timeout,
        ref output,
        ..
    } = err
    else {
        panic!("expected TimedOut, got {err}");
    };
    assert_eq!(key, "commands.promote");
    assert_eq!(timeout, Duration::from_millis(500));
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let pids: Vec<i32> = output
        .stdout
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 2, "output: {output:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids.iter().all(|&p| process_gone(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids {
        assert!(process_gone(pid), "pid {pid} survived the timeout");
    }
    assert!(err.to_string().contains("did not finish within"), "{err}");
}

#[tokio::test]
async fn abandoning_a_run_kills_its_process_group() {
    let dir = TempDir::new("abandon");
    let pid_file = dir.path().join("pids");
    let script = format!("sleep 100 & echo \"$$ $!\" > {}; wait", pid_file.display());
    let command = cmd(
        "commands.test",
        &["/bin/sh", "-c", &script],
        Duration::from_secs(60),
    );
    let task = tokio::spawn(async move { run(&command).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    let pids: Vec<i32> = loop {
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pids: Vec<i32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(Instant::now() < deadline, "the script never wrote its pids");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    let _ = task.await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids.iter().all(|&p| process_gone(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pid in pids {
        assert!(process_gone(pid), "pid {pid} survived the abandoned run");
    }
}

#[tokio::test]
async fn missing_executable_names_the_program_and_the_key() {
    let err = run(&cmd(
        "commands.promote",
        &["/nonexistent/greenplum-db/bin/gpactivatestandby", "-a"],
        Duration::from_secs(5),
    ))
    .await
    .expect_err("nothing to run");
    assert!(matches!(err, ExecError::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("commands.promote.argv[0]"), "{msg}");
    assert!(
        msg.contains("/nonexistent/greenplum-db/bin/gpactivatestandby"),
        "{msg}"
    );

    // A bare name is looked up in the command's PATH, not the daemon's.
    let err = run(&cmd("commands.fence", &["pg_ctl"], Duration::from_secs(5))
        .with_env("PATH", "/nonexistent"))
    .await
    .expect_err("pg_ctl is not in /nonexistent");
    let msg = err.to_string();
    assert!(msg.contains("commands.fence.argv[0]"), "{msg}");
    assert!(
        msg.contains("`pg_ctl`") && msg.contains("/nonexistent"),
        "{msg}"
    );

    let dir = TempDir::new("noexec");
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").expect("write");
    let err = run(&cmd(
        "commands.stop",
        &[file.to_str().expect("utf-8 path")],
        Duration::from_secs(5),
    ))
    .await
    .expect_err("not executable");
    assert!(matches!(err, ExecError::NotExecutable { .. }), "{err:?}");
}

#[tokio::test]
async fn runs_as_the_requested_user_with_that_users_identity() {
    if !require_root("runs_as_the_requested_user_with_that_users_identity") {
        return;
    }
    let nobody = whpg_ha::exec::lookup_user("nobody").expect("user nobody exists");
    let outcome = run(&cmd(
        "commands.test",
        &[
            "/bin/sh",
            "-c",
            "id -u; id -g; id -G; echo \"$HOME $USER $LOGNAME\"",
        ],
        Duration::from_secs(10),
    )
    .run_as("nobody"))
    .await
    .expect("runs as nobody");
    assert!(outcome.success(), "{outcome}");
    let lines: Vec<&str> = outcome.output.stdout.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string());
    assert_eq!(lines[1], nobody.gid.to_string());
    let groups: BTreeSet<u32> = lines[2]
        .split_whitespace()
        .map(|g| g.parse().expect("a gid"))
        .collect();
    assert_eq!(groups, nobody.groups.iter().copied().collect());
    assert!(!groups.contains(&0), "root's group leaked: {groups:?}");
    assert_eq!(lines[3], format!("{} nobody nobody", nobody.home.display()));

    let err =
        run(&cmd("commands.test", &["true"], Duration::from_secs(5)).run_as("no-such-user-whpg"))
            .await
            .expect_err("unknown user");
    assert!(matches!(err, ExecError::UnknownUser { .. }), "{err:?}");
    assert!(err.to_string().contains("database.os_user"), "{err}");
}

#[tokio::test]
async fn environment_is_exactly_what_we_set() {
    // The test process has plenty of variables (cargo's, HOME, PATH...): none may leak.
    let outcome = run(
        &cmd("commands.test", &["/usr/bin/env"], Duration::from_secs(10))
            .with_env("PGPORT", "5433"),
    )
    .await
    .expect("env runs");
    let seen: BTreeMap<String, String> = outcome
        .output
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["HOME", "LANG", "LOGNAME", "PATH", "PGPORT", "USER"],
        "{seen:?}"
    );
    assert_eq!(seen["PATH"], whpg_ha::exec::environment::SYSTEM_PATH);
    assert_eq!(seen["LANG"], "C");
    assert_eq!(seen["PGPORT"], "5433");

    let bare = run(
        &cmd("commands.test", &["/usr/bin/env"], Duration::from_secs(10))
            .with_environment(Environment::empty()),
    )
    .await
    .expect("env runs");
    let names: BTreeSet<&str> = bare
        .output
        .stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(names, BTreeSet::from(["HOME", "LOGNAME", "USER"]));
}

#[tokio::test]
async fn arguments_reach_the_program_literally() {
    let dir = TempDir::new("literal");
    let marker = dir.path().join("x");
    let nasty = format!(
        "$(touch {}); * `id` ${{HOME}} 'q' \"d\" | ; &&",
        marker.display()
    );
    let outcome = run(&cmd(
        "commands.test",
        &["/usr/bin/printf", "%s\\n", &nasty, "", "two words"],
        Duration::from_secs(10),
    ))
    .await
    .expect("printf runs");
    assert!(outcome.success());
    assert_eq!(outcome.output.stdout, format!("{nasty}\n\ntwo words\n"));
    assert!(!marker.exists(), "something interpreted the argument");
}

/// A fake WarehousePG installation: `greenplum_path.sh`, the `gpactivatestandby` stand-in and a
/// `pg_ctl` stub that records its arguments in `<gphome>/pg_ctl.calls`.
struct FakeInstall {
    _dir: TempDir,
    gphome: PathBuf,
    data_dir: PathBuf,
}

impl FakeInstall {
    fn new(tag: &str, pg_ctl_exit: i32) -> FakeInstall {
        let dir = TempDir::new(tag);
        let gphome = dir.path().join("greenplum-db");
        let bin = gphome.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::fs::write(
            gphome.join("greenplum_path.sh"),
            "# never sourced by whpg-ha\n",
        )
        .expect("write greenplum_path.sh");
        let standin =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/gpactivatestandby");
        std::fs::copy(&standin, bin.join("gpactivatestandby")).expect("copy the stand-in");
        write_executable(
            &bin.join("pg_ctl"),
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$(dirname \"$0\")/../pg_ctl.calls\"\nexit {pg_ctl_exit}\n"
            ),
        );
        let data_dir = dir.path().join("coordinator/gpseg-1");
        std::fs::create_dir_all(&data_dir).expect("mkdir data dir");
        std::fs::write(data_dir.join("standby.signal"), "").expect("standby.signal");
        FakeInstall {
            _dir: dir,
            gphome,
            data_dir,
        }
    }

    fn config(&self) -> whpg_ha::config::Config {
        TestConfig::warehousepg()
            .database("port", 5433)
            .database("data_directory", self.data_dir.as_path())
            .database("greenplum_path", self.gphome.join("greenplum_path.sh"))
            .parse("scdw")
    }

    fn promote(&self) -> PreparedCommand {
        let config = self.config();
        // Run as the test's own user here; the daemon runs it as database.os_user (gpadmin).
        PreparedCommand::from_config(&config, CommandKind::Promote, &BTreeMap::new())
            .expect("the promote command prepares")
            .run_as(current_user_name())
    }

    fn pg_ctl_calls(&self) -> String {
        std::fs::read_to_string(self.gphome.join("pg_ctl.calls")).unwrap_or_default()
    }
}

fn current_user_name() -> String {
    // SAFETY: no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.get(2) == Some(&uid.to_string().as_str())).then(|| fields[0].to_string())
            })
        })
        .expect("the test user is in /etc/passwd")
}

#[tokio::test]
async fn promote_command_of_a_warehousepg_config_runs_the_standin_with_the_derived_environment() {
    let install = FakeInstall::new("standin-ok", 0);
    let command = install.promote();
    assert_eq!(command.key(), "commands.promote");
    assert_eq!(
        command.argv(),
        [
            install
                .gphome
                .join("bin/gpactivatestandby")
                .display()
                .to_string(),
            "-a".into(),
            "-d".into(),
            install.data_dir.display().to_string(),
        ]
    );
    let env = command.environment();
    assert_eq!(env.get("GPHOME"), Some(install.gphome.to_str().unwrap()));
    assert_eq!(env.get("PGPORT"), Some("5433"));
    assert_eq!(
        env.get("COORDINATOR_DATA_DIRECTORY"),
        Some(install.data_dir.to_str().unwrap())
    );

    let outcome = run(&command).await.expect("the stand-in runs");
    assert!(outcome.success(), "{outcome}\n{}", outcome.output.stderr);
    assert!(outcome
        .output
        .stdout
        .contains("activation of the standby coordinator has completed successfully"));
    assert_eq!(
        install.pg_ctl_calls(),
        format!("promote -D {}\n", install.data_dir.display())
    );
}

#[tokio::test]
async fn standin_fails_with_exit_2_when_the_environment_is_incomplete() {
    let install = FakeInstall::new("standin-env", 0);
    let base = install.promote();

    // Each row removes or breaks one thing the real tool needs.
    let cases: Vec<(&str, PreparedCommand)> = vec![
        ("PGPORT environment variable not set", {
            let mut env = base.environment().clone();
            env.remove("PGPORT");
            base.clone().with_environment(env)
        }),
        ("GPHOME is not set", {
            let mut env = base.environment().clone();
            env.remove("GPHOME");
            base.clone().with_environment(env)
        }),
        (
            "is not first on PATH",
            base.clone()
                .with_env("PATH", whpg_ha::exec::environment::SYSTEM_PATH),
        ),
        ("Both -d parameter and COORDINATOR_DATA_DIRECTORY", {
            let mut env = base.environment().clone();
            env.remove("COORDINATOR_DATA_DIRECTORY");
            PreparedCommand::new(
                "commands.promote",
                vec![base.argv()[0].clone(), "-a".into()],
                Duration::from_secs(10),
            )
            .with_environment(env)
        }),
        (
            "pass -a",
            PreparedCommand::new(
                "commands.promote",
                vec![
                    base.argv()[0].clone(),
                    "-d".into(),
                    install.data_dir.display().to_string(),
                ],
                Duration::from_secs(10),
            )
            .with_environment(base.environment().clone()),
        ),
    ];
    for (expected, command) in cases {
        let outcome = run(&command).await.expect("the stand-in runs");
        assert_eq!(outcome.exit, Exit::Code(2), "{expected}: {outcome}");
        assert!(
            outcome.output.stderr.contains(expected),
            "{expected}: {}",
            outcome.output.stderr
        );
    }
    assert_eq!(
        install.pg_ctl_calls(),
        "",
        "pg_ctl must not run on a failed check"
    );

    // Not a standby: no standby.signal.
    std::fs::remove_file(install.data_dir.join("standby.signal")).expect("rm standby.signal");
    let outcome = run(&base).await.expect("the stand-in runs");
    assert_eq!(outcome.exit, Exit::Code(2));
    assert!(outcome.output.stderr.contains("standby.signal"));
    assert_eq!(install.pg_ctl_calls(), "");
}

#[tokio::test]
async fn standin_reports_a_failed_promotion_with_exit_2() {
    let install = FakeInstall::new("standin-pgctl", 1);
    let outcome = run(&install.promote()).await.expect("the stand-in runs");
    assert_eq!(outcome.exit, Exit::Code(2), "{outcome}");
    assert!(outcome.output.stderr.contains("pg_ctl promote failed"));
    assert_eq!(
        install.pg_ctl_calls(),
        format!("promote -D {}\n", install.data_dir.display())
    );
}

#[tokio::test]
async fn vendored_python_and_openssl_conf_are_picked_up_like_greenplum_path_does() {
    let install = FakeInstall::new("python", 0);
    std::fs::create_dir_all(install.gphome.join("ext/python/bin")).expect("mkdir ext/python");
    std::fs::create_dir_all(install.gphome.join("etc")).expect("mkdir etc");
    std::fs::write(install.gphome.join("etc/openssl.cnf"), "").expect("openssl.cnf");
    let env = install.promote().environment().clone();
    let gphome = install.gphome.display().to_string();
    assert_eq!(
        env.get("PYTHONHOME").map(str::to_string),
        Some(format!("{gphome}/ext/python"))
    );
    assert!(env
        .get("PATH")
        .unwrap_or_default()
        .starts_with(&format!("{gphome}/bin:{gphome}/ext/python/bin:")));
    assert_eq!(
        env.get("LD_LIBRARY_PATH").map(str::to_string),
        Some(format!("{gphome}/lib:{gphome}/ext/python/lib"))
    );
    assert_eq!(
        env.get("OPENSSL_CONF").map(str::to_string),
        Some(format!("{gphome}/etc/openssl.cnf"))
    );
}
